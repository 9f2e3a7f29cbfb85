#!/bin/sh
# Planned stop: a master first hands its slots to an in-sync replica with CLUSTER FAILOVER (which
# waits until the replica has every write), waits until the roles have switched, then shuts down.
# Writes pause for the handover instead of failing for a whole node-timeout.
#
# SHUTDOWN NOSAVE, not SAVE: with appendonly yes the restart loads the AOF (flushed and fsynced by any
# SHUTDOWN) and ignores dump.rdb, so a final RDB dump only lengthens the stop (a blocking save of the
# whole dataset) and risks the grace period's SIGKILL, which would cost the last second of the AOF.
#
# Env: REDIS_HOST (this member, default 127.0.0.1), REDIS_PASSWORD, REDIS_PORT (6379),
#      PRESTOP_TIMEOUT (seconds to wait for the handover, default 60).
set -u
. "$(dirname "$0")/lib.sh"
me=${REDIS_HOST:-127.0.0.1}
deadline=$(( $(date +%s) + ${PRESTOP_TIMEOUT:-60} ))

# An in-sync replica of this master (ip:port), or nothing.
in_sync_replica() {
  for address in $(rcli "$me" CLUSTER REPLICAS "$myid" | awk '$8 == "connected" && $3 !~ /fail/ { split($2, a, "@"); print a[1] }'); do
    if [ "$(REDIS_PORT=${address##*:} info_field "${address%:*}" replication master_link_status)" = up ]; then
      echo "$address"
      return
    fi
  done
}

if [ "$(role_of "$me")" = master ]; then
  myid=$(rcli "$me" CLUSTER MYID)
  # The master learns a replica's role through gossip, so a replica that just (re)attached may not be
  # listed yet: keep looking for a while (a third of the budget) before stopping without a handover.
  # Only wait when a replica is attached at all (connected_slaves updates at once, unlike gossip).
  look_until=$(date +%s)
  if [ "$(info_field "$me" replication connected_slaves)" -gt 0 ] 2>/dev/null; then
    look_until=$(( look_until + ${PRESTOP_TIMEOUT:-60} / 3 ))
  fi
  target=$(in_sync_replica)
  while [ -z "$target" ] && [ "$(date +%s)" -lt "$look_until" ]; do
    sleep 0.2
    target=$(in_sync_replica)
  done
  if [ -n "$target" ]; then
    log "handing over to $target"
    REDIS_PORT=${target##*:} rcli "${target%:*}" CLUSTER FAILOVER > /dev/null
    until [ "$(role_of "$me")" = slave ]; do
      if [ "$(date +%s)" -ge "$deadline" ]; then log "handover did not finish in time: stopping anyway"; break; fi
      sleep 0.1
    done
  else
    log "no in-sync replica: stopping without a handover"
  fi
fi
rcli "$me" SHUTDOWN NOSAVE > /dev/null 2>&1 || true
