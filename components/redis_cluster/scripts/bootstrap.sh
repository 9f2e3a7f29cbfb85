#!/bin/sh
# Form the cluster from TOPOLOGY_FILE, or grow it to the topology. Idempotent: run it again and it
# changes nothing.
#
# Fresh cluster (no member knows another): each master gets its own config epoch and an even range of
# the 16384 slots, minus the slots a restored master already claimed for the keys it loaded (see
# backup_s3.py restore-member); every member meets the first master, each replica follows its OWN
# shard's master (so the zone layout the topology encodes holds).
#
# Formed cluster: members that know only themselves (new shards after raising `shards`) are met, new
# replicas follow their own shard's master, and slots move onto the new, empty masters with
# `redis-cli --cluster rebalance --cluster-use-empty-masters` while clients keep writing (keys move
# with MIGRATE; clients follow ASK redirects, so no acknowledged write is lost). Fewer masters in the
# topology than the cluster serves is refused: shrinking is a manual procedure (README).
#
# Either way it then waits for cluster_state:ok everywhere and for every replica's first sync (a
# replica that never synced cannot fail over).
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

known() { info_field "$(resolve "$1")" cluster cluster_known_nodes; }
seen_as_replica() {
  rcli "$anchor_ip" CLUSTER NODES | tr -d '\r' | awk -v id="$(id_of "$1")" '$1 == id && $3 ~ /slave/ { f = 1 } END { exit !f }'
}
id_of() { rcli "$(resolve "$1")" CLUSTER MYID; }
own_slots() { rcli "$(resolve "$1")" CLUSTER NODES | tr -d '\r' | awk '$3 ~ /myself/ { for (i = 9; i <= NF; i++) print $i }'; }
# follow HOST SHARD: make HOST replicate whoever is master of SHARD's home member now.
follow() {
  home=$(members | awk -v s="$2" '$1 == s && $2 == "master" { print $3 }')
  if [ "$(role_of "$(resolve "$home")")" = master ]; then
    target=$(id_of "$home")
  else
    target=$(rcli "$(resolve "$home")" CLUSTER NODES | tr -d '\r' | awk '$3 ~ /myself/ { print $4 }')
  fi
  rcli "$(resolve "$1")" CLUSTER REPLICATE "$target" > /dev/null
  log "shard $2: $1 replicates $home's shard"
}

for host in $(hosts); do wait_for "$host to answer" answers "$host"; done
shards=$(members | awk '$2 == "master"' | wc -l)

anchor=""
for host in $(hosts); do
  if [ "$(known "$host")" -gt 1 ]; then anchor=$host; break; fi
done

if [ -n "$anchor" ]; then
  anchor_ip=$(resolve "$anchor")
  serving=$(rcli "$anchor_ip" CLUSTER NODES | tr -d '\r' | awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8' | wc -l)
  if [ "$serving" -gt "$shards" ]; then
    log "the cluster serves slots from $serving masters but the topology has $shards: refusing to shrink" \
        "(lowering shards is a manual procedure: see the README's Redis operations)"
    exit 1
  fi
  joined=0
  for host in $(hosts); do
    if [ "$(known "$host")" = 1 ]; then
      rcli "$anchor_ip" CLUSTER MEET "$(resolve "$host")" "$REDIS_PORT" > /dev/null
      log "$host is new: met it"
      joined=$((joined + 1))
    fi
  done
  if [ "$joined" = 0 ] && [ "$serving" = "$shards" ]; then
    log "the cluster has every member of the topology: changing nothing"
    wait_healthy
    log "cluster healthy"
    exit 0
  fi
  for host in $(hosts); do wait_for "$host to know all $total members" knows_all "$host"; done
  members | awk '$2 == "replica" { print $1, $3 }' | while read -r shard host; do
    if [ "$(role_of "$(resolve "$host")")" = master ] && [ -z "$(own_slots "$host")" ]; then follow "$host" "$shard"; fi
  done
  if rcli "$anchor_ip" CLUSTER NODES | grep -q -e '->-' -e '-<-'; then
    log "a slot was left half-moved by an earlier run: redis-cli --cluster fix"
    redis-cli --no-auth-warning --cluster fix "$anchor_ip:$REDIS_PORT" --cluster-yes >&2
  fi
  # rebalance counts every master without slots as a target: the new replicas must be seen as replicas first.
  for host in $(members | awk '$2 == "replica" { print $3 }'); do
    wait_for "$anchor to see $host as a replica" seen_as_replica "$host"
  done
  redis-cli --no-auth-warning --cluster rebalance "$anchor_ip:$REDIS_PORT" --cluster-use-empty-masters >&2
  wait_healthy
  log "cluster grown to $shards shards, $total members"
  exit 0
fi

first=$(members | awk '$2 == "master"' | sort -n | head -1 | awk '{ print $3 }')
members | awk '$2 == "master" { print $1, $3 }' | sort -n | while read -r shard host; do
  ip=$(resolve "$host")
  rcli "$ip" CLUSTER SET-CONFIG-EPOCH $((shard + 1)) > /dev/null
done
# Slots a restored master claimed for its keys (every member alone still): nobody else may take them.
claimed=$(for host in $(members | awk '$2 == "master" { print $3 }'); do own_slots "$host"; done)
members | awk '$2 == "master" { print $1, $3 }' | sort -n | while read -r shard host; do
  low=$((shard * 16384 / shards)); high=$(((shard + 1) * 16384 / shards - 1))
  # The gaps of [low, high] not claimed by anyone, as "a b" pairs.
  gaps=$(echo "$claimed" | awk -v lo="$low" -v hi="$high" '
    NF { n = split($1, r, "-"); a = r[1]; b = (n > 1 ? r[2] : r[1]); for (s = a; s <= b; s++) taken[s] = 1 }
    END { start = -1
          for (s = lo; s <= hi + 1; s++) {
            if (s <= hi && !(s in taken)) { if (start < 0) start = s }
            else if (start >= 0) { print start, s - 1; start = -1 } } }')
  echo "$gaps" | while read -r a b; do
    [ -n "$a" ] && rcli "$(resolve "$host")" CLUSTER ADDSLOTSRANGE "$a" "$b" > /dev/null
  done
  log "shard $shard: $host serves slots $low-$high (less any a restored master holds)"
done
for host in $(hosts); do
  [ "$host" = "$first" ] || rcli "$(resolve "$first")" CLUSTER MEET "$(resolve "$host")" "$REDIS_PORT" > /dev/null
done
for host in $(hosts); do wait_for "$host to know all $total members" knows_all "$host"; done
members | awk '$2 == "replica" { print $1, $3 }' | while read -r shard host; do follow "$host" "$shard"; done
wait_healthy
log "cluster formed: $shards shards, $total members"
