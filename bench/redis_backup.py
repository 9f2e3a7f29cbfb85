"""Redis backups, restores and scale-out on real redis-server and moto's S3 server, with the shipped files.

One cluster (3 shards x 1 replica, the prod layout) is loaded with incompressible data (default 1 GiB),
then, each several times:
- dump: the raw rate of `redis-cli --rdb` from each shard's replica (the baseline), BGSAVE on each replica
  (the alternative the issue asked to measure), and a whole backup (backup.sh, then backup_s3.py upload:
  dump, SHA-256, upload to S3, manifest, retention);
- restore: the raw rate of a redis-server loading each shard's RDB at start-up (the baseline), and a
  whole restore into a fresh cluster as Kubernetes carries out the rendered objects (verify-restore,
  each member's restore-member and start, bootstrap until healthy), with its phases.
Then a scale-out from 3 to 4 shards of the same amount of data under a continuous writer.
Rates are MiB of RDB per second. Usage: python bench/redis_backup.py [--runs 3] [--mib 1024] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from table import header, row  # noqa: E402
from tests.backup_lab import BUCKET, backup, form, grow_under_writes, rendered_files, restore, restore_uri  # noqa: E402
from tests.redis_lab import PASSWORD, PORT, RedisLab, fill, lost_keys, running_lab  # noqa: E402
from tests.s3_lab import moto_s3  # noqa: E402

SOURCE_IP, TARGET_IP, SCALE_IP, RAW_IP = 231, 241, 181, 251  # this benchmark's own loopback addresses
SHARDS = 3
MIB = 2**20


def timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    action()
    return time.monotonic() - started


def cli(ip: str, *args: str) -> str:
    return subprocess.run(["redis-cli", "--no-auth-warning", "-a", PASSWORD, "-h", ip, "-p", str(PORT), *args],
                          capture_output=True, text=True, check=True, timeout=1800).stdout


def replicas(lab: RedisLab) -> list[str]:
    return [m.ip for m in lab.members if m.role == "replica"]


def raw_dump(lab: RedisLab, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, ip in enumerate(replicas(lab)):
        cli(ip, "--rdb", str(folder / f"raw-{index}.rdb"))


def bgsave(lab: RedisLab) -> None:
    for ip in replicas(lab):
        before = cli(ip, "LASTSAVE").strip()
        cli(ip, "BGSAVE")
        while cli(ip, "LASTSAVE").strip() == before or "rdb_bgsave_in_progress:1" in cli(ip, "INFO", "persistence"):
            time.sleep(0.05)


def raw_upload(client: Any, staging: Path) -> None:
    for file in sorted(staging.glob("shard-*.rdb")):
        client.upload_file(str(file), BUCKET, f"raw/{file.name}")


def raw_download(client: Any, work: Path) -> None:
    """One streamed GET per shard (boto3's download_file makes ranged GETs, which moto serves slowly)."""
    for item in client.list_objects_v2(Bucket=BUCKET, Prefix="raw/")["Contents"]:
        body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"]
        with open(work / "raw-download.rdb", "wb") as handle:
            for chunk in iter(lambda: body.read(8 * MIB), b""):
                handle.write(chunk)


def raw_load(files: list[Path], workdir: Path) -> float:
    """Seconds for a plain redis-server to load each RDB at start-up (one after another)."""
    total = 0.0
    for file in files:
        folder = workdir / "raw-load"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copy(file, folder / "dump.rdb")
        ip = f"127.0.0.{RAW_IP}"
        started = time.monotonic()
        server = subprocess.Popen(["redis-server", "--bind", ip, "--port", str(PORT), "--dir", str(folder),
                                   "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            while True:
                reply = subprocess.run(["redis-cli", "-h", ip, "-p", str(PORT), "PING"], capture_output=True,
                                       text=True).stdout.strip()
                if reply == "PONG":
                    break
                time.sleep(0.01)
            total += time.monotonic() - started
        finally:
            server.kill()
            server.wait()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--smoke", action="store_true", help="16 MiB, one run: proves the benchmark still works")
    options = parser.parse_args()
    runs, mib = (1, 16) if options.smoke else (options.runs, options.mib)
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="redis-backup-") as tmp, moto_s3(BUCKET) as (client, s3_env):
        work = Path(tmp)
        files = rendered_files()
        with running_lab(files, work / "source", first_ip=SOURCE_IP) as source:
            fill(source, mib, SHARDS, value_kib=4, incompressible=True)
            source.wait(source.healthy, "replicas in sync after the load", 900)
            stamps = []
            for run in range(runs):
                add("raw dump (redis-cli --rdb)", timed(lambda: raw_dump(source, work / "raw")))
                add("BGSAVE on each replica", timed(lambda: bgsave(source)))
                staging = work / f"staging-{run}"
                phases: dict[str, float] = {}
                started = time.monotonic()
                stamps.append(backup(source, s3_env, staging, phases=phases))
                add("backup (dump + sha256 + upload)", time.monotonic() - started)
                for phase, seconds in phases.items():
                    add(f"  backup phase: {phase}", seconds)
                add("raw S3 upload (boto3 upload_file, per shard)", timed(lambda: raw_upload(client, staging)))
        data_mib = sum(f.stat().st_size for f in (work / "staging-0").glob("shard-*.rdb")) / MIB
        shard_files = sorted((work / "staging-0").glob("shard-*.rdb"))
        for run in range(runs):
            add("raw load (redis-server start from RDB)", raw_load(shard_files, work))
            add("raw S3 download (streamed GET, per shard)", timed(lambda: raw_download(client, work)))
            target = RedisLab(rendered_files(restore_from=restore_uri(stamps[0])), work / f"target-{run}",
                              first_ip=TARGET_IP)
            try:
                phases: dict[str, float] = {}
                add("restore (verify + fetch + load + form + sync)", timed(
                    lambda: restore(target, s3_env, stamps[0], phases=phases)))
                for phase, seconds in phases.items():
                    add(f"  restore phase: {phase}", seconds)
            finally:
                target.close()

        zones = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
        three = rendered_files(zones=zones, shards=3)["topology.txt"]
        lab = RedisLab(rendered_files(zones=zones, shards=4), work / "scale", first_ip=SCALE_IP)
        try:
            (work / "three.txt").write_text(three)
            form(lab, work / "three.txt")
            fill(lab, mib, SHARDS, value_kib=4, incompressible=True)
            lab.wait(lab.healthy, "synced after the load", 900)
            scale_seconds, log = grow_under_writes(lab, new_shard=3, timeout=3600)
            lost = lost_keys(lab, log.acknowledged)
        finally:
            lab.close()

    raw_backup = [d + u for d, u in zip(figures["raw dump (redis-cli --rdb)"],
                                        figures["raw S3 upload (boto3 upload_file, per shard)"])]
    raw_restore = [d + load for d, load in zip(figures["raw S3 download (streamed GET, per shard)"],
                                               figures["raw load (redis-server start from RDB)"])]
    raw_dump_rate = [data_mib / s for s in figures["raw dump (redis-cli --rdb)"]]
    backup_rate = [data_mib / s for s in figures["backup (dump + sha256 + upload)"]]
    raw_load_rate = [data_mib / s for s in figures["raw load (redis-server start from RDB)"]]
    restore_rate = [data_mib / s for s in figures["restore (verify + fetch + load + form + sync)"]]
    print(f"\n{data_mib:.0f} MiB of RDB in {SHARDS} shards, {runs} run(s)\n")
    print(header(52))
    for name, values in figures.items():
        print(row(name + " (s)", values, width=52))
    print(row("raw dump rate (MiB/s)", raw_dump_rate, width=52))
    print(row("backup rate (MiB/s)", backup_rate, raw_dump_rate, width=52))
    print(row("raw dump + raw upload rate (MiB/s)", [data_mib / s for s in raw_backup], width=52))
    print(row("backup rate vs raw dump + raw upload (MiB/s)", backup_rate, [data_mib / s for s in raw_backup],
              width=52))
    print(row("raw load rate (MiB/s)", raw_load_rate, width=52))
    print(row("restore rate (MiB/s)", restore_rate, raw_load_rate, width=52))
    print(row("raw download + raw load rate (MiB/s)", [data_mib / s for s in raw_restore], width=52))
    snapshot = [v + f + m for v, f, m in zip(figures["  restore phase: verify every checksum"],
                                             figures["  restore phase: fetch and install"],
                                             figures["  restore phase: members start and load"])]
    print(row("restore to loaded masters vs raw download + load", [data_mib / s for s in snapshot],
              [data_mib / s for s in raw_restore], width=52))
    load = figures.get("  restore phase: members start and load")
    if load:
        print(row("restore load phase rate (MiB/s)", [data_mib / s for s in load], raw_load_rate, width=52))
    print(f"\nscale-out 3 -> 4 shards with {mib} MiB: {scale_seconds:.1f} s; longest write gap "
          f"{log.longest_gap:.2f} s; {len(log.acknowledged)} writes acknowledged, {len(lost)} lost")
    print(f"BGSAVE vs --rdb: {statistics.median(figures['BGSAVE on each replica']):.2f} s vs "
          f"{statistics.median(figures['raw dump (redis-cli --rdb)']):.2f} s; the backup streams with --rdb "
          f"(a Job cannot read a file BGSAVE leaves on the member's volume)")
    assert not lost, "acknowledged writes were lost during the scale-out"


if __name__ == "__main__":
    main()
