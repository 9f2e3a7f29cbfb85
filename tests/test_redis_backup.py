"""Backups, restores and scale-out, on real redis-server and moto's S3 server, with the shipped files unmodified.

backup.sh and backup_s3.py come from a rendered ConfigMap and run as the CronJob's two containers would;
a restore runs as Kubernetes would carry out the rendered objects: the restore Job (verify-restore) first,
then every member's init container (restore-member) and start.sh, then the bootstrap Job. Each drill
prints its counts.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .backup_lab import (
    BUCKET,
    PREFIX,
    backup,
    contents,
    form,
    grow_under_writes,
    load_variety,
    rendered_files,
    restore,
    restore_uri,
)
from .redis_lab import (
    RedisLab,
    fill,
    lost_keys,
    running_lab,
    tag_in_shard,
)
from .s3_lab import moto_s3

@pytest.fixture
def s3() -> Iterator[tuple[Any, dict[str, str]]]:
    with moto_s3(BUCKET) as (client, env):
        yield client, env


def test_backup_then_restore_into_a_fresh_cluster_gives_every_key_back_and_survives_a_full_restart(
        tmp_path: Path, s3: tuple[Any, dict[str, str]]) -> None:
    client, s3_env = s3
    files = rendered_files()
    with running_lab(files, tmp_path / "source", first_ip=151) as source:
        keys = fill(source, 48, 3, value_kib=4)
        load_variety(source)
        source.wait(source.replicas_synced, "replicas to catch up")
        before = contents(source)
        stamp = backup(source, s3_env, tmp_path / "staging")
        view = source.node(source.members[0]).execute_command("CLUSTER NODES")
        masters = {info["node_id"] for info in view.values() if "master" in info["flags"] and info["slots"]}


    manifest = json.loads(client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/redis/{stamp}/manifest.json")["Body"].read())
    assert [entry["shard"] for entry in manifest["shards"]] == [0, 1, 2]
    assert [entry["slots"] for entry in manifest["shards"]] == [["0-5460"], ["5461-10921"], ["10922-16383"]]
    assert {entry["node_id"] for entry in manifest["shards"]} == set(masters)
    assert manifest["redis_version"].startswith("7.")
    for entry in manifest["shards"]:
        body = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/redis/{stamp}/{entry['file']}")["Body"].read()
        assert len(body) == entry["bytes"] > 100_000  # fill()'s values compress well in an RDB
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        assert body[:5] == b"REDIS"
        # From a replica where one exists: the source is not the shard's master.
        assert entry["source"].split(":")[0] in {m.ip for m in source.members if m.role == "replica"}

    target_files = rendered_files(restore_from=restore_uri(stamp))
    target = RedisLab(target_files, tmp_path / "target", first_ip=171)
    try:
        restore(target, s3_env, stamp)
        after = contents(target)
        print(f"\nrestore: {len(before)} keys backed up ({keys} bulk), {len(after)} read back, "
              f"{sum(1 for k in before if after.get(k) != before[k])} differ")
        assert after == before
        for member in target.members:
            if member.role == "master":
                assert target.node(member).info("persistence")["aof_enabled"] == 1
        # A full restart: every member loads its own AOF (the restored base and what followed it).
        for member in target.members:
            target.kill(member, grace=30)
        target.start_all()
        target.wait(target.healthy, "the cluster after a full restart", 60)
        assert contents(target) == before
    finally:
        target.close()


@pytest.fixture
def uploaded(tmp_path: Path, s3: tuple[Any, dict[str, str]]) -> tuple[Any, dict[str, str], str]:
    """A small complete backup in S3."""
    client, s3_env = s3
    with running_lab(rendered_files(), tmp_path / "source", first_ip=151) as source:
        fill(source, 4, 3, value_kib=4)
        source.wait(source.replicas_synced, "replicas to catch up")
        stamp = backup(source, s3_env, tmp_path / "staging")
    return client, s3_env, stamp


def spoil_corrupt(client: Any, where: str) -> None:
    body = bytearray(client.get_object(Bucket=BUCKET, Key=f"{where}/shard-1.rdb")["Body"].read())
    body[len(body) // 2] ^= 0xFF  # one flipped byte, same size
    client.put_object(Bucket=BUCKET, Key=f"{where}/shard-1.rdb", Body=bytes(body))


@pytest.mark.parametrize(("spoil", "spoiled_shards", "code", "message"), [
    (spoil_corrupt, [1], 3, "shard-1.rdb: {size} bytes, sha256"),
    (lambda client, where: client.delete_object(Bucket=BUCKET, Key=f"{where}/shard-2.rdb"), [2], 2,
     "shard-2.rdb is missing"),
    (lambda client, where: client.delete_object(Bucket=BUCKET, Key=f"{where}/manifest.json"), [0, 1, 2], 2,
     "manifest.json is missing: the backup is incomplete, refusing to restore it"),
], ids=["corrupt-file", "missing-shard-file", "missing-manifest"])
def test_a_spoiled_backup_is_refused_and_nothing_is_loaded(tmp_path: Path, uploaded: tuple[Any, dict[str, str], str],
                                                           spoil: Any, spoiled_shards: list[int], code: int,
                                                           message: str) -> None:
    client, s3_env, stamp = uploaded
    where = f"{PREFIX}/redis/{stamp}"
    size = client.head_object(Bucket=BUCKET, Key=f"{where}/shard-1.rdb")["ContentLength"]
    spoil(client, where)
    target = RedisLab(rendered_files(restore_from=restore_uri(stamp)), tmp_path / "target", first_ip=171)
    verified = target.run_script("backup_s3.py verify-restore", RESTORE_FROM=restore_uri(stamp),
                                 TOPOLOGY_FILE=str(target.etc / "topology.txt"), **s3_env)
    print(f"\nverify-restore: exit {verified.returncode}: {verified.stderr.strip()}")
    assert verified.returncode == code
    assert message.format(size=size) in verified.stderr
    # Kubernetes starts no member after a failed restore Job; were one started anyway, its init container
    # refuses on its own and leaves the volume empty.
    for shard in spoiled_shards:
        master = target.member_of(shard, "master")
        data = target.data_dir(master)
        data.mkdir(parents=True)
        refused = target.run_script("backup_s3.py restore-member", RESTORE_FROM=restore_uri(stamp),
                                    POD_HOSTNAME=master.host, REDIS_DATA_DIR=str(data),
                                    TOPOLOGY_FILE=str(target.etc / "topology.txt"), **s3_env)
        assert refused.returncode == code, refused.stderr
        assert list(data.iterdir()) == []


def test_a_restore_into_a_cluster_of_another_shard_count_or_a_formed_one_is_refused(
        tmp_path: Path, uploaded: tuple[Any, dict[str, str], str]) -> None:
    _, s3_env, stamp = uploaded
    four = RedisLab(rendered_files(shards=5, restore_from=restore_uri(stamp)), tmp_path / "five", first_ip=171)
    refused = four.run_script("backup_s3.py verify-restore", RESTORE_FROM=restore_uri(stamp),
                              TOPOLOGY_FILE=str(four.etc / "topology.txt"), **s3_env)
    print(f"\nanother shard count: exit {refused.returncode}: {refused.stderr.strip()}")
    assert refused.returncode == 6
    assert "the backup has 3 shards but this cluster has 5: restore into a cluster with the same shard count" \
        in refused.stderr
    with running_lab(rendered_files(restore_from=restore_uri(stamp)), tmp_path / "formed", first_ip=171) as formed:
        refused = formed.run_script("backup_s3.py verify-restore", RESTORE_FROM=restore_uri(stamp),
                                    TOPOLOGY_FILE=str(formed.etc / "topology.txt"), **s3_env)
        print(f"formed target: exit {refused.returncode}: {refused.stderr.strip()}")
        assert refused.returncode == 7
        assert "already belongs to a formed cluster" in refused.stderr


def fake_dump(folder: Path, stamp: str, body: bytes | None = None) -> bytes:
    """What backup.sh leaves behind, for one shard (tiny by default): the upload's input."""
    folder.mkdir(parents=True, exist_ok=True)
    body = body if body is not None else b"REDIS0011" + stamp.encode()
    (folder / "shard-0.rdb").write_bytes(body)
    (folder / "shards.tsv").write_text(f"0 id0 10.0.0.1:6379 0-16383 {len(body)}\n")
    (folder / "backup.env").write_text(f"timestamp={stamp}\nredis_version=7.2.5\ntopology_hash=abc\nshards=1\n")
    return body


def test_a_large_shard_uploads_in_parts_and_its_checksum_is_of_the_uploaded_bytes(
        tmp_path: Path, s3: tuple[Any, dict[str, str]]) -> None:
    client, s3_env = s3
    lab = RedisLab(rendered_files(), tmp_path / "lab", first_ip=171)
    body = fake_dump(tmp_path / "dump", "20261102T000000Z", os.urandom(20 * 2**20 + 5))
    done = lab.run_script("backup_s3.py upload", BACKUP_DIR=str(tmp_path / "dump"), BACKUP_BUCKET=BUCKET,
                          BACKUP_PREFIX=PREFIX, CLUSTER_NAME="redis", **s3_env)
    assert done.returncode == 0, done.stderr
    where = f"{PREFIX}/redis/20261102T000000Z"
    assert client.head_object(Bucket=BUCKET, Key=f"{where}/shard-0.rdb")["ETag"].endswith('-3"')  # 8+8+4 MiB parts
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key=f"{where}/manifest.json")["Body"].read())
    assert manifest["shards"][0]["sha256"] == hashlib.sha256(body).hexdigest()
    assert manifest["shards"][0]["bytes"] == 20 * 2**20 + 5


@pytest.mark.parametrize(("retention", "kept"), [(2, ["20261103T000000Z", "20261104T000000Z"]),
                                                 (1, ["20261104T000000Z"])])
def test_retention_keeps_the_newest_complete_backups_and_drops_older_incomplete_ones(
        tmp_path: Path, s3: tuple[Any, dict[str, str]], retention: int, kept: list[str]) -> None:
    client, s3_env = s3
    lab = RedisLab(rendered_files(), tmp_path / "lab", first_ip=171)
    base = f"{PREFIX}/redis"
    client.put_object(Bucket=BUCKET, Key=f"{base}/20261101T000000Z/shard-0.rdb", Body=b"incomplete, older")
    client.put_object(Bucket=BUCKET, Key=f"{base}/20261109T000000Z/shard-0.rdb", Body=b"incomplete, newer")
    for stamp in ("20261102T000000Z", "20261103T000000Z", "20261104T000000Z"):
        fake_dump(tmp_path / stamp, stamp)
        done = lab.run_script("backup_s3.py upload", BACKUP_DIR=str(tmp_path / stamp), BACKUP_BUCKET=BUCKET,
                              BACKUP_PREFIX=PREFIX, CLUSTER_NAME="redis", BACKUP_RETENTION=str(retention), **s3_env)
        assert done.returncode == 0, done.stderr
    folders = sorted({item["Key"].split("/")[2] for item in client.list_objects_v2(Bucket=BUCKET)["Contents"]})
    complete = sorted(stamp for stamp in folders
                      if any(item["Key"] == f"{base}/{stamp}/manifest.json"
                             for item in client.list_objects_v2(Bucket=BUCKET)["Contents"]))
    print(f"\nretention {retention}: folders left {folders}")
    assert complete == kept
    # The newer incomplete one may be a backup still running: it stays. The older one goes.
    assert folders == sorted([*kept, "20261109T000000Z"])


def test_a_failed_upload_exits_non_zero(tmp_path: Path, s3: tuple[Any, dict[str, str]]) -> None:
    _, s3_env = s3
    lab = RedisLab(rendered_files(), tmp_path / "lab", first_ip=171)
    fake_dump(tmp_path / "dump", "20261102T000000Z")
    failed = lab.run_script("backup_s3.py upload", BACKUP_DIR=str(tmp_path / "dump"), BACKUP_BUCKET="no-such-bucket",
                            BACKUP_PREFIX=PREFIX, CLUSTER_NAME="redis", **s3_env)
    assert failed.returncode != 0
    assert "no-such-bucket" in failed.stderr


def test_scale_out_from_3_to_4_shards_under_writes_loses_nothing(tmp_path: Path) -> None:
    zones = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    three = rendered_files(zones=zones, shards=3)["topology.txt"]
    lab = RedisLab(rendered_files(zones=zones, shards=4), tmp_path, first_ip=91)
    old_members = [m for m in lab.members if m.shard < 3]
    assert [m.host for m in old_members] == [line.split()[2] for line in three.splitlines()[1:]]
    try:
        (tmp_path / "three.txt").write_text(three)
        form(lab, tmp_path / "three.txt", timeout="60")
        old_keys = fill(lab, 32, 3, value_kib=4)
        old = {f"{{{tag_in_shard(s, 3)}}}fill:{i}" for s in range(3) for i in range(old_keys // 3)}
        took, log = grow_under_writes(lab, new_shard=3, timeout=600)
        lab.wait(lab.healthy, "a healthy 4-shard cluster", 60)
        new_master = lab.member_of(3, "master")
        view = lab.node(new_master).execute_command("CLUSTER NODES")
        mine = next(info for address, info in view.items() if address.startswith(new_master.ip + ":"))
        owned = sum(int(r[-1]) - int(r[0]) + 1 for r in mine["slots"])
        client = lab.client()
        unreadable = [key for key in old if client.get(key) is None]
        client.close()
        lost = lost_keys(lab, log.acknowledged)
        print(f"\nscale-out 3->4 in {took:.1f} s: new master owns {owned} slots; {len(log.acknowledged)} writes "
              f"acknowledged, {len(lost)} lost, longest gap {log.longest_gap:.2f} s; {len(old)} old keys, "
              f"{len(unreadable)} unreadable")
        assert "master" in mine["flags"] and owned >= 4000
        assert lab.role(lab.member_of(3, "replica")) == "slave"
        assert lost == [] and unreadable == [] and len(log.acknowledged) > 100
        again = lab.run_script("bootstrap.sh", TOPOLOGY_FILE=str(lab.etc / "topology.txt"), BOOTSTRAP_TIMEOUT="60")
        assert again.returncode == 0 and "changing nothing" in again.stderr
        shrink = lab.run_script("bootstrap.sh", TOPOLOGY_FILE=str(tmp_path / "three.txt"), BOOTSTRAP_TIMEOUT="60")
        assert shrink.returncode == 1
        assert "the cluster serves slots from 4 masters but the topology has 3: refusing to shrink" in shrink.stderr
    finally:
        lab.close()


def test_haai_restore_prints_the_steps_and_the_verifying_job_for_a_chosen_backup(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "ha_ai_stack_tools.cli", "restore", "--stack", "prod",
               "--backup", "20261126T010344Z", "--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    uri = "s3://acme-redis-backups/prod/redis/20261126T010344Z"
    assert f"pulumi config set --stack prod --path 'haai:redis.restore_from' {uri}" in done.stdout
    job = yaml.safe_load(done.stdout.split("\n---\n", 1)[1])
    assert job["kind"] == "Job" and job["metadata"]["name"].startswith("redis-restore-")
    assert {"name": "RESTORE_FROM", "value": uri} in job["spec"]["template"]["spec"]["containers"][0]["env"]
    rendered = yaml.safe_load((tmp_path / "out" / "ai-serving.statefulset.redis-us-east-1a.yaml").read_text())
    assert rendered["spec"]["template"]["spec"]["initContainers"][0]["name"] == "restore"
    unknown = subprocess.run([*command[:-4], "--backup", "20261126T010344Z", "--stack", "dev"], capture_output=True,
                             text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert unknown.returncode == 2
    assert "stack dev has no redis.backup section: pass the whole s3:// URI" in unknown.stderr
