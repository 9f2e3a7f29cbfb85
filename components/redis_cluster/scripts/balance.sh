#!/bin/sh
# Put every shard's master back in its home zone: the member TOPOLOGY_FILE names as the shard's master.
# That placement holds one master per zone, so losing any one zone keeps a majority of masters.
#
# A rollout's handovers (pre-stop.sh) and unplanned failovers promote replicas, which live in other
# zones; nothing else moves the masters back. For each misplaced shard, one at a time, this asks the
# home member (an in-sync replica of the current master) to take over with CLUSTER FAILOVER: never
# FORCE or TAKEOVER, so no acknowledged write is dropped. Between shards it waits for cluster_state:ok
# and for the old master's resync as a replica.
#
# It changes nothing, and says why, while the cluster is unhealthy: a member not answering, a node
# flagged fail or pfail, a slot not served, or a replica not in sync. It logs one line per decision.
#
# Env: TOPOLOGY_FILE (default /etc/redis/topology.txt), REDIS_PASSWORD, REDIS_PORT (6379),
#      REDIS_HOSTS_FILE (optional), BALANCE_TIMEOUT (seconds in all, default 600),
#      HANDOVER_TIMEOUT (seconds for one shard's handover, default 60),
#      BALANCE_SETTLE (seconds to wait for a healthy cluster before giving up, default 60).
# Exit: 0 when balanced (or left alone because unhealthy: the schedule retries), 1 when a handover
# did not finish in time.
set -u
. "$(dirname "$0")/lib.sh"
topology=${TOPOLOGY_FILE:-/etc/redis/topology.txt}
started=$(date +%s)
deadline=$(( started + ${BALANCE_TIMEOUT:-600} ))

members() { awk '!/^#/ && NF == 3' "$topology"; }
ip_of() { resolve "$1"; }

# nodes: CLUSTER NODES as "hostname flags master-id node-id" lines, read from the first member that answers.
nodes() {
  for host in $(members | awk '{ print $3 }'); do
    ip=$(ip_of "$host")
    [ -n "$ip" ] || continue
    view=$(rcli "$ip" CLUSTER NODES 2>/dev/null | tr -d '\r')
    if [ -n "$view" ]; then
      echo "$view" | awk '{ n = split($2, a, ","); print (n > 1 ? a[2] : a[1]), $3, $4, $1 }'
      return 0
    fi
  done
  return 1
}

# unhealthy: print why the cluster must be left alone, or nothing when it is healthy.
unhealthy() {
  for host in $(members | awk '{ print $3 }'); do
    ip=$(ip_of "$host")
    if [ -z "$ip" ] || [ "$(rcli "$ip" PING 2>/dev/null)" != PONG ]; then echo "member $host does not answer"; return; fi
  done
  view=$(nodes) || { echo "no member answers CLUSTER NODES"; return; }
  failing=$(echo "$view" | awk '$2 ~ /(^|,)(fail|fail\?)(,|$)/ { print $1 " (" $2 ")"; exit }')
  [ -z "$failing" ] || { echo "node $failing is failing"; return; }
  for host in $(members | awk '{ print $3 }'); do
    ip=$(ip_of "$host")
    [ "$(info_field "$ip" cluster cluster_state)" = ok ] || { echo "$host sees cluster_state $(info_field "$ip" cluster cluster_state)"; return; }
    served=$(info_field "$ip" cluster cluster_slots_ok)
    [ "$served" = 16384 ] || { echo "$host sees $served of 16384 slots served"; return; }
    if [ "$(info_field "$ip" replication role)" = slave ]; then
      link=$(info_field "$ip" replication master_link_status)
      syncing=$(info_field "$ip" replication master_sync_in_progress)
      if [ "$link" != up ] || [ "$syncing" != 0 ]; then echo "replica $host is not in sync (link $link)"; return; fi
    fi
  done
}

settle_until=$(( started + ${BALANCE_SETTLE:-60} ))
why=$(unhealthy)
while [ -n "$why" ] && [ "$(date +%s)" -lt "$settle_until" ]; do
  sleep 2
  why=$(unhealthy)
done
if [ -n "$why" ]; then
  log "cluster unhealthy, changing nothing: $why"
  exit 0
fi

moved=0
for shard in $(members | awk '$2 == "master" { print $1 }' | sort -n); do
  home=$(members | awk -v s="$shard" '$1 == s && $2 == "master" { print $3 }')
  view=$(nodes) || { log "no member answers CLUSTER NODES: stopping"; exit 1; }
  home_line=$(echo "$view" | awk -v h="$home" '$1 == h')
  case "$home_line" in
    *master*) log "shard $shard: master $home is home: nothing to do"; continue ;;
  esac
  master_id=$(echo "$home_line" | awk '{ print $3 }')
  current=$(echo "$view" | awk -v id="$master_id" '$4 == id { print $1 }')
  home_ip=$(ip_of "$home")
  if [ -z "$current" ] || [ "$(info_field "$home_ip" replication master_link_status)" != up ]; then
    log "shard $shard: home $home is not an in-sync replica of a master: leaving the shard as it is"
    continue
  fi
  log "shard $shard: master $current is away from home $home: handing back with CLUSTER FAILOVER"
  # The master learns its replicas through gossip and ignores a failover request from a node it does not
  # list yet; a manual failover that gets no answer times out after 5 s. So ask again until the deadline.
  handover_until=$(( $(date +%s) + ${HANDOVER_TIMEOUT:-60} ))
  until [ "$(role_of "$home_ip")" = master ]; do
    if [ "$(date +%s)" -ge "$handover_until" ] || [ "$(date +%s)" -ge "$deadline" ]; then
      log "shard $shard: $home did not take over in time: stopping"
      exit 1
    fi
    rcli "$home_ip" CLUSTER FAILOVER > /dev/null
    asked=$(date +%s)
    while [ "$(role_of "$home_ip")" != master ] && [ $(( $(date +%s) - asked )) -lt 6 ]; do
      sleep 0.2
    done
  done
  # The old master follows the home member now: wait until it has resynced, and the cluster agrees.
  until [ -z "$(unhealthy)" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then log "shard $shard: cluster not healthy again in time: stopping"; exit 1; fi
    sleep 0.5
  done
  log "shard $shard: $home is master again; $current resynced as its replica"
  moved=$(( moved + 1 ))
done
log "balanced: $moved shard(s) moved back home"
