"""Model delivery throughput: the shipped fetch_model.py (verified) against a plain boto3 download of the same files.

Both run against moto's S3 server on loopback, in the same run, interleaved, with the same parallelism:
the baseline is what an `aws s3 sync`-style download does (every object with boto3's managed transfer,
several at once, no verification); ours also checks every file's size and SHA-256 against the manifest
and renames the folder into place. Median of RUNS runs, MiB/s, and the ratio (target >= 0.8x).
Usage: python bench/model_fetch.py [--runs 5] [--files 24] [--mib-per-file 9] [--smoke]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import requests
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "components" / "inference" / "scripts" / "fetch_model.py"
BUCKET, PREFIX, CONCURRENCY = "acme-models", "bench/model", 8
PLAIN_DOWNLOAD = f"""
import sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from boto3.s3.transfer import TransferConfig
client = boto3.client("s3")
transfer = TransferConfig(max_concurrency=4, multipart_chunksize=64 * 1024 * 1024)
target, names = sys.argv[1], sys.argv[2:]
with ThreadPoolExecutor(max_workers={CONCURRENCY}) as pool:
    list(pool.map(lambda n: client.download_file("{BUCKET}", "{PREFIX}/" + n, target + "/" + n, Config=transfer), names))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--mib-per-file", type=int, default=9)
    parser.add_argument("--smoke", action="store_true", help="one small run: proves the benchmark still works (CI)")
    options = parser.parse_args()
    if options.smoke:
        options.runs, options.files, options.mib_per_file = 1, 4, 2
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    work = Path(tempfile.mkdtemp(prefix="model-fetch-"))
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        requests.post(f"{endpoint}/moto-api/reset", timeout=10)
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        files = {f"model-{i:05d}.safetensors": os.urandom(options.mib_per_file * 1024 * 1024)
                 for i in range(options.files)}
        for name, body in files.items():
            client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=body)
        manifest = {"files": [{"path": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                              for n, b in files.items()]}
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}.manifest.json", Body=json.dumps(manifest).encode())
        total_mib = sum(len(b) for b in files.values()) / 1024 / 1024

        def plain() -> float:
            target = work / "plain"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            started = time.perf_counter()
            # A process of its own, as `aws s3 sync` is: both sides pay interpreter and boto3 start-up.
            subprocess.run([sys.executable, "-c", PLAIN_DOWNLOAD, str(target), *files], check=True, timeout=1800,
                           env={**os.environ, **env})
            return time.perf_counter() - started

        def ours() -> float:
            shutil.rmtree(work / "cache", ignore_errors=True)
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=1800,
                env={**os.environ, **env, "MODEL_SOURCE": f"s3://{BUCKET}/{PREFIX}",
                     "MODEL_MANIFEST": f"s3://{BUCKET}/{PREFIX}.manifest.json",
                     "MODEL_PATH": str(work / "cache" / "model"), "MODEL_CONCURRENCY": str(CONCURRENCY)})
            if result.returncode != 0:
                raise SystemExit(f"fetch_model.py failed: {result.stdout[-2000:]}")
            return time.perf_counter() - started

        timings: dict[str, list[float]] = {"plain boto3 (no checks)": [], "fetch_model.py (verified)": []}
        for _ in range(options.runs):
            timings["plain boto3 (no checks)"].append(plain())
            timings["fetch_model.py (verified)"].append(ours())
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(timings["plain boto3 (no checks)"])
    print(f"model delivery from S3 (moto on loopback), {options.files} files, {total_mib:.0f} MiB, "
          f"median of {options.runs} runs")
    print(f"{'download':<28} | {'seconds':>8} | {'MiB/s':>7} | {'ratio':>5}")
    for label, values in timings.items():
        median = statistics.median(values)
        print(f"{label:<28} | {median:>8.2f} | {total_mib / median:>7.1f} | {base / median:>5.2f}")


if __name__ == "__main__":
    main()
