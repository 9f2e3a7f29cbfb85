"""Fault drills on real redis-server processes, run with the redis.conf and scripts of the prod stack's ConfigMap.

Each drill prints and asserts its counts: keys written, acknowledged (by SET; by WAIT 1) and lost.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import stack_capture
from .redis_lab import (
    CLIENT_ERRORS,
    PASSWORD,
    RedisLab,
    Writer,
    config_map_files,
    lost_keys,
    running_lab,
    slot_owner,
    tag_in_shard,
)
from redis.crc import key_slot


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RedisLab]:
    """A bootstrapped 3 x 1 cluster over three zones; every process is killed afterwards, pass or fail."""
    with running_lab(config_map_files(stack_capture("prod")), tmp_path) as cluster:
        yield cluster


def node_ids_and_slots(lab: RedisLab) -> dict[str, tuple[str, str]]:
    nodes = lab.node(lab.members[0]).execute_command("CLUSTER NODES")
    return {info["hostname"]: (info["node_id"], repr(info["slots"])) for info in nodes.values()}


def report(drill: str, log, lost: list[str], **figures: object) -> None:
    extra = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"[{drill}] written={log.attempted} acknowledged={len(log.acknowledged)} "
          f"wait-acknowledged={len(log.replicated)} lost={len(lost)} {extra}")


def test_bootstrap_pairs_shards_across_zones_and_rerun_changes_nothing(lab: RedisLab) -> None:
    assert lab.healthy()
    for shard in range(3):
        master, replica = lab.member_of(shard, "master"), lab.member_of(shard, "replica")
        assert lab.role(master) == "master" and lab.role(replica) == "slave"
        master_id = lab.node(master).execute_command("CLUSTER MYID")
        assert lab.node(replica).info("replication")["master_host"] == master.ip
        assert lab.node(replica).execute_command("CLUSTER NODES")[f"{replica.ip}:6379"]["master_id"] == master_id
        assert master.zone != replica.zone
    masters_per_zone = {m.zone for m in lab.members if m.role == "master"}
    assert len(masters_per_zone) == 3, "each zone holds exactly one master"

    before = node_ids_and_slots(lab)
    rerun = lab.bootstrap()
    assert "changing nothing" in rerun.stderr
    assert node_ids_and_slots(lab) == before
    print(f"[bootstrap] members={len(lab.members)} rerun changed nothing: {len(before)} node ids and slots equal")


def test_probe_scripts_report_the_member_state(lab: RedisLab) -> None:
    member = lab.members[0]
    assert lab.run_script("readiness.sh", REDIS_HOST=member.ip).returncode == 0
    assert lab.run_script("liveness.sh", REDIS_HOST=member.ip).returncode == 0
    lab.kill(member)
    assert lab.run_script("readiness.sh", REDIS_HOST=member.ip).returncode != 0
    assert lab.run_script("liveness.sh", REDIS_HOST=member.ip).returncode != 0


def test_master_kill_promotes_its_own_shard_replica(lab: RedisLab) -> None:
    master, replica = lab.member_of(0, "master"), lab.member_of(0, "replica")
    tag = tag_in_shard(0, 3)
    owner = lab.client().get_node_from_key(f"{{{tag}}}x")
    assert owner.host in (master.host, master.ip), "the writer's keys must live on the master we kill"
    writer = Writer(lab, hash_tag=tag, max_seconds=90)
    writer.start()
    time.sleep(1.5)
    lab.kill(master, signal.SIGKILL)
    promoted_after = lab.wait(lambda: lab.role(replica) == "master", "shard 0's replica to be promoted", 60)
    lab.wait(lab.slots_served_everywhere, "all slots to be served again", 60)
    time.sleep(1.5)
    log = writer.stop()
    lost = lost_keys(lab, log.acknowledged)
    report("master-kill", log, lost, write_gap_s=round(log.longest_gap, 2),
           promoted_after_s=round(promoted_after, 2), node_timeout_ms=3000)
    assert log.acknowledged
    # The writer's keys live on the killed master, so its writes really stalled until the promotion.
    assert log.longest_gap >= 1.0
    # Replication is asynchronous: writes acknowledged in the last moment before a crash can be lost.
    assert len(lost) <= 50, f"lost {len(lost)} acknowledged writes"


def test_planned_restart_through_pre_stop_loses_nothing(lab: RedisLab) -> None:
    master, replica = lab.member_of(1, "master"), lab.member_of(1, "replica")
    writer = Writer(lab, max_seconds=90)
    writer.start()
    time.sleep(1.5)
    handover = lab.run_script("pre-stop.sh", REDIS_HOST=master.ip, PRESTOP_TIMEOUT="30")
    assert handover.returncode == 0, handover.stderr
    assert "handing over to" in handover.stderr
    assert master.process is not None
    master.process.wait(timeout=30)  # pre-stop ends with SHUTDOWN NOSAVE
    master.process = None
    assert lab.role(replica) == "master"
    # It stopped as a replica: pre-stop waited for the switch (Redis logs the role as M or S on each line).
    pod = master.host.split(".", 1)[0]
    [stopping] = [line for line in (lab.workdir / f"{pod}.log").read_text().splitlines()
                  if "User requested shutdown" in line][-1:]
    assert stopping.split()[0].endswith(":S"), stopping
    lab.start(master)
    lab.wait(lambda: lab.role(master) == "slave", "the old master to rejoin as a replica", 60)
    lab.wait(lab.healthy, "the cluster to be healthy again", 60)
    time.sleep(1)
    log = writer.stop()
    lost = lost_keys(lab, log.acknowledged)
    report("planned-restart", log, lost, write_gap_s=round(log.longest_gap, 2))
    assert log.acknowledged
    assert lost == []


def test_full_restart_on_new_addresses_keeps_every_key(lab: RedisLab) -> None:
    writer = Writer(lab, use_wait=True, max_writes=2000)
    writer.run()  # synchronously: a fixed batch before the restart
    log = writer.stop()
    assert len(log.acknowledged) == 2000
    for member in lab.members:
        lab.kill(member, signal.SIGTERM)  # every pod stops (SIGTERM: Redis saves on shutdown)
    old = {m.host: m.ip for m in lab.members}
    for index, member in enumerate(lab.members):
        member.ip = f"127.0.0.{lab.first_ip + 40 + index}"
    lab.write_hosts()  # "DNS" now gives every pod a new IP
    lab.start_all()
    took = lab.wait(lab.healthy, "cluster_state:ok after the full restart", 90)
    assert all(old[m.host] != m.ip for m in lab.members)
    lost = lost_keys(lab, log.acknowledged)
    report("full-restart", log, lost, recovered_s=round(took, 2))
    assert lost == []


def test_a_crash_of_every_member_keeps_what_was_written_a_second_before(lab: RedisLab) -> None:
    """AOF with fsync every second: a power loss of every node loses at most the last second. (A clean stop
    would not tell: Redis writes an RDB snapshot when it shuts down.)"""
    writer = Writer(lab, max_writes=2000)
    writer.run()
    log = writer.stop()
    assert len(log.acknowledged) == 2000
    time.sleep(2)  # two fsync intervals
    for member in lab.members:
        lab.kill(member, signal.SIGKILL)
    lab.start_all()
    took = lab.wait(lab.healthy, "cluster_state:ok after the crash", 90)
    lost = lost_keys(lab, log.acknowledged)
    report("full-crash", log, lost, recovered_s=round(took, 2))
    assert lost == []


def test_zone_loss_keeps_every_shard_and_every_replicated_write(lab: RedisLab) -> None:
    zone = lab.member_of(0, "master").zone
    doomed = [m for m in lab.members if m.zone == zone]
    assert {m.role for m in doomed} == {"master", "replica"}
    writer = Writer(lab, use_wait=True, max_seconds=90)
    writer.start()
    time.sleep(1.5)
    for member in doomed:
        lab.kill(member, signal.SIGKILL)
    orphaned = lab.member_of(0, "replica")  # shard 0's master was in the lost zone
    took = lab.wait(lambda: lab.role(orphaned) == "master", "shard 0's replica to take over", 60)
    lab.wait(lab.slots_served_everywhere, "all slots served after losing a zone", 60)
    time.sleep(1.5)
    log = writer.stop()
    masters = [m for m in lab.alive() if lab.role(m) == "master"]
    assert len(masters) == 3 and zone not in {m.zone for m in masters}
    lost = lost_keys(lab, log.replicated)
    report("zone-loss", log, lost, zone=zone, all_slots_after_s=round(took, 2))
    assert log.replicated
    assert lost == []


def test_pre_stop_on_a_master_without_replicas_stops_without_waiting_for_one(tmp_path: Path) -> None:
    """dev runs 3 x 0: pre-stop must shut down at once instead of looking for a replica that never comes."""
    cluster = RedisLab(config_map_files(stack_capture("dev")), tmp_path, first_ip=81)
    try:
        cluster.start_all()
        cluster.bootstrap()
        master = cluster.members[0]
        result = cluster.run_script("pre-stop.sh", REDIS_HOST=master.ip, PRESTOP_TIMEOUT="60", timeout=15)
        assert result.returncode == 0 and "no in-sync replica: stopping without a handover" in result.stderr
        assert master.process is not None and master.process.wait(timeout=15) is not None
        master.process = None
    finally:
        cluster.close()


def test_liveness_tolerates_loading_and_readiness_does_not(lab: RedisLab) -> None:
    """A member loading a big AOF must stay alive (killing it restarts the load) but not be ready."""
    # Two million small keys (load time grows with the key count), made server-side by short script calls:
    # one long call would block the master past cluster-node-timeout and its replica would take over.
    tag = tag_in_shard(0, 3)
    member = slot_owner(lab, key_slot(tag.encode()))
    for batch in range(20):
        lab.node(member).eval("for i = ARGV[1], ARGV[1] + 99999 do redis.call('SET', KEYS[1] .. i, i) end", 1,
                              f"{{{tag}}}k", batch * 100_000)
    lab.wait(lab.replicas_synced, "replicas in sync", 120)
    assert lab.run_script("pre-stop.sh", REDIS_HOST=member.ip, PRESTOP_TIMEOUT="30").returncode == 0
    assert member.process is not None
    member.process.wait(timeout=30)
    member.process = None
    seen: list[tuple[int, int, bool]] = []
    lab.start_nowait(member)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not seen or seen[-1][1] != 0):  # until the member is ready
        reply = subprocess.run(["redis-cli", "--no-auth-warning", "-a", PASSWORD, "-h", member.ip, "-p", "6379",
                                "PING"], capture_output=True, text=True).stdout
        seen.append((lab.run_script("liveness.sh", REDIS_HOST=member.ip).returncode,
                     lab.run_script("readiness.sh", REDIS_HOST=member.ip).returncode, "LOADING" in reply))
    loading = [codes for codes in seen if codes[2]]
    print(f"[loading] probes while starting: {len(seen)}, liveness failures {sum(1 for c in seen if c[0])}")
    assert loading, "never caught the member loading: load more data"
    assert all(live == 0 for live, _, _ in loading)
    # Not ready while loading; the probe right after PING may already see the load finished, so the last
    # sample of each loading stretch may be ready.
    last_of_stretch = {i for i, codes in enumerate(seen) if codes[2] and (i + 1 == len(seen) or not seen[i + 1][2])}
    assert all(codes[1] != 0 for i, codes in enumerate(seen) if codes[2] and i not in last_of_stretch)
    assert seen[-1][:2] == (0, 0)


def test_losing_a_whole_shard_keeps_the_other_shards_writable(lab: RedisLab) -> None:
    """cluster-require-full-coverage no: a lost shard makes its own slots fail, not the whole cluster."""
    for member in (lab.member_of(0, "master"), lab.member_of(0, "replica")):
        lab.kill(member, signal.SIGKILL)
    survivor = lab.member_of(1, "master")
    lab.wait(lambda: int(lab.cluster_info(survivor)["cluster_slots_fail"]) > 0, "shard 0 to be marked failed", 30)
    time.sleep(1)
    client = lab.client()
    for shard in (1, 2):
        assert client.set(f"{{{tag_in_shard(shard, 3)}}}after-loss", "ok")
    with pytest.raises(CLIENT_ERRORS):
        client.set(f"{{{tag_in_shard(0, 3)}}}after-loss", "lost")
    client.close()
