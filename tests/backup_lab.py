"""Backups and restores as the rendered objects run them: helpers shared by the drills and bench/redis_backup.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis

from ha_ai_stack import RedisCluster, RedisClusterArgs

from .conftest import run_components
from .redis_lab import PASSWORD, PORT, RedisLab, WriteLog, Writer, config_map_files

BUCKET = "acme-redis-backups"
PREFIX = "prod"
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]


def rendered_files(**fields: Any) -> dict[str, str]:
    """The Redis ConfigMap's files of a 3-zone cluster with backups on."""
    args = RedisClusterArgs(zones=fields.pop("zones", ZONES), backup={"bucket": BUCKET, "prefix": PREFIX}, **fields)
    return config_map_files(run_components(lambda: RedisCluster("redis", args)))


def backup(lab: RedisLab, s3_env: dict[str, str], staging: Path, retention: int = 7,
           phases: dict[str, float] | None = None) -> str:
    """One backup as the CronJob runs it: backup.sh (dump), then backup_s3.py upload. Returns the timestamp;
    ``phases`` gets the seconds of each container."""
    started = time.monotonic()
    dumped = lab.run_script("backup.sh", timeout=1800, TOPOLOGY_FILE=str(lab.etc / "topology.txt"),
                            BACKUP_DIR=str(staging))
    assert dumped.returncode == 0, dumped.stderr
    dump_done = time.monotonic()
    uploaded = lab.run_script("backup_s3.py upload", timeout=1800, BACKUP_DIR=str(staging), BACKUP_BUCKET=BUCKET,
                              BACKUP_PREFIX=PREFIX, CLUSTER_NAME="redis", BACKUP_RETENTION=str(retention), **s3_env)
    assert uploaded.returncode == 0, uploaded.stderr
    if phases is not None:
        phases.update({"dump (backup.sh)": dump_done - started, "upload (backup_s3.py)": time.monotonic() - dump_done})
    return dict(line.split("=", 1) for line in (staging / "backup.env").read_text().split())["timestamp"]


def restore_uri(stamp: str) -> str:
    return f"s3://{BUCKET}/{PREFIX}/redis/{stamp}"


READERS = {b"string": lambda pipe, key: pipe.get(key), b"hash": lambda pipe, key: pipe.hgetall(key),
           b"list": lambda pipe, key: pipe.lrange(key, 0, -1), b"set": lambda pipe, key: pipe.smembers(key),
           b"zset": lambda pipe, key: pipe.zrange(key, 0, -1, withscores=True)}


def contents(lab: RedisLab) -> dict[str, tuple[bytes, Any, bool]]:
    """Every key of the cluster: its type, its value and whether it has a TTL, read from each master."""
    found: dict[str, tuple[bytes, Any, bool]] = {}
    for member in lab.alive():
        node = redis.Redis(host=member.ip, port=PORT, password=PASSWORD, socket_timeout=30)
        if node.execute_command("ROLE")[0] != b"master":
            continue
        keys = list(node.scan_iter(count=1000))
        pipe = node.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        types = pipe.execute()
        for key, kind in zip(keys, types):
            READERS[kind](pipe, key)
            pipe.ttl(key)
        replies = pipe.execute()
        for index, (key, kind) in enumerate(zip(keys, types)):
            found[key.decode()] = (kind, replies[2 * index], replies[2 * index + 1] > 0)
        node.close()
    return found


def load_variety(lab: RedisLab) -> None:
    """Keys of every common type, some with a TTL, besides the bulk strings of fill()."""
    client = lab.client()
    for index in range(200):
        client.hset(f"h:{index}", mapping={"a": index, "b": "x" * index})
        client.rpush(f"l:{index}", *range(index + 1))
        client.sadd(f"s:{index}", *range(index + 1))
        client.zadd(f"z:{index}", {f"m{n}": n for n in range(index + 1)})
        client.set(f"ttl:{index}", index, ex=3600)
    client.close()


def restore(target: RedisLab, s3_env: dict[str, str], stamp: str, phases: dict[str, float] | None = None) -> None:
    """As Kubernetes carries out the rendered restore: the Job, then each member's init container, start.sh,
    and the bootstrap Job. ``phases`` gets the seconds of each step."""
    clock = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal clock
        if phases is not None:
            phases[phase] = time.monotonic() - clock
        clock = time.monotonic()

    verified = target.run_script("backup_s3.py verify-restore", RESTORE_FROM=restore_uri(stamp), timeout=1800,
                                 TOPOLOGY_FILE=str(target.etc / "topology.txt"), **s3_env)
    assert verified.returncode == 0, verified.stderr
    lap("verify every checksum")
    for member in target.members:
        target.data_dir(member).mkdir(parents=True, exist_ok=True)
        loaded = target.run_script("backup_s3.py restore-member", RESTORE_FROM=restore_uri(stamp), timeout=1800,
                                   POD_HOSTNAME=member.host, REDIS_DATA_DIR=str(target.data_dir(member)),
                                   TOPOLOGY_FILE=str(target.etc / "topology.txt"), **s3_env)
        assert loaded.returncode == 0, loaded.stderr
    lap("fetch and install")
    target.start_all()
    lap("members start and load")
    target.bootstrap()
    lap("form and first sync")


def form(lab: RedisLab, topology: Path, timeout: str = "120") -> None:
    """Start the members a (smaller) topology names and bootstrap them as that cluster."""
    hosts = {line.split()[2] for line in topology.read_text().splitlines() if line and not line.startswith("#")}
    for member in lab.members:
        if member.host in hosts:
            lab.start(member)
    formed = lab.run_script("bootstrap.sh", TOPOLOGY_FILE=str(topology), BOOTSTRAP_TIMEOUT=timeout)
    assert formed.returncode == 0, formed.stderr


def grow_under_writes(lab: RedisLab, new_shard: int, timeout: int) -> tuple[float, WriteLog]:
    """Start the new shard's members and run bootstrap.sh on the full topology while a writer runs, as a
    scale-out does. Returns the bootstrap's seconds and what the writer did."""
    writer = Writer(lab, prefix="scale", max_seconds=timeout, max_writes=10_000_000)
    writer.start()
    time.sleep(1)
    for member in lab.members:
        if member.shard == new_shard:
            lab.start(member)
    started = time.monotonic()
    grown = lab.run_script("bootstrap.sh", timeout=timeout, TOPOLOGY_FILE=str(lab.etc / "topology.txt"),
                           BOOTSTRAP_TIMEOUT=str(timeout - 100))
    took = time.monotonic() - started
    time.sleep(1)
    log = writer.stop()
    assert grown.returncode == 0, grown.stderr
    return took, log
