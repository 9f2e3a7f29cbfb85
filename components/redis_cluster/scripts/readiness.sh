#!/bin/sh
# Ready: answers PING and sees cluster_state:ok. Env: REDIS_HOST (127.0.0.1), REDIS_PASSWORD, REDIS_PORT.
. "$(dirname "$0")/lib.sh"
me=${REDIS_HOST:-127.0.0.1}
[ "$(rcli "$me" PING 2>/dev/null)" = PONG ] && [ "$(info_field "$me" cluster cluster_state)" = ok ]
