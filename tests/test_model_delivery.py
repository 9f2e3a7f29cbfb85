"""Model delivery: the fetch script from a rendered ConfigMap, run unmodified against moto's S3 server on loopback."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ha_ai_stack import InferenceService

from .conftest import objects_of, run_components
from .s3_lab import moto_s3

BUCKET = "acme-models"
PREFIX = "prod/llama"


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fetch_model.py exactly as the rendered ConfigMap ships it."""
    capture = run_components(lambda: InferenceService("chat", {
        "image": "vllm/vllm-openai:v0.6.3", "server": "vllm", "model": {"source": f"s3://{BUCKET}/{PREFIX}"}}))
    [config_map] = [c for c in objects_of(capture, "ConfigMap") if c["metadata"]["name"].startswith("chat-fetch-")]
    path = tmp_path_factory.mktemp("script") / "fetch_model.py"
    path.write_text(config_map["data"]["fetch_model.py"])
    return path


@pytest.fixture
def s3() -> Iterator[tuple[Any, dict[str, str]]]:
    with moto_s3(BUCKET) as (client, env):
        yield client, env


def upload(client: Any, files: dict[str, bytes], manifest_files: dict[str, bytes] | None = None) -> str:
    """Put the files under PREFIX and a manifest (of ``manifest_files``, default the same files)."""
    for name, body in files.items():
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=body)
    listed = files if manifest_files is None else manifest_files
    manifest = {"files": [{"path": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                          for n, b in sorted(listed.items())]}
    client.put_object(Bucket=BUCKET, Key="prod/llama.manifest.json", Body=json.dumps(manifest).encode())
    return f"s3://{BUCKET}/prod/llama.manifest.json"


def run(script: Path, env: dict[str, str], cache: Path, manifest: str | None, **extra: str
        ) -> subprocess.CompletedProcess[str]:
    values = {**os.environ, **env, "MODEL_SOURCE": f"s3://{BUCKET}/{PREFIX}", "MODEL_PATH": str(cache / "llama"),
              "MODEL_STALE_SECONDS": "0", **extra}
    if manifest:
        values["MODEL_MANIFEST"] = manifest
    return subprocess.run([sys.executable, str(script)], env=values, capture_output=True, text=True, timeout=600)


def test_good_download_then_a_restart_skips_it(script: Path, s3: Any, tmp_path: Path) -> None:
    client, env = s3
    files = {"config.json": b'{"arch": "llama"}', "weights/model-00001.safetensors": os.urandom(3_000_000),
             "tokenizer.json": b"{}" * 100}
    manifest = upload(client, files)
    first = run(script, env, tmp_path, manifest)
    assert first.returncode == 0, first.stdout + first.stderr
    for name, body in files.items():
        assert (tmp_path / "llama" / name).read_bytes() == body
    assert sum(" verified in " in line for line in first.stdout.splitlines()) == 3  # one line per file
    second = run(script, env, tmp_path, manifest)
    assert second.returncode == 0 and "already holds the verified model (3 files): nothing to download" in second.stdout
    assert " verified in " not in second.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llama"]  # nothing left beside it


def test_a_corrupted_object_is_refused_and_nothing_is_left_where_the_server_looks(
        script: Path, s3: Any, tmp_path: Path) -> None:
    client, env = s3
    good = {"config.json": b"{}", "model.bin": b"A" * 4096}
    manifest = upload(client, {**good, "model.bin": b"B" * 4096}, manifest_files=good)
    result = run(script, env, tmp_path, manifest)
    assert result.returncode == 3
    assert f"failed: s3://{BUCKET}/{PREFIX}/model.bin: sha256 " in result.stdout and "expected" in result.stdout
    assert not (tmp_path / "llama").exists() and list(tmp_path.iterdir()) == []


def test_a_missing_object_names_it(script: Path, s3: Any, tmp_path: Path) -> None:
    client, env = s3
    manifest = upload(client, {"config.json": b"{}"}, manifest_files={"config.json": b"{}", "model.bin": b"x"})
    result = run(script, env, tmp_path, manifest)
    assert result.returncode == 2 and f"s3://{BUCKET}/{PREFIX}/model.bin does not exist" in result.stdout
    assert not (tmp_path / "llama").exists()
    missing_manifest = run(script, env, tmp_path, f"s3://{BUCKET}/prod/absent.json")
    assert missing_manifest.returncode == 2 and f"s3://{BUCKET}/prod/absent.json does not exist" in missing_manifest.stdout


def test_without_a_manifest_sizes_are_checked_against_s3(script: Path, s3: Any, tmp_path: Path) -> None:
    client, env = s3
    upload(client, {"a.bin": b"a" * 100, "b.bin": b"b" * 200})
    result = run(script, env, tmp_path, None)
    assert result.returncode == 0 and (tmp_path / "llama" / "b.bin").stat().st_size == 200


def test_an_interrupted_download_leaves_nothing_half_written_and_the_next_run_completes(
        script: Path, s3: Any, tmp_path: Path) -> None:
    client, env = s3
    files = {f"part-{i}.bin": os.urandom(8 * 1024 * 1024) for i in range(6)}
    manifest = upload(client, files)
    values = {**os.environ, **env, "MODEL_SOURCE": f"s3://{BUCKET}/{PREFIX}", "MODEL_PATH": str(tmp_path / "llama"),
              "MODEL_MANIFEST": manifest, "MODEL_STALE_SECONDS": "0", "MODEL_CONCURRENCY": "1"}
    process = subprocess.Popen([sys.executable, str(script)], env=values, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                f.stat().st_size for d in tmp_path.glob(".incoming-*") for f in d.rglob("*") if f.is_file()):
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        if process.stdout:
            process.stdout.close()
    assert not (tmp_path / "llama").exists(), "killed half-way, yet a model is where the server looks"
    assert list(tmp_path.glob(".incoming-*")), "the kill did not land during the download"
    again = run(script, env, tmp_path, manifest)
    assert again.returncode == 0, again.stdout + again.stderr
    for name, body in files.items():
        assert (tmp_path / "llama" / name).read_bytes() == body
    assert not list(tmp_path.glob(".incoming-*"))  # the stale leftover is gone


def test_a_large_multi_file_model(script: Path, s3: Any, tmp_path: Path) -> None:
    client, env = s3
    chunk = os.urandom(1024 * 1024)
    files = {f"shards/model-{i:05d}.safetensors": chunk * 9 + bytes([i]) * 1000 for i in range(24)}  # 24 x 9 MiB
    manifest = upload(client, files)
    result = run(script, env, tmp_path, manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    delivered = sorted((tmp_path / "llama" / "shards").iterdir())
    assert len(delivered) == 24 and sum(p.stat().st_size for p in delivered) >= 200 * 1024 * 1024
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == hashlib.sha256(files[f"shards/{p.name}"]).hexdigest()
               for p in delivered)
    print(f"[model-delivery] files=24 bytes={sum(p.stat().st_size for p in delivered)}")


def test_access_denied_and_other_errors_map_to_their_exit_codes(script: Path) -> None:
    spec = importlib.util.spec_from_file_location("shipped_fetch_model", script)  # the shipped text itself
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)

        class Denied(Exception):
            response = {"Error": {"Code": "AccessDenied"}}

        assert module.classify(Denied(), "s3://b/k").code == 4
        assert "check the pod's IAM role" in str(module.classify(Denied(), "s3://b/k"))
        assert module.classify(ValueError("x"), "s3://b/k").code == 5
    finally:
        del sys.modules[spec.name]


def test_the_pod_runs_the_fetch_before_the_server(tmp_path: Path) -> None:
    capture = run_components(lambda: InferenceService("chat", {
        "image": "vllm/vllm-openai:v0.6.3", "server": "vllm",
        "model": {"source": f"s3://{BUCKET}/{PREFIX}", "manifest": f"s3://{BUCKET}/prod/llama.manifest.json",
                  "path": "/models/llama", "cache": "pvc", "cache_claim": "model-cache-efs"}}))
    pod = objects_of(capture, "Deployment")[0]["spec"]["template"]["spec"]
    [fetch] = pod["initContainers"]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["MODEL_PATH"] == "/models/llama" and env["MODEL_STALE_SECONDS"] == "3600"
    assert pod["containers"][0]["args"] == ["--model", "/models/llama"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "model-cache-efs"}} in pod["volumes"]
    assert any(v.get("configMap", {}).get("name", "").startswith("chat-fetch-") for v in pod["volumes"])
