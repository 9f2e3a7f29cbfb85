#!/bin/sh
# Planned stop: a master first hands its slots to an in-sync replica with CLUSTER FAILOVER (which
# waits until the replica has every write), waits until the roles have switched, then shuts down with
# a save. Writes pause for the handover instead of failing for a whole node-timeout.
#
# Env: REDIS_HOST (this member, default 127.0.0.1), REDIS_PASSWORD, REDIS_PORT (6379),
#      PRESTOP_TIMEOUT (seconds to wait for the handover, default 60).
set -u
. "$(dirname "$0")/lib.sh"
me=${REDIS_HOST:-127.0.0.1}
deadline=$(( $(date +%s) + ${PRESTOP_TIMEOUT:-60} ))

if [ "$(rcli "$me" ROLE 2>/dev/null | head -1)" = master ]; then
  myid=$(rcli "$me" CLUSTER MYID)
  target=""
  for address in $(rcli "$me" CLUSTER REPLICAS "$myid" | awk '$8 == "connected" && $3 !~ /fail/ { split($2, a, "@"); print a[1] }'); do
    if [ "$(REDIS_PORT=${address##*:} info_field "${address%:*}" replication master_link_status)" = up ]; then
      target=$address
      break
    fi
  done
  if [ -n "$target" ]; then
    log "handing over to $target"
    REDIS_PORT=${target##*:} rcli "${target%:*}" CLUSTER FAILOVER > /dev/null
    until [ "$(rcli "$me" ROLE 2>/dev/null | head -1)" = slave ]; do
      if [ "$(date +%s)" -ge "$deadline" ]; then log "handover did not finish in time: stopping anyway"; break; fi
      sleep 0.1
    done
  else
    log "no in-sync replica: stopping without a handover"
  fi
fi
rcli "$me" SHUTDOWN SAVE > /dev/null 2>&1 || true
