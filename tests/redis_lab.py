"""A Redis Cluster on loopback, run with the scripts and redis.conf shipped in a rendered ConfigMap.

Each "pod" is a redis-server started through the shipped ``start.sh`` on its own 127.0.0.x address
(cluster-announce-ip set, see DESIGN.md section 8); a hosts file stands in for cluster DNS. Nothing
in the shipped files is changed: they only read the environment variables they document.
Used by the drills in tests/ and by bench/redis_failover.py. ``close()`` kills every process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.crc import key_slot

from ha_ai_stack_tools.capture import Capture
from ha_ai_stack_tools.render import manifests

PASSWORD = "drill-password-0123456789"
PORT = 6379


def config_map_files(capture: Capture) -> dict[str, str]:
    """The Redis ConfigMap's data from a captured stack."""
    [config_map] = [m for m in manifests(capture) if m["kind"] == "ConfigMap" and "redis.conf" in m.get("data", {})]
    return config_map["data"]


@dataclass
class Member:
    shard: int
    role: str
    host: str  # stable DNS name
    ip: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def zone(self) -> str:
        """The zone, from the StatefulSet name in the pod name (``redis-<zone>-<ordinal>``)."""
        pod = self.host.split(".", 1)[0]
        return pod.rsplit("-", 1)[0].removeprefix("redis-")


@dataclass
class RedisLab:
    files: dict[str, str]
    workdir: Path
    first_ip: int = 11
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run .ci/run (apt-get install redis-server)")
        self.etc = self.workdir / "etc"
        self.etc.mkdir(parents=True)
        for name, text in self.files.items():
            (self.etc / name).write_text(text)
        self.hosts_file = self.workdir / "hosts"
        for index, line in enumerate(l for l in self.files["topology.txt"].splitlines() if l and not l.startswith("#")):
            shard, role, host = line.split()
            self.members.append(Member(int(shard), role, host, f"127.0.0.{self.first_ip + index}"))
        self.write_hosts()

    # --- processes -------------------------------------------------------------------------------
    def write_hosts(self) -> None:
        self.hosts_file.write_text("".join(f"{m.ip} {m.host}\n" for m in self.members))

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REDIS_PASSWORD": PASSWORD,
                "REDIS_PORT": str(PORT), "REDIS_HOSTS_FILE": str(self.hosts_file), **extra}

    def start(self, member: Member) -> None:
        pod = member.host.split(".", 1)[0]
        data = self.workdir / "data" / pod
        data.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{pod}.log", "ab")
        member.process = subprocess.Popen(
            ["sh", str(self.etc / "start.sh")],
            env=self.env(POD_IP=member.ip, POD_HOSTNAME=member.host, REDIS_CONF=str(self.etc / "redis.conf"),
                         REDIS_DATA_DIR=str(data), REDIS_RUN_DIR=str(self.workdir / "run" / pod),
                         REDIS_BIND=member.ip),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.wait(lambda: self.ping(member), f"{pod} to answer", 20)

    def start_all(self) -> None:
        for member in self.members:
            self.start(member)

    def kill(self, member: Member, sig: int = signal.SIGKILL) -> None:
        if member.process and member.process.poll() is None:
            member.process.send_signal(sig)
            member.process.wait(timeout=30)
        member.process = None

    def close(self) -> None:
        for member in self.members:
            self.kill(member)

    def run_script(self, script: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(self.etc / script)], env=self.env(**env), capture_output=True,
                              text=True, timeout=timeout)

    def bootstrap(self) -> subprocess.CompletedProcess[str]:
        result = self.run_script("bootstrap.sh", TOPOLOGY_FILE=str(self.etc / "topology.txt"), BOOTSTRAP_TIMEOUT="60")
        assert result.returncode == 0, result.stderr
        return result

    # --- inspection ------------------------------------------------------------------------------
    def node(self, member: Member) -> redis.Redis:
        return redis.Redis(host=member.ip, port=PORT, password=PASSWORD, socket_timeout=2,
                           socket_connect_timeout=1, decode_responses=True)

    def ping(self, member: Member) -> bool:
        try:
            return bool(self.node(member).ping())
        except redis.RedisError:
            return False

    def role(self, member: Member) -> str:
        return str(self.node(member).execute_command("ROLE")[0])

    def cluster_info(self, member: Member) -> dict[str, Any]:
        return self.node(member).execute_command("CLUSTER INFO")

    def alive(self) -> list[Member]:
        return [m for m in self.members if m.process is not None]

    def slots_served_everywhere(self) -> bool:
        """Every live member sees all 16384 slots served and cluster_state:ok."""
        try:
            return all(str(self.cluster_info(m)["cluster_state"]) == "ok"
                       and int(self.cluster_info(m)["cluster_slots_ok"]) == 16384 for m in self.alive())
        except redis.RedisError:
            return False

    def replicas_synced(self) -> bool:
        try:
            return all(self.node(m).info("replication").get("master_link_status") == "up"
                       for m in self.alive() if self.role(m) == "slave")
        except redis.RedisError:
            return False

    def healthy(self) -> bool:
        return self.slots_served_everywhere() and self.replicas_synced()

    @staticmethod
    def wait(condition: Any, what: str, timeout: float = 60) -> float:
        """Poll ``condition`` until true; return the seconds it took, or fail saying what did not happen."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.1)
        return time.monotonic() - started

    def member_of(self, shard: int, role: str) -> Member:
        return next(m for m in self.members if m.shard == shard and m.role == role)

    def client(self) -> RedisCluster:
        """A cluster client; announced hostnames are mapped through the hosts file, like cluster DNS."""
        def remap(address: tuple[str, int]) -> tuple[str, int]:
            by_name = {m.host: m.ip for m in self.members}
            return by_name.get(address[0], address[0]), address[1]

        seeds = [ClusterNode(m.ip, PORT) for m in (self.alive() or self.members)]
        return RedisCluster(startup_nodes=seeds, password=PASSWORD, decode_responses=True,
                            address_remap=remap, socket_timeout=1, socket_connect_timeout=0.5)


# What a cluster client raises while members fail over or restart (RedisClusterException is not a RedisError).
CLIENT_ERRORS = (redis.RedisError, RedisClusterException, OSError, IndexError, KeyError)


@dataclass
class WriteLog:
    """What a writer did: keys acknowledged by SET (and by WAIT 1), and the longest write gap."""

    attempted: int = 0
    acknowledged: dict[str, str] = field(default_factory=dict)
    replicated: dict[str, str] = field(default_factory=dict)
    longest_gap: float = 0.0
    errors: int = 0


class Writer(threading.Thread):
    """Writes keys continuously (bounded in count and time) with a fresh cluster client per failure."""

    def __init__(self, lab: RedisLab, *, prefix: str = "k", use_wait: bool = False, hash_tag: str | None = None,
                 max_writes: int = 200_000, max_seconds: float = 120) -> None:
        super().__init__(daemon=True)
        self.lab, self.prefix, self.use_wait, self.hash_tag = lab, prefix, use_wait, hash_tag
        self.max_writes, self.max_seconds = max_writes, max_seconds
        self.log = WriteLog()
        self.stopping = threading.Event()
        self.crashed: BaseException | None = None

    def run(self) -> None:
        try:
            self._write()
        except BaseException as error:  # noqa: BLE001 (reported by stop(): a dead writer must not look quiet)
            self.crashed = error

    def _write(self) -> None:
        client = self.lab.client()
        started = last_ok = time.monotonic()
        for index in range(self.max_writes):
            if self.stopping.is_set() or time.monotonic() - started > self.max_seconds:
                break
            key = f"{{{self.hash_tag}}}{self.prefix}{index}" if self.hash_tag else f"{self.prefix}{index}"
            value = str(index)
            self.log.attempted += 1
            try:
                client.set(key, value)
                self.log.acknowledged[key] = value
                if self.use_wait:
                    node = client.get_node_from_key(key)
                    if int(client.execute_command("WAIT", 1, 1000, target_nodes=node)) >= 1:
                        self.log.replicated[key] = value
                now = time.monotonic()
                self.log.longest_gap = max(self.log.longest_gap, now - last_ok)
                last_ok = now
            except CLIENT_ERRORS:
                self.log.errors += 1
                time.sleep(0.05)
                try:
                    client.close()
                    client = self.lab.client()
                except CLIENT_ERRORS:
                    pass
            time.sleep(0.002)
        client.close()

    def stop(self) -> WriteLog:
        self.stopping.set()
        if self.ident is not None:  # run() may also be called directly, without a thread
            self.join(timeout=30)
        if self.crashed is not None:
            raise AssertionError(f"the writer died, so its figures mean nothing: {self.crashed!r}")
        return self.log


def tag_in_shard(shard: int, shards: int) -> str:
    """A hash tag whose slot is in ``shard``'s range (bootstrap.sh assigns even, contiguous ranges)."""
    low, high = shard * 16384 // shards, (shard + 1) * 16384 // shards - 1
    return next(tag for tag in (f"shard{shard}-{i}" for i in range(10_000)) if low <= key_slot(tag.encode()) <= high)


def lost_keys(lab: RedisLab, written: dict[str, str]) -> list[str]:
    """Keys whose acknowledged value is not what the cluster returns now."""
    client = lab.client()
    try:
        return [key for key, value in written.items() if client.get(key) != value]
    finally:
        client.close()
