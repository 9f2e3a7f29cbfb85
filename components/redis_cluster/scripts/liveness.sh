#!/bin/sh
# Alive: answers PING, or is still LOADING its dataset (a big AOF can take minutes; killing it would
# only start the load again). Env: REDIS_HOST (127.0.0.1), REDIS_PASSWORD, REDIS_PORT.
. "$(dirname "$0")/lib.sh"
reply=$(rcli "${REDIS_HOST:-127.0.0.1}" PING 2>&1)
case "$reply" in
  PONG|*LOADING*) exit 0 ;;
  *) echo "liveness: $reply" >&2; exit 1 ;;
esac
