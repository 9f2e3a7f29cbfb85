"""Redis Cluster write-unavailability on real redis-server, with the shipped redis.conf and scripts.

1. Failover: SIGKILL a master under a writer whose keys live on it; the write gap, with our default
   cluster-node-timeout against Redis's default 15000 (which Bitnami's chart keeps), same run.
2. Planned restart: a master restarted through pre-stop.sh (handover first) against a plain restart.
3. Spurious failovers: sustained writes with BGREWRITEAOF and BGSAVE forced on every master; any
   change of a shard's master counts as a spurious failover.
Both configs are rendered through the real program (prod stack, node-timeout overridden for the
baseline). Usage: python bench/redis_failover.py [--runs 5] [--soak-seconds 60]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from table import header, row  # noqa: E402
from tests.conftest import run_stack_config  # noqa: E402
from tests.redis_lab import RedisLab, Writer, config_map_files, running_lab, tag_in_shard  # noqa: E402

REDIS_DEFAULT_TIMEOUT_MS = 15000
OTHER_TIMEOUTS_MS = [2000, 5000]  # either side of ours, to show why ours was chosen
BENCH_FIRST_IP = 111  # its own loopback range, apart from the test drills'


def files_for(node_timeout_ms: int | None) -> dict[str, str]:
    """The prod stack's Redis ConfigMap, optionally with another cluster-node-timeout."""
    config = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]
    raw = {key.removeprefix("haai:"): value for key, value in config.items()}
    if node_timeout_ms is not None:
        raw["redis"] = {**raw["redis"], "node_timeout_ms": node_timeout_ms}
    return config_map_files(run_stack_config(raw, stack="prod"))


def with_lab(files: dict[str, str], trial) -> float:
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as workdir, \
            running_lab(files, Path(workdir), first_ip=BENCH_FIRST_IP) as lab:
        return trial(lab)


def failover_gap(lab: RedisLab) -> float:
    master, replica = lab.member_of(0, "master"), lab.member_of(0, "replica")
    writer = Writer(lab, hash_tag=tag_in_shard(0, 3), max_seconds=120)
    writer.start()
    time.sleep(1.0)
    lab.kill(master, signal.SIGKILL)
    lab.wait(lambda: lab.role(replica) == "master", "promotion", 90)
    lab.wait(lab.slots_served_everywhere, "all slots served", 60)
    time.sleep(1.0)
    return writer.stop().longest_gap


def restart_gap(lab: RedisLab, *, handover: bool) -> float:
    master = lab.member_of(0, "master")
    writer = Writer(lab, hash_tag=tag_in_shard(0, 3), max_seconds=120)
    writer.start()
    time.sleep(1.0)
    if handover:
        lab.run_script("pre-stop.sh", REDIS_HOST=master.ip, PRESTOP_TIMEOUT="30")
        assert master.process is not None
        master.process.wait(timeout=30)
        master.process = None
    else:
        lab.kill(master, signal.SIGTERM)
    lab.start(master)
    lab.wait(lab.healthy, "healthy after the restart", 90)
    time.sleep(1.0)
    return writer.stop().longest_gap


def spurious_failovers(lab: RedisLab, seconds: float) -> float:
    masters_before = {m.host for m in lab.members if lab.role(m) == "master"}
    client = lab.client()
    payload = "x" * 512
    for batch in range(200):  # ~100 MB of data, so AOF rewrites and snapshots do real work
        pipe = client.pipeline()
        for i in range(1000):
            pipe.set(f"fill{batch}:{i}", payload)
        pipe.execute()
    client.close()
    writer = Writer(lab, max_seconds=seconds)
    writer.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for member in [m for m in lab.members if m.host in masters_before]:
            try:
                lab.node(member).bgrewriteaof()
                lab.node(member).bgsave(schedule=True)
            except Exception:  # noqa: BLE001 (an rewrite already running is fine)
                pass
        time.sleep(5)
    writer.stop()
    masters_after = {m.host for m in lab.members if lab.role(m) == "master"}
    return float(len(masters_before - masters_after))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--soak-seconds", type=float, default=60)
    parser.add_argument("--smoke", action="store_true", help="one small run: proves the benchmark still works (CI)")
    options = parser.parse_args()
    if options.smoke:
        options.runs, options.soak_seconds = 1, 3
        OTHER_TIMEOUTS_MS[:] = []
    ours, redis_default = files_for(None), files_for(REDIS_DEFAULT_TIMEOUT_MS)
    timeout = next(line.split()[1] for line in ours["redis.conf"].splitlines()
                   if line.startswith("cluster-node-timeout "))

    others = {ms: files_for(ms) for ms in OTHER_TIMEOUTS_MS}

    failover_ours, failover_default, planned, plain, spurious = [], [], [], [], []
    failover_other: dict[int, list[float]] = {ms: [] for ms in OTHER_TIMEOUTS_MS}
    for _ in range(options.runs):  # interleaved so drift hits every variant alike
        failover_ours.append(with_lab(ours, failover_gap))
        failover_default.append(with_lab(redis_default, failover_gap))
        for ms, files in others.items():
            failover_other[ms].append(with_lab(files, failover_gap))
        planned.append(with_lab(ours, lambda lab: restart_gap(lab, handover=True)))
        plain.append(with_lab(ours, lambda lab: restart_gap(lab, handover=False)))
        spurious.append(with_lab(ours, lambda lab: spurious_failovers(lab, options.soak_seconds)))

    print(f"Redis Cluster, 3 shards x 1 replica over 3 zones on loopback, {options.runs} runs each")
    print(header())
    print(row(f"failover write gap (s), node-timeout {REDIS_DEFAULT_TIMEOUT_MS}", failover_default))
    for ms in sorted(OTHER_TIMEOUTS_MS, reverse=True):
        print(row(f"failover write gap (s), node-timeout {ms}", failover_other[ms], failover_default))
    print(row(f"failover write gap (s), node-timeout {timeout} (ours)", failover_ours, failover_default))
    print(row("restart write gap (s), plain SIGTERM", plain))
    print(row("restart write gap (s), with pre-stop (ours)", planned, plain))
    print(row(f"spurious failovers in {options.soak_seconds:.0f}s soak (count)", spurious))


if __name__ == "__main__":
    main()
