"""Deliver a model from S3 into the pod's model cache, complete and verified, before the server starts.

Runs as the init container of an inference pod (shipped verbatim in a ConfigMap). It downloads every
object under MODEL_SOURCE into a temporary folder next to the target, checks each file's size and
SHA-256 against the manifest (or sizes against S3 when there is none), and only then renames the
folder into place: the server never sees a half-written model. A later start finds the verified
model (its marker names the manifest it was verified against) and downloads nothing.

Env: MODEL_SOURCE (s3://bucket/prefix), MODEL_PATH (where the server reads the model),
     MODEL_MANIFEST (optional s3:// URI of a JSON manifest: {"files": [{"path", "size", "sha256"}]}),
     MODEL_CONCURRENCY (parallel downloads, default 8). Credentials come from the pod's identity
     (IRSA) through boto3's usual chain; AWS_ENDPOINT_URL is honoured by boto3 itself.
Exit codes: 0 delivered (or already there), 2 an object is missing, 3 a checksum or size mismatch,
     4 access denied, 5 bad input or any other error. One log line per file.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

MARKER = ".ha-ai-stack-model.json"
EXIT_MISSING, EXIT_MISMATCH, EXIT_DENIED, EXIT_OTHER = 2, 3, 4, 5


class FetchError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the model folder
    key: str  # the S3 key
    size: int
    sha256: str | None


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} fetch_model: {message}", flush=True)


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise FetchError(EXIT_OTHER, f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def classify(error: Exception, what: str) -> FetchError:
    """An S3 error as one of our exit codes, naming the object."""
    code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
    if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
        return FetchError(EXIT_MISSING, f"{what} does not exist ({code})")
    if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return FetchError(EXIT_DENIED, f"access to {what} is denied ({code}): check the pod's IAM role")
    return FetchError(EXIT_OTHER, f"{what}: {type(error).__name__}: {error}")


def plan(s3: Any, source: str, manifest_uri: str | None) -> tuple[list[Entry], str]:
    """The files to deliver, and a fingerprint of what was asked for (the manifest, or the S3 listing)."""
    bucket, prefix = split_uri(source)
    base = f"{prefix}/" if prefix else ""
    if manifest_uri:
        manifest_bucket, manifest_key = split_uri(manifest_uri)
        try:
            body = s3.get_object(Bucket=manifest_bucket, Key=manifest_key)["Body"].read()
        except Exception as error:  # noqa: BLE001 (classified into an exit code)
            raise classify(error, manifest_uri) from None
        try:
            files = json.loads(body)["files"]
            entries = [Entry(f["path"], base + f["path"], int(f["size"]), str(f["sha256"]).lower()) for f in files]
        except (ValueError, KeyError, TypeError) as error:
            raise FetchError(EXIT_OTHER, f"{manifest_uri} is not a manifest ({error})") from None
        return entries, hashlib.sha256(body).hexdigest()
    entries = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    entries.append(Entry(item["Key"][len(base):], item["Key"], int(item["Size"]), None))
    except Exception as error:  # noqa: BLE001
        raise classify(error, source) from None
    if not entries:
        raise FetchError(EXIT_MISSING, f"{source} holds no objects")
    listing = json.dumps(sorted((e.path, e.size, "") for e in entries)).encode()
    return entries, hashlib.sha256(listing).hexdigest()


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_one(download: Any, bucket: str, entry: Entry, folder: str) -> None:
    target = os.path.join(folder, entry.path)
    if os.path.relpath(target, folder).startswith(".."):
        raise FetchError(EXIT_OTHER, f"manifest path {entry.path!r} leaves the model folder")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    started = time.monotonic()
    try:
        download(bucket, entry.key, target)
    except Exception as error:  # noqa: BLE001
        raise classify(error, f"s3://{bucket}/{entry.key}") from None
    size = os.path.getsize(target)
    if size != entry.size:
        raise FetchError(EXIT_MISMATCH, f"s3://{bucket}/{entry.key}: {size} bytes, expected {entry.size}")
    digest = sha256_of(target)
    if entry.sha256 is not None and digest != entry.sha256:
        raise FetchError(EXIT_MISMATCH, f"s3://{bucket}/{entry.key}: sha256 {digest}, expected {entry.sha256}")
    log(f"{entry.path}: {size} bytes, sha256 {digest[:16]}… verified in {time.monotonic() - started:.1f}s")


def already_delivered(path: str, fingerprint: str) -> bool:
    try:
        with open(os.path.join(path, MARKER)) as stream:
            return json.load(stream).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        return False


def deliver(s3: Any, source: str, path: str, manifest_uri: str | None, concurrency: int,
            download: Any = None) -> int:
    entries, fingerprint = plan(s3, source, manifest_uri)
    if already_delivered(path, fingerprint):
        log(f"{path} already holds the verified model ({len(entries)} files): nothing to download")
        return 0
    parent = os.path.dirname(path.rstrip("/")) or "/"
    os.makedirs(parent, exist_ok=True)
    # Leftovers of an interrupted run are never reused (they were not verified) and are removed once stale; a
    # fresh one may be another replica's download in progress on a shared cache.
    stale_before = time.time() - float(os.environ.get("MODEL_STALE_SECONDS", "3600"))
    for name in os.listdir(parent):
        leftover = os.path.join(parent, name)
        if name.startswith(".incoming-") and os.path.getmtime(leftover) < stale_before:
            shutil.rmtree(leftover, ignore_errors=True)
    incoming = tempfile.mkdtemp(prefix=".incoming-", dir=parent)
    bucket, _ = split_uri(source)
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for future in [pool.submit(fetch_one, download or s3.download_file, bucket, entry, incoming)
                           for entry in entries]:
                future.result()
        with open(os.path.join(incoming, MARKER), "w") as stream:
            json.dump({"source": source, "manifest": manifest_uri, "fingerprint": fingerprint,
                       "files": len(entries)}, stream)
        if already_delivered(path, fingerprint):  # another replica finished first on a shared cache
            shutil.rmtree(incoming, ignore_errors=True)
            log(f"{path} was delivered meanwhile by another pod: keeping that copy")
            return 0
        if os.path.lexists(path):  # an older model, or an unverified one: set aside, removed below
            retired = tempfile.mkdtemp(prefix=".incoming-old-", dir=parent)
            os.rename(path, os.path.join(retired, "model"))
        os.rename(incoming, path)  # atomic on one filesystem: the server sees all of it or none
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    for name in os.listdir(parent):
        if name.startswith(".incoming-old-"):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    total = sum(e.size for e in entries)
    log(f"delivered {len(entries)} files, {total} bytes, to {path}")
    return 0


def main() -> int:
    try:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
    except ImportError:
        log("boto3 is not installed in this image: use an image that has it (see model.fetch_image)")
        return EXIT_OTHER
    source, path = os.environ.get("MODEL_SOURCE", ""), os.environ.get("MODEL_PATH", "")
    if not source or not path:
        log("MODEL_SOURCE and MODEL_PATH are required")
        return EXIT_OTHER
    concurrency = int(os.environ.get("MODEL_CONCURRENCY", "8"))
    s3 = boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"},
                                          max_pool_connections=concurrency * 4))
    # boto3's managed transfer: large files in parallel ranged parts, small ones in one request.
    transfer = TransferConfig(max_concurrency=4, multipart_chunksize=64 * 1024 * 1024)

    def download(bucket: str, key: str, filename: str) -> None:
        s3.download_file(bucket, key, filename, Config=transfer)

    try:
        return deliver(s3, source, path, os.environ.get("MODEL_MANIFEST") or None, concurrency, download)
    except FetchError as error:
        log(f"failed: {error}")
        return error.code


if __name__ == "__main__":
    sys.exit(main())
