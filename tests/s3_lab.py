"""moto's S3 server on loopback, for the scripts that talk to S3 (model delivery, Redis backups)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer


@contextmanager
def moto_s3(*buckets: str) -> Iterator[tuple[Any, dict[str, str]]]:
    """A fresh S3 with ``buckets``; yields a client and the env a script needs to reach it. Stopped afterwards."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns the drills' own output
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        requests.post(f"http://{host}:{port}/moto-api/reset", timeout=10)  # moto's state is process-wide
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield client, env
    finally:
        server.stop()
