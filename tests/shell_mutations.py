"""Hand-written mutations of the Redis scripts and redis.conf (mutation tools cannot mutate shell).

Each entry is one realistic bug: a text found exactly once in one shipped file, what it becomes, and
the drill that must fail because of it. ``tests/test_shell_mutations.py`` applies each to a copy of the
rendered files (through ``HAAI_SHELL_MUTATION``, read by ``redis_lab.config_map_files``) and runs its
drill in a fresh pytest process. ``SURVIVORS`` lists what no drill can tell, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

ENV = "HAAI_SHELL_MUTATION"
DRILLS = "tests/test_redis_drills.py::"
ROLLOUT = "tests/test_redis_rollout.py::"
BACKUP = "tests/test_redis_backup.py::"


@dataclass(frozen=True)
class ShellMutation:
    name: str
    file: str
    find: str
    replace: str
    drill: str
    bug: str


MUTATIONS: tuple[ShellMutation, ...] = (
    ShellMutation("readiness-without-cluster-state", "readiness.sh",
                  '[ "$(info_field "$me" cluster cluster_state)" = ok ] || exit 1', "true",
                  ROLLOUT + "test_readiness_is_honest_before_and_after_bootstrap",
                  "readiness passes on PING alone while the cluster is failing"),
    ShellMutation("readiness-ignores-replica-sync", "readiness.sh",
                  '[ "$(info_field "$me" replication master_link_status)" = up ] && ', "",
                  ROLLOUT + "test_readiness_is_honest_before_and_after_bootstrap",
                  "a replica whose link is down counts as ready, so a rollout moves on"),
    ShellMutation("readiness-not-ready-when-alone", "readiness.sh",
                  '[ "$(info_field "$me" cluster cluster_known_nodes)" = 1 ] && exit 0', "",
                  ROLLOUT + "test_readiness_is_honest_before_and_after_bootstrap",
                  "fresh members are never ready: a first install deadlocks on the zone chain"),
    ShellMutation("liveness-fails-on-loading", "liveness.sh", "PONG|*LOADING*) exit 0", "PONG) exit 0",
                  DRILLS + "test_liveness_tolerates_loading_and_readiness_does_not",
                  "the kubelet kills a member that is loading a big AOF, so it never finishes"),
    ShellMutation("pre-stop-does-not-wait-for-the-switch", "pre-stop.sh",
                  'until [ "$(role_of "$me")" = slave ]; do', "until true; do",
                  DRILLS + "test_planned_restart_through_pre_stop_loses_nothing",
                  "pre-stop shuts the master down before its replica has taken over"),
    ShellMutation("pre-stop-never-hands-over", "pre-stop.sh", 'if [ -n "$target" ]; then', "if false; then",
                  DRILLS + "test_planned_restart_through_pre_stop_loses_nothing",
                  "a planned stop becomes an unplanned failover"),
    ShellMutation("bootstrap-pairs-replica-with-another-shard", "bootstrap.sh",
                  """members | awk '$2 == "replica" { print $1, $3 }' | while read -r shard host; do follow "$host" "$shard"; done""",
                  """members | awk '$2 == "replica" { print $1, $3 }' | while read -r shard host; do follow "$host" "$(( (shard + 1) % shards ))"; done""",
                  DRILLS + "test_bootstrap_pairs_shards_across_zones_and_rerun_changes_nothing",
                  "a replica follows the master in its own zone, so a zone loss takes the whole shard"),
    ShellMutation("bootstrap-shrinks-silently", "bootstrap.sh", 'if [ "$serving" -gt "$shards" ]; then',
                  'if [ "$serving" -gt "$((shards + 1))" ]; then',
                  BACKUP + "test_scale_out_from_3_to_4_shards_under_writes_loses_nothing",
                  "lowering shards by one is not refused"),
    ShellMutation("bootstrap-skips-rebalance", "bootstrap.sh",
                  'redis-cli --no-auth-warning --cluster rebalance "$anchor_ip:$REDIS_PORT" --cluster-use-empty-masters >&2',
                  "true", BACKUP + "test_scale_out_from_3_to_4_shards_under_writes_loses_nothing",
                  "new masters join but never get slots"),
    ShellMutation("bootstrap-ignores-restored-slots", "bootstrap.sh",
                  'claimed=$(for host in $(members | awk \'$2 == "master" { print $3 }\'); do own_slots "$host"; done)',
                  'claimed=""',
                  BACKUP + "test_backup_then_restore_into_a_fresh_cluster_gives_every_key_back_and_survives_a_full_restart",
                  "bootstrap hands out slots a restored master already holds"),
    ShellMutation("start-keeps-old-addresses", "start.sh", 'if [ -s "$nodes" ]; then', "if false; then",
                  DRILLS + "test_full_restart_on_new_addresses_keeps_every_key",
                  "after a full restart every member dials its peers' dead addresses"),
    ShellMutation("balance-ignores-health", "balance.sh", "why=$(unhealthy)\nwhile", 'why=""\nwhile',
                  ROLLOUT + "test_balance_changes_nothing_on_an_unhealthy_cluster_and_says_why",
                  "balance moves masters around while a member is down"),
    ShellMutation("backup-dumps-from-the-master", "backup.sh",
                  """source=$(awk -v m="$id" '$1 == m { print $2; exit }' "$out/replicas.txt")""", 'source=""',
                  BACKUP + "test_backup_then_restore_into_a_fresh_cluster_gives_every_key_back_and_survives_a_full_restart",
                  "the snapshot's fork and transfer load the master that serves the writes"),
    ShellMutation("redis-conf-without-aof", "redis.conf", "appendonly yes", "appendonly no",
                  DRILLS + "test_a_crash_of_every_member_keeps_what_was_written_a_second_before",
                  "writes since the last RDB snapshot are lost on a restart"),
    ShellMutation("redis-conf-requires-full-coverage", "redis.conf", "cluster-require-full-coverage no",
                  "cluster-require-full-coverage yes",
                  DRILLS + "test_losing_a_whole_shard_keeps_the_other_shards_writable",
                  "one lost shard stops every write in the cluster"),
    ShellMutation("backup-retention-keeps-one-too-many", "backup_s3.py", "doomed = complete[keep:]",
                  "doomed = complete[keep + 1:]",
                  BACKUP + "test_retention_keeps_the_newest_complete_backups_and_drops_older_incomplete_ones",
                  "retention keeps one backup more than configured"),
    ShellMutation("restore-skips-the-checksum", "backup_s3.py",
                  'if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:', 'if size != entry["bytes"]:',
                  BACKUP + "test_a_spoiled_backup_is_refused_and_nothing_is_loaded",
                  "a corrupted backup of the right size is loaded"),
)

# Mutations no drill can tell apart from the original, each with the reason.
SURVIVORS: dict[str, str] = {}


def by_name(name: str) -> ShellMutation:
    matches = [m for m in MUTATIONS if m.name == name]
    if len(matches) != 1:
        raise KeyError(f"{ENV}={name!r} names no mutation in tests/shell_mutations.py")
    return matches[0]


def apply(files: dict[str, str], mutation: ShellMutation) -> dict[str, str]:
    """``files`` with the mutation applied; the text must occur exactly once, or the table is stale."""
    text = files[mutation.file]
    if text.count(mutation.find) != 1:
        raise AssertionError(f"mutation {mutation.name}: {mutation.find!r} occurs {text.count(mutation.find)} times "
                             f"in {mutation.file}; update tests/shell_mutations.py")
    return {**files, mutation.file: text.replace(mutation.find, mutation.replace)}
