#!/bin/sh
# Form the cluster from TOPOLOGY_FILE, once. Idempotent: a cluster that already has slots is left as it is.
#
# Fresh cluster: each master gets an even range of the 16384 slots and its own config epoch, every
# member meets the first master, each replica follows its OWN shard's master (so the zone layout the
# topology encodes holds), then it waits for cluster_state:ok everywhere and for every replica's first
# sync (a replica that never synced cannot fail over).
#
# Env: TOPOLOGY_FILE (default /etc/redis/topology.txt: "shard role hostname" lines, role master|replica),
#      REDIS_PASSWORD, REDIS_PORT (6379), REDIS_HOSTS_FILE (optional), BOOTSTRAP_TIMEOUT (seconds, 600).
set -eu
. "$(dirname "$0")/lib.sh"
topology=${TOPOLOGY_FILE:-/etc/redis/topology.txt}
deadline=$(( $(date +%s) + ${BOOTSTRAP_TIMEOUT:-600} ))

members() { awk '!/^#/ && NF == 3' "$topology"; }
hosts() { members | awk '{ print $3 }'; }
total=$(members | wc -l)

wait_for() {  # DESCRIPTION COMMAND...: retry once a second until COMMAND succeeds or the deadline passes
  what=$1; shift
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then log "timed out waiting for $what"; exit 1; fi
    sleep 1
  done
}
answers() { ip=$(resolve "$1"); [ -n "$ip" ] && [ "$(rcli "$ip" PING 2>/dev/null)" = PONG ]; }
state_ok() { [ "$(info_field "$(resolve "$1")" cluster cluster_state)" = ok ]; }
knows_all() { [ "$(rcli "$(resolve "$1")" CLUSTER NODES | grep -v -c -e handshake -e noaddr)" -eq "$total" ]; }
synced() { [ "$(info_field "$(resolve "$1")" replication master_link_status)" = up ]; }
wait_healthy() {
  for host in $(hosts); do wait_for "cluster_state:ok on $host" state_ok "$host"; done
  for host in $(members | awk '$2 == "replica" { print $3 }'); do wait_for "first sync of $host" synced "$host"; done
}

for host in $(hosts); do wait_for "$host to answer" answers "$host"; done

for host in $(hosts); do
  if [ "$(info_field "$(resolve "$host")" cluster cluster_slots_assigned)" != 0 ]; then
    log "$host already serves slots: the cluster exists, changing nothing"
    wait_healthy
    log "cluster healthy"
    exit 0
  fi
done

shards=$(members | awk '$2 == "master"' | wc -l)
first=$(members | awk '$2 == "master"' | sort -n | head -1 | awk '{ print $3 }')
members | awk '$2 == "master" { print $1, $3 }' | sort -n | while read -r shard host; do
  ip=$(resolve "$host")
  rcli "$ip" CLUSTER SET-CONFIG-EPOCH $((shard + 1)) > /dev/null
  rcli "$ip" CLUSTER ADDSLOTSRANGE $((shard * 16384 / shards)) $(((shard + 1) * 16384 / shards - 1)) > /dev/null
  log "shard $shard: $host serves slots $((shard * 16384 / shards))-$(((shard + 1) * 16384 / shards - 1))"
done
for host in $(hosts); do
  [ "$host" = "$first" ] || rcli "$(resolve "$first")" CLUSTER MEET "$(resolve "$host")" "$REDIS_PORT" > /dev/null
done
for host in $(hosts); do wait_for "$host to know all $total members" knows_all "$host"; done
members | awk '$2 == "replica" { print $1, $3 }' | while read -r shard host; do
  master=$(members | awk -v s="$shard" '$1 == s && $2 == "master" { print $3 }')
  master_id=$(rcli "$(resolve "$master")" CLUSTER MYID)
  rcli "$(resolve "$host")" CLUSTER REPLICATE "$master_id" > /dev/null
  log "shard $shard: $host replicates $master"
done
wait_healthy
log "cluster formed: $shards shards, $total members"
