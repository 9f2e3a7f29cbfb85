#!/bin/sh
# Ready, honestly, both before and after the cluster is formed:
#  - it answers PING (a member still LOADING its data is not ready);
#  - a member that knows only itself is ready: the bootstrap Job forms (or grows) the cluster only once
#    every member is up, so waiting for the cluster here would deadlock a first install or a scale-out.
#    It may already serve slots: a restored master claims the slots of the keys it loaded;
#  - any other member must see cluster_state:ok, and a replica must have finished syncing with its
#    master (link up, no sync in progress): a replica that never synced cannot take over, so a rollout
#    must not move on to the next member before then.
# Env: REDIS_HOST (127.0.0.1), REDIS_PASSWORD, REDIS_PORT.
. "$(dirname "$0")/lib.sh"
me=${REDIS_HOST:-127.0.0.1}
[ "$(rcli "$me" PING 2>/dev/null)" = PONG ] || exit 1
[ "$(info_field "$me" cluster cluster_known_nodes)" = 1 ] && exit 0
[ "$(info_field "$me" cluster cluster_state)" = ok ] || exit 1
if [ "$(info_field "$me" replication role)" = slave ]; then
  [ "$(info_field "$me" replication master_link_status)" = up ] && [ "$(info_field "$me" replication master_sync_in_progress)" = 0 ]
fi
