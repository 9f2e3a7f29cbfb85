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
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.crc import key_slot

from ha_ai_stack_tools.capture import Capture

from . import shell_mutations
from ha_ai_stack_tools.render import manifests

PASSWORD = "drill-password-0123456789"
PORT = 6379


def config_map_files(capture: Capture) -> dict[str, str]:
    """The Redis ConfigMap's data from a captured stack; with HAAI_SHELL_MUTATION set, one planted bug from
    tests/shell_mutations.py in it (the mutation runner's way in; nothing else sets it)."""
    [config_map] = [m for m in manifests(capture) if m["kind"] == "ConfigMap" and "redis.conf" in m.get("data", {})]
    files = config_map["data"]
    if os.environ.get(shell_mutations.ENV):
        files = shell_mutations.apply(files, shell_mutations.by_name(os.environ[shell_mutations.ENV]))
    return files


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

    def data_dir(self, member: Member) -> Path:
        """The member's "volume": it outlives the process, as a PVC outlives the pod."""
        return self.workdir / "data" / member.host.split(".", 1)[0]

    def start(self, member: Member) -> None:
        self.start_nowait(member)
        self.wait(lambda: self.ping(member), f"{member.host.split('.', 1)[0]} to answer", 20)

    def start_nowait(self, member: Member) -> None:
        """Start the member's "pod" (start.sh) and return at once, while it may still be loading."""
        pod = member.host.split(".", 1)[0]
        data = self.data_dir(member)
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

    def start_all(self) -> None:
        for member in self.members:
            self.start(member)

    def kill(self, member: Member, sig: int = signal.SIGKILL, grace: float = 30) -> bool:
        """Stop a member as the kubelet does: ``sig``, then SIGKILL once ``grace`` seconds have passed.

        Returns True when it had to be killed after the grace period.
        """
        forced = False
        if member.process and member.process.poll() is None:
            member.process.send_signal(sig)
            try:
                member.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait(timeout=30)
                forced = True
        member.process = None
        return forced

    def close(self) -> None:
        for member in self.members:
            self.kill(member)

    def run_script(self, script: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        """A shipped script, unmodified: shell scripts with sh, Python ones with this interpreter."""
        script, *args = script.split()
        runner = [sys.executable] if script.endswith(".py") else ["sh"]
        return subprocess.run([*runner, str(self.etc / script), *args], env=self.env(**env), capture_output=True,
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


@contextmanager
def running_lab(files: dict[str, str], workdir: Path, first_ip: int = 11) -> Iterator[RedisLab]:
    """A bootstrapped cluster from ``files``; every process is killed afterwards, pass or fail."""
    lab = RedisLab(files, workdir, first_ip=first_ip)
    try:
        lab.start_all()
        lab.bootstrap()
        yield lab
    finally:
        lab.close()


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


# --- rollouts, as Kubernetes and the Pulumi engine carry them out ---------------------------------------

def rollout_waves(capture: Capture) -> list[list[str]]:
    """The zone StatefulSets' names, grouped in the waves the engine updates them in.

    The engine updates resources with no dependency path between them at the same time, and waits for a
    StatefulSet's rollout only when its successors depend on it; so a StatefulSet's wave is one more than
    the latest wave among the StatefulSets it depends on. Read from the captured objects, not assumed.
    """
    statefulsets = capture.of_type("kubernetes:apps/v1:StatefulSet")
    by_urn = {r.urn: r for r in statefulsets}
    level: dict[str, int] = {}

    def wave_of(urn: str) -> int:
        if urn not in level:
            deps = [d for d in by_urn[urn].dependencies if d in by_urn]
            level[urn] = 1 + max((wave_of(d) for d in deps), default=-1)
        return level[urn]

    waves: dict[int, list[str]] = {}
    for resource in statefulsets:
        waves.setdefault(wave_of(resource.urn), []).append(resource.inputs["metadata"]["name"])
    return [sorted(waves[index]) for index in sorted(waves)]


@dataclass
class RolloutLog:
    """What a rollout did: how long it took and the most members down at one moment."""

    seconds: float = 0.0
    most_down_at_once: int = 0
    restarted: list[str] = field(default_factory=list)
    killed_after_grace: int = 0  # members that did not stop within the grace period


class Rollout:
    """A rolling update of every member, as the StatefulSet controller and the kubelet do it.

    Per StatefulSet: highest ordinal first; for each pod the kubelet runs the preStop hook (pre-stop.sh),
    then stops the container; the replacement pod comes back on a NEW address (the hosts file, standing
    in for DNS, is updated) through start.sh, and the controller moves on only once readiness.sh passes.
    StatefulSets of one wave roll at the same time, each on its own thread.
    """

    def __init__(self, lab: RedisLab, waves: list[list[str]], *, handover_timeout: int = 60,
                 ready_timeout: float = 300, next_ip: int = 200, grace: float = 30) -> None:
        self.lab, self.waves, self.grace = lab, waves, grace
        self.handover_timeout, self.ready_timeout = handover_timeout, ready_timeout
        self.next_ip = next_ip
        self.log = RolloutLog()
        self._down = 0
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []

    def members_of(self, statefulset: str) -> list[Member]:
        def ordinal(member: Member) -> int:
            return int(member.host.split(".", 1)[0].rsplit("-", 1)[1])

        pods = [m for m in self.lab.members if member_group(m) == statefulset]
        return sorted(pods, key=ordinal, reverse=True)

    def ready(self, member: Member) -> bool:
        return self.lab.run_script("readiness.sh", timeout=10, REDIS_HOST=member.ip).returncode == 0

    def restart_pod(self, member: Member) -> None:
        with self._lock:
            self._down += 1
            self.log.most_down_at_once = max(self.log.most_down_at_once, self._down)
        self.lab.run_script("pre-stop.sh", timeout=self.handover_timeout + 30, REDIS_HOST=member.ip,
                            PRESTOP_TIMEOUT=str(self.handover_timeout))
        # The container gets SIGTERM once the hook returns, and SIGKILL when the grace period runs out.
        if self.lab.kill(member, signal.SIGTERM, grace=self.grace):
            with self._lock:
                self.log.killed_after_grace += 1
        with self._lock:
            member.ip = f"127.0.0.{self.next_ip}"
            self.next_ip += 1
            self.lab.write_hosts()
        self.lab.start(member)
        self.lab.wait(lambda: self.ready(member), f"{member.host} ready after its restart", self.ready_timeout)
        with self._lock:
            self._down -= 1
            self.log.restarted.append(member.host.split(".", 1)[0])

    def roll_statefulset(self, statefulset: str) -> None:
        try:
            for member in self.members_of(statefulset):
                self.restart_pod(member)
        except BaseException as error:  # noqa: BLE001 (reported by run())
            self.errors.append(error)

    def run(self) -> RolloutLog:
        started = time.monotonic()
        for wave in self.waves:
            threads = [threading.Thread(target=self.roll_statefulset, args=(sts,)) for sts in wave]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if self.errors:
                raise AssertionError(f"the rollout failed: {self.errors[0]!r}") from self.errors[0]
        self.log.seconds = time.monotonic() - started
        return self.log


def member_group(member: Member) -> str:
    """The StatefulSet a member belongs to: its pod name less the ordinal."""
    return member.host.split(".", 1)[0].rsplit("-", 1)[0]


def slot_owner(lab: RedisLab, slot: int) -> Member:
    """The live master serving ``slot``, as the cluster sees it now."""
    nodes = lab.node(lab.alive()[0]).execute_command("CLUSTER NODES")
    for address, info in nodes.items():
        if "master" in info["flags"] and any(int(r[0]) <= slot <= int(r[-1]) for r in info["slots"]):
            return next(m for m in lab.members if m.ip == address.split(":")[0])
    raise AssertionError(f"no master serves slot {slot}")


def fill(lab: RedisLab, mib: int, shards: int, value_kib: int = 4, incompressible: bool = False) -> int:
    """Load about ``mib`` MiB, spread evenly over the shards (straight to each master); returns the key count.

    ``incompressible`` values are random, so an RDB is as big as the data (the default ones compress ~100x)."""
    value = "v" * (value_kib * 1024)
    noise = os.urandom(value_kib * 1024 + 4096) if incompressible else b""
    per_shard = mib * 1024 // value_kib // shards
    for shard in range(shards):
        tag = tag_in_shard(shard, shards)
        master = slot_owner(lab, key_slot(tag.encode()))
        node = redis.Redis(host=master.ip, port=PORT, password=PASSWORD, socket_timeout=30)
        for start in range(0, per_shard, 1000):
            pipe = node.pipeline(transaction=False)
            for index in range(start, min(start + 1000, per_shard)):
                pipe.set(f"{{{tag}}}fill:{index}", noise[index % 4096:][:value_kib * 1024] if noise else value)
            pipe.execute()
        node.close()
    return per_shard * shards


def masters_by_zone(lab: RedisLab) -> dict[str, int]:
    """How many live masters each zone holds."""
    counts: dict[str, int] = {}
    for member in lab.alive():
        if lab.role(member) == "master":
            counts[member.zone] = counts.get(member.zone, 0) + 1
    return counts
