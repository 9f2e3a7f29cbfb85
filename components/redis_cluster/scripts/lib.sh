# Helpers shared by the Redis scripts (sourced, not run).
# Env: REDIS_PORT (default 6379); REDIS_PASSWORD; REDIS_HOSTS_FILE (optional: "ip name" lines that
# stand in for DNS, used by the test suite; in Kubernetes names resolve through cluster DNS).
REDIS_PORT="${REDIS_PORT:-6379}"
if [ -n "${REDIS_PASSWORD:-}" ]; then
  export REDISCLI_AUTH="$REDIS_PASSWORD"   # redis-cli reads it: the password never appears in argv
fi

log() { echo "$(date -u +%H:%M:%S) $(basename "$0"): $*" >&2; }

# resolve NAME: print its address, or nothing when it does not resolve (yet).
resolve() {
  if [ -n "${REDIS_HOSTS_FILE:-}" ]; then
    awk -v name="$1" '$2 == name { print $1; exit }' "$REDIS_HOSTS_FILE"
  else
    getent hosts "$1" | awk '{ print $1; exit }'
  fi
}

# rcli HOST ARGS...: redis-cli against HOST:REDIS_PORT, raw replies.
rcli() {
  _host=$1; shift
  redis-cli --no-auth-warning --raw -h "$_host" -p "$REDIS_PORT" "$@"
}

# role_of HOST: "master" or "slave" (first line of ROLE), or nothing when HOST does not answer.
role_of() { rcli "$1" ROLE 2>/dev/null | head -1; }

# info_field HOST SECTION FIELD: one field of INFO or CLUSTER INFO (SECTION "cluster" uses CLUSTER INFO).
info_field() {
  if [ "$2" = cluster ]; then
    rcli "$1" CLUSTER INFO 2>/dev/null | tr -d '\r' | awk -F: -v f="$3" '$1 == f { print $2 }'
  else
    rcli "$1" INFO "$2" 2>/dev/null | tr -d '\r' | awk -F: -v f="$3" '$1 == f { print $2 }'
  fi
}
