"""Redis rolling update on real redis-server with the prod stack's shipped files: unordered vs ordered zones.

Each run loads the cluster (default 512 MiB), starts a continuous writer, and rolls every member as
Kubernetes does (pre-stop.sh, a new address, readiness.sh gating the next pod):
- "unordered": the three zone StatefulSets roll at the same time, as the engine updates independent
  resources (the layout before this change: no dependency between them);
- "ordered (ours)": the waves read from the rendered objects (each zone depends on the previous one).
It reports the longest write gap and the rollout's total time, median/min/max, and acknowledged
writes lost. Then it measures what a member's restart costs with AOF on: SHUTDOWN SAVE vs NOSAVE,
the AOF load time, and whether the replica resynced partially or fully.
Usage: python bench/redis_rollout.py [--runs 3] [--mib 512] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from table import header, row  # noqa: E402
from tests.conftest import stack_capture  # noqa: E402
from tests.redis_lab import (  # noqa: E402
    PASSWORD,
    PORT,
    Rollout,
    Writer,
    config_map_files,
    fill,
    lost_keys,
    masters_by_zone,
    rollout_waves,
    running_lab,
)

BENCH_FIRST_IP = 131  # its own loopback range, apart from the tests' and the other benchmark's
BENCH_NEXT_IP = 220
SHARDS = 3


def roll(files: dict[str, str], waves: list[list[str]], mib: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="redis-rollout-") as workdir, \
            running_lab(files, Path(workdir), first_ip=BENCH_FIRST_IP) as lab:
        fill(lab, mib, SHARDS)
        lab.wait(lab.healthy, "synced after the load", 300)
        writer = Writer(lab, max_seconds=900)
        writer.start()
        time.sleep(1.0)
        log = Rollout(lab, waves, next_ip=BENCH_NEXT_IP).run()
        lab.wait(lab.healthy, "healthy after the rollout", 120)
        time.sleep(1.0)
        writes = writer.stop()
        return {"gap": writes.longest_gap, "seconds": log.seconds, "down": log.most_down_at_once,
                "lost": len(lost_keys(lab, writes.acknowledged)), "masters": masters_by_zone(lab),
                "forced": log.killed_after_grace}


def restart_costs(files: dict[str, str], mib: int) -> dict[str, float | str]:
    """One replica stopped with SHUTDOWN SAVE and one with NOSAVE; each restarted and resynced."""
    with tempfile.TemporaryDirectory(prefix="redis-restart-") as workdir, \
            running_lab(files, Path(workdir), first_ip=BENCH_FIRST_IP) as lab:
        fill(lab, mib, SHARDS)
        lab.wait(lab.healthy, "synced after the load", 300)
        result: dict[str, float | str] = {}
        for shard, mode in ((0, "SAVE"), (1, "NOSAVE")):
            replica, master = lab.member_of(shard, "replica"), lab.member_of(shard, "master")
            stats_before = lab.node(master).info("stats")
            started = time.monotonic()
            # redis-cli, as pre-stop.sh does (a Python client would retry the closed connection).
            subprocess.run(["redis-cli", "--no-auth-warning", "-h", replica.ip, "-p", str(PORT), "SHUTDOWN", mode],
                           env={**os.environ, "REDISCLI_AUTH": PASSWORD}, capture_output=True, timeout=300)
            assert replica.process is not None
            replica.process.wait(timeout=300)
            replica.process = None
            result[f"shutdown {mode} (s)"] = time.monotonic() - started
            started = time.monotonic()
            lab.start(replica)  # returns once PING answers: the AOF is loaded
            result[f"restart load after {mode} (s)"] = time.monotonic() - started
            lab.wait(lab.replicas_synced, "resync", 300)
            result[f"ready after {mode} (s)"] = time.monotonic() - started
            stats_after = lab.node(master).info("stats")
            full = stats_after["sync_full"] - stats_before["sync_full"]
            partial = stats_after["sync_partial_ok"] - stats_before["sync_partial_ok"]
            result[f"resync after {mode}"] = "full" if full else "partial" if partial else "none"
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--smoke", action="store_true", help="one small run: proves the benchmark still works (CI)")
    options = parser.parse_args()
    if options.smoke:
        options.runs, options.mib = 1, 32
    capture = stack_capture("prod")
    files = config_map_files(capture)
    ordered = rollout_waves(capture)
    unordered = [sorted(sts for wave in ordered for sts in wave)]
    results: dict[str, list[dict[str, Any]]] = {"unordered": [], "ordered (ours)": []}
    for _ in range(options.runs):  # interleaved so drift hits both
        results["unordered"].append(roll(files, unordered, options.mib))
        results["ordered (ours)"].append(roll(files, ordered, options.mib))
    print(f"Redis rolling update, 3 shards x 1 replica over 3 zones, {options.mib} MiB, {options.runs} runs each")
    print(header(40))
    base = [r["gap"] for r in results["unordered"]]
    for label, runs in results.items():
        print(row(f"longest write gap (s), {label}", [r["gap"] for r in runs], base if label != "unordered" else None,
                  40))
    base_time = [r["seconds"] for r in results["unordered"]]
    for label, runs in results.items():
        print(row(f"rollout time (s), {label}", [r["seconds"] for r in runs],
                  base_time if label != "unordered" else None, 40))
    for label, runs in results.items():
        print(f"{label}: most members down at once {max(r['down'] for r in runs)}, acknowledged writes lost "
              f"{sum(r['lost'] for r in runs)}, members killed after the grace period "
              f"{sum(r['forced'] for r in runs)}, masters per zone after the last run {runs[-1]['masters']}")
    costs = restart_costs(files, options.mib)
    print(f"one replica's restart with AOF on, {options.mib} MiB in the cluster:")
    for key, value in costs.items():
        print(f"  {key:<32} {value:.2f}" if isinstance(value, float) else f"  {key:<32} {value}")


if __name__ == "__main__":
    main()
