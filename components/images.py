"""Image reference checks shared by every component that runs a container."""

from __future__ import annotations

import re

# Python 3 with boto3: AWS's Lambda Python base image (its entrypoint is overridden). Runs the S3 scripts:
# model delivery and the Redis backups.
PYTHON_BOTO3_IMAGE = "public.ecr.aws/lambda/python:3.12.2025.01.14.14"
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def image_pin_problem(image: str) -> str | None:
    """Why ``image`` is not pinned, or None when it is.

    A pinned image has a digest or a tag other than ``latest``. The tag is the part after the last
    ``:`` of the last path segment, so a registry port (``registry:5000/app``) is not mistaken for one.
    """
    if not image or image != image.strip() or any(c.isspace() for c in image):
        return f"image {image!r} is not a valid image reference"
    if "@" in image:
        if _DIGEST.search(image):
            return None
        return f"image {image!r} has a malformed digest: use @sha256:<64 hex digits>"
    last_segment = image.rsplit("/", 1)[-1]
    if ":" not in last_segment:
        return f"image {image!r} has no tag: pin a version (e.g. {image}:1.2.3) or a digest"
    tag = last_segment.rsplit(":", 1)[1]
    if not tag:
        return f"image {image!r} has an empty tag: pin a version or a digest"
    if tag == "latest":
        return f"image {image!r} uses the 'latest' tag: pin a version or a digest"
    return None


def require_pinned_image(image: str) -> str:
    """Return ``image`` unchanged, or raise ValueError saying how to pin it (for pydantic validators)."""
    problem = image_pin_problem(image)
    if problem:
        raise ValueError(problem)
    return image
