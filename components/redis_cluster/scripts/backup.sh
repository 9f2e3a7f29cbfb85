#!/bin/sh
# Dump one snapshot per shard into BACKUP_DIR (the first half of a backup; backup_s3.py uploads it).
#
# Each shard's RDB comes from an in-sync replica of its master where one exists (the master keeps
# serving at full speed), else from the master, streamed with `redis-cli --rdb` (the replication
# protocol: the source forks and sends a point-in-time snapshot; no file is left on the member).
# Shards are numbered by their first slot. For each shard it records the master's node ID and slot
# ranges as the cluster saw them when the dump started, the source and the byte size.
#
# It dumps nothing, and says why, unless every slot is served and every member answers.
# Writes BACKUP_DIR/shard-<n>.rdb, BACKUP_DIR/shards.tsv ("shard node-id source slots bytes", slots as
# "a-b,c-d"), and BACKUP_DIR/backup.env (timestamp, Redis version, topology hash) LAST. The SHA-256 is
# taken by backup_s3.py from the very bytes it uploads.
#
# Env: TOPOLOGY_FILE (default /etc/redis/topology.txt), BACKUP_DIR (default /backup), REDIS_PASSWORD,
#      REDIS_PORT (6379), REDIS_HOSTS_FILE (optional).
# Exit: 0 dumped; 1 the cluster is not healthy or a dump failed.
set -eu
. "$(dirname "$0")/lib.sh"
topology=${TOPOLOGY_FILE:-/etc/redis/topology.txt}
out=${BACKUP_DIR:-/backup}
stamp=$(date -u +%Y%m%dT%H%M%SZ)

hosts() { awk '!/^#/ && NF == 3 { print $3 }' "$topology"; }

view=""
for host in $(hosts); do
  ip=$(resolve "$host")
  [ -n "$ip" ] || continue
  if [ "$(info_field "$ip" cluster cluster_state)" = ok ]; then
    view=$(rcli "$ip" CLUSTER NODES | tr -d '\r')
    break
  fi
done
[ -n "$view" ] || { log "no member sees cluster_state:ok: not backing up"; exit 1; }
if echo "$view" | awk '$3 ~ /fail/ { bad = 1 } END { exit !bad }'; then
  log "a member is failing: not backing up"; exit 1
fi

mkdir -p "$out"
rm -f "$out"/shard-*.rdb "$out/shards.tsv" "$out/backup.env"
# Masters with slots, by first slot: "node-id first-slot ranges".
echo "$view" | awk '$3 ~ /master/ && NF > 8 {
    ranges = ""
    for (i = 9; i <= NF; i++) if ($i !~ /^\[/) ranges = ranges (ranges == "" ? "" : ",") $i
    split(ranges, first, "[-,]")
    print $1, first[1] + 0, ranges
  }' | sort -k2,2n > "$out/masters.txt"
# In-sync replicas, as each replica itself reports them (gossip may lag): "master-id ip:port" lines.
: > "$out/replicas.txt"
for host in $(hosts); do
  ip=$(resolve "$host")
  [ -n "$ip" ] || continue
  follows=$(rcli "$ip" CLUSTER NODES 2>/dev/null | tr -d '\r' | awk '$3 ~ /myself/ && $3 ~ /slave/ { print $4 }')
  if [ -n "$follows" ] && [ "$(info_field "$ip" replication master_link_status)" = up ]; then
    echo "$follows $ip:$REDIS_PORT" >> "$out/replicas.txt"
  fi
done
shard=0
while read -r id first ranges; do
  # From an in-sync replica of this master where one exists, else from the master (field 2 is ip:port@bus[,host]).
  source=$(awk -v m="$id" '$1 == m { print $2; exit }' "$out/replicas.txt")
  [ -n "$source" ] || source=$(echo "$view" | awk -v m="$id" '$1 == m { split($2, a, "[@,]"); print a[1] }')
  file="$out/shard-$shard.rdb"
  if ! REDIS_PORT=${source##*:} rcli "${source%:*}" --rdb "$file" > /dev/null 2>"$out/dump.err"; then
    log "shard $shard: dump from $source failed: $(cat "$out/dump.err")"; exit 1
  fi
  bytes=$(wc -c < "$file" | tr -d ' ')
  echo "$shard $id $source $ranges $bytes" >> "$out/shards.tsv"
  log "shard $shard: $bytes bytes from $source (master $id, slots $ranges)"
  shard=$((shard + 1))
done < "$out/masters.txt"
rm -f "$out/masters.txt" "$out/replicas.txt" "$out/dump.err"
version=$(info_field "$(resolve "$(hosts | head -1)")" server redis_version)
topology_hash=$(sha256sum "$topology" | cut -c1-10)
printf 'timestamp=%s\nredis_version=%s\ntopology_hash=%s\nshards=%s\n' "$stamp" "$version" "$topology_hash" "$shard" \
  > "$out/backup.env"
log "dumped $shard shard(s) for backup $stamp"
