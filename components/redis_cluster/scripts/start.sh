#!/bin/sh
# Start one Redis Cluster member.
#
# Before exec'ing redis-server it rewrites, in nodes.conf, the address of every known peer from the
# peer's stable DNS name, and its own from POD_IP. After a full restart every pod has a new IP, and
# without this the members keep dialling dead addresses and the cluster never re-forms.
#
# Env: POD_IP (address to announce; required), POD_HOSTNAME (this member's stable DNS name; required),
#      REDIS_PASSWORD (required), REDIS_CONF (default /etc/redis/redis.conf), REDIS_DATA_DIR (/data),
#      REDIS_RUN_DIR (/run/redis: where the runtime config with the password is written, mode 600),
#      REDIS_BIND (default "* -::*"), REDIS_PORT (6379), REDIS_HOSTS_FILE (optional, see lib.sh).
set -eu
. "$(dirname "$0")/lib.sh"
: "${POD_IP:?POD_IP is required}" "${POD_HOSTNAME:?POD_HOSTNAME is required}" "${REDIS_PASSWORD:?REDIS_PASSWORD is required}"
conf=${REDIS_CONF:-/etc/redis/redis.conf}
data=${REDIS_DATA_DIR:-/data}
run=${REDIS_RUN_DIR:-/run/redis}
nodes="$data/nodes.conf"
mkdir -p "$run"
umask 077

if [ -s "$nodes" ]; then
  map="$run/peers.map"
  : > "$map"
  # Field 2 is ip:port@cport,hostname[,...]: resolve each peer's hostname now.
  for host in $(awk '$1 != "vars" && NF > 2 { n = split($2, a, ","); if (n > 1 && a[2] != "") print a[2] }' "$nodes"); do
    ip=$(resolve "$host" || true)
    if [ -n "$ip" ]; then echo "$host $ip" >> "$map"; else log "peer $host does not resolve yet: keeping its old address"; fi
  done
  awk -v me="$POD_IP" -v mapfile="$map" '
    BEGIN { while ((getline line < mapfile) > 0) { split(line, kv, " "); addr[kv[1]] = kv[2] } }
    $1 != "vars" && NF > 2 {
      n = split($2, part, ",")
      colon = index(part[1], ":")
      new = ""
      if ($3 ~ /(^|,)myself(,|$)/) new = me
      else if (n > 1 && (part[2] in addr)) new = addr[part[2]]
      if (new != "") {
        rebuilt = new substr(part[1], colon)
        for (i = 2; i <= n; i++) rebuilt = rebuilt "," part[i]
        $2 = rebuilt
      }
    }
    { print }' "$nodes" > "$nodes.rewrite"
  mv "$nodes.rewrite" "$nodes"
  log "rewrote peer addresses in $nodes"
fi

cat > "$run/redis.conf" <<CONF
include $conf
dir $data
port $REDIS_PORT
bind ${REDIS_BIND:-* -::*}
cluster-announce-ip $POD_IP
cluster-announce-hostname $POD_HOSTNAME
replica-announce-ip $POD_IP
requirepass "$REDIS_PASSWORD"
masterauth "$REDIS_PASSWORD"
CONF
exec redis-server "$run/redis.conf"
