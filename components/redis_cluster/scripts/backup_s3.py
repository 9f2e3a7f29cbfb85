"""The S3 half of Redis backups and restores (shipped verbatim in the cluster's ConfigMap).

Runs in an image with Python 3 and boto3; credentials come from the pod's identity (IRSA) through
boto3's usual chain, and AWS_ENDPOINT_URL is honoured by boto3 itself. Three commands:

``upload``
    After backup.sh has dumped the shards into BACKUP_DIR: uploads each ``shard-<n>.rdb`` to
    ``s3://BACKUP_BUCKET/BACKUP_PREFIX/CLUSTER_NAME/<UTC timestamp>/`` (multipart above 8 MiB), then
    ``manifest.json`` LAST: a backup without a manifest is incomplete by definition. Then retention:
    keeps the newest BACKUP_RETENTION complete backups (never fewer than one), and deletes incomplete
    ones older than the newest complete one.
``verify-restore``
    Before a restore (the restore Job, which the members wait for): the manifest exists, its shard
    count matches the topology, every file exists and matches its size and SHA-256, and the target
    cluster is fresh (no member knows another or holds a key). Reads nothing into Redis.
``restore-member``
    Init container of every member while ``restore_from`` is set. A shard's home master whose data
    directory is empty, in a cluster not formed yet, downloads its shard's RDB, checks it again, and
    installs it as the base of a fresh AOF (the member runs with appendonly yes, and Redis ignores a
    dump.rdb when an AOF is on). Replicas, members with data, and members of a formed cluster skip.

Exit codes: 0 done (or nothing to do), 2 a file or the manifest is missing, 3 a size or checksum
mismatch, 4 access denied, 5 bad input or any other error, 6 layout mismatch, 7 target not fresh.
One log line per file and per decision.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

EXIT_MISSING, EXIT_MISMATCH, EXIT_DENIED, EXIT_OTHER, EXIT_LAYOUT, EXIT_NOT_FRESH = 2, 3, 4, 5, 6, 7
MANIFEST = "manifest.json"
PART = 8 * 1024 * 1024  # boto3's default part size: the fastest in bench/redis_backup.py
MAX_PARTS = 9000  # S3 allows 10000 parts per upload: bigger files get bigger parts
STAMP = re.compile(r"^\d{8}T\d{6}Z$")
RESTORE_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)/(\d{8}T\d{6}Z)/?$")
AOF_BASE = "appendonly.aof.1.base.rdb"
AOF_MANIFEST = "appendonly.aof.manifest"


class Refusal(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} backup_s3: {message}", file=sys.stderr, flush=True)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise Refusal(EXIT_OTHER, f"{name} is required")
    return value


def s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def transfer_config(size: int) -> Any:
    from boto3.s3.transfer import TransferConfig

    part = max(PART, -(-size // MAX_PARTS))
    return TransferConfig(multipart_threshold=PART, multipart_chunksize=part, max_concurrency=4)


def s3_error(error: Exception, what: str) -> Refusal:
    """Map a botocore error to an exit code and one clear line."""
    code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
    if code in ("404", "NoSuchKey", "NotFound"):
        return Refusal(EXIT_MISSING, f"{what} is missing")
    if code in ("403", "AccessDenied"):
        return Refusal(EXIT_DENIED, f"access denied to {what}: check the ServiceAccount's role")
    return Refusal(EXIT_OTHER, f"{what}: {error}")


# --- topology and a minimal Redis client (the image has no redis-cli) -------------------------------------
def topology(path: str) -> list[tuple[int, str, str]]:
    """(shard, role, hostname) of every member, from topology.txt."""
    with open(path) as handle:
        return [(int(s), r, h) for s, r, h in (line.split() for line in handle if line.strip()
                                                   and not line.startswith("#"))]


def resolve(host: str) -> str | None:
    hosts_file = os.environ.get("REDIS_HOSTS_FILE")
    if hosts_file:
        with open(hosts_file) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[1] == host:
                    return parts[0]
        return None
    try:
        return socket.gethostbyname(host)
    except OSError:
        return None


def redis_command(address: str, *args: str) -> Any:
    """One command (after AUTH) over RESP; raises OSError when the member does not answer."""
    port = int(os.environ.get("REDIS_PORT", "6379"))
    with socket.create_connection((address, port), timeout=5) as conn:
        stream = conn.makefile("rwb")
        password = os.environ.get("REDIS_PASSWORD", "")
        for command in ((("AUTH", password),) if password else ()) + (args,):
            stream.write(f"*{len(command)}\r\n".encode() + b"".join(
                f"${len(part.encode())}\r\n".encode() + part.encode() + b"\r\n" for part in command))
            stream.flush()
            reply = _read_reply(stream)
        return reply


def _read_reply(stream: Any) -> Any:
    line = stream.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise OSError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode()
    if kind == b"*":
        return [_read_reply(stream) for _ in range(int(rest))]
    raise OSError(f"unexpected reply {line!r}")


def formed_or_holding(members: list[tuple[int, str, str]], skip: str | None = None) -> str | None:
    """Why the target cluster is not fresh (a member knows another, or holds keys), or None."""
    for _, _, host in members:
        address = resolve(host)
        if host == skip or not address:
            continue
        try:
            info = dict(line.split(":", 1) for line in redis_command(address, "CLUSTER", "INFO").split("\r\n")
                        if ":" in line)
            keys = redis_command(address, "DBSIZE")
        except OSError:
            continue  # not started yet: a fresh member
        if int(info.get("cluster_known_nodes", "1")) > 1:
            return f"{host} already belongs to a formed cluster"
        if keys:
            return f"{host} holds {keys} keys"
    return None


# --- upload -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    shard: int
    node_id: str
    source: str
    slots: list[str]
    bytes: int

    @property
    def file(self) -> str:
        return f"shard-{self.shard}.rdb"


def read_dump(folder: str) -> tuple[dict[str, str], list[Shard]]:
    env_file = os.path.join(folder, "backup.env")
    if not os.path.exists(env_file):
        raise Refusal(EXIT_MISSING, f"{env_file} is missing: backup.sh did not finish")
    with open(env_file) as handle:
        meta = dict(line.rstrip("\n").split("=", 1) for line in handle if "=" in line)
    shards = []
    with open(os.path.join(folder, "shards.tsv")) as handle:
        for line in handle:
            shard, node_id, source, slots, size = line.split()
            shards.append(Shard(int(shard), node_id, source, slots.split(","), int(size)))
    if len(shards) != int(meta["shards"]):
        raise Refusal(EXIT_MISSING, f"backup.env lists {meta['shards']} shards but shards.tsv has {len(shards)}")
    return meta, shards


class HashingReader:
    """A file read once, in order, by the upload: its SHA-256 is of exactly the bytes S3 received."""

    def __init__(self, path: str) -> None:
        self.handle = open(path, "rb")
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, amount: int = -1) -> bytes:
        chunk = self.handle.read(amount)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk

    def close(self) -> None:
        self.handle.close()


def upload_shard(s3: Any, bucket: str, where: str, folder: str, shard: Shard) -> str:
    """Upload one shard (multipart above PART), returning its SHA-256."""
    reader = HashingReader(os.path.join(folder, shard.file))
    try:
        s3.upload_fileobj(reader, bucket, f"{where}/{shard.file}", Config=transfer_config(shard.bytes))
    except Exception as error:  # boto3 wraps ClientError in S3UploadFailedError
        raise s3_error(getattr(error, "__cause__", None) or error, f"s3://{bucket}/{where}/{shard.file}") from None
    finally:
        reader.close()
    if reader.size != shard.bytes:
        raise Refusal(EXIT_MISMATCH, f"{shard.file}: uploaded {reader.size} bytes, backup.sh dumped {shard.bytes}")
    log(f"uploaded {shard.file}: {shard.bytes} bytes, sha256 {reader.digest.hexdigest()}")
    return reader.digest.hexdigest()


def manifest_of(cluster: str, meta: dict[str, str], shards: list[Shard], digests: dict[int, str]) -> dict[str, Any]:
    return {
        "format": 1,
        "cluster": cluster,
        "timestamp": meta["timestamp"],
        "redis_version": meta["redis_version"],
        "topology_hash": meta["topology_hash"],
        "shards": [{"shard": s.shard, "file": s.file, "node_id": s.node_id, "source": s.source, "slots": s.slots,
                    "bytes": s.bytes, "sha256": digests[s.shard]} for s in shards],
    }


def upload() -> None:
    folder, bucket = env("BACKUP_DIR", "/backup"), env("BACKUP_BUCKET")
    cluster, retention = env("CLUSTER_NAME"), int(env("BACKUP_RETENTION", "7"))
    base = "/".join(p for p in (os.environ.get("BACKUP_PREFIX", "").strip("/"), cluster) if p)
    meta, shards = read_dump(folder)
    if not STAMP.match(meta["timestamp"]):
        raise Refusal(EXIT_OTHER, f"bad timestamp {meta['timestamp']!r} in backup.env")
    s3 = s3_client()
    where = f"{base}/{meta['timestamp']}"
    # Shards upload side by side (one connection each, plus multipart within a shard); any failure stops
    # the backup before its manifest exists, so it stays incomplete.
    with ThreadPoolExecutor(max_workers=min(4, len(shards)) or 1) as pool:
        digests = dict(zip((s.shard for s in shards),
                           pool.map(lambda shard: upload_shard(s3, bucket, where, folder, shard), shards)))
    body = json.dumps(manifest_of(cluster, meta, shards, digests), indent=2, sort_keys=True).encode()
    s3.put_object(Bucket=bucket, Key=f"{where}/{MANIFEST}", Body=body, ContentType="application/json")
    log(f"backup complete: s3://{bucket}/{where}/{MANIFEST}")
    apply_retention(s3, bucket, base, retention)


def backups(s3: Any, bucket: str, base: str) -> dict[str, bool]:
    """Every backup folder under ``base``: timestamp -> complete (has a manifest)."""
    found: dict[str, bool] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{base}/"):
        for item in page.get("Contents", []):
            stamp, _, name = item["Key"][len(base) + 1:].partition("/")
            if STAMP.match(stamp):
                found[stamp] = found.get(stamp, False) or name == MANIFEST
    return found


def apply_retention(s3: Any, bucket: str, base: str, keep: int) -> None:
    found = backups(s3, bucket, base)
    complete = sorted((stamp for stamp, done in found.items() if done), reverse=True)
    keep = max(1, keep)  # never the only complete backup
    doomed = complete[keep:]
    if complete:
        doomed += [stamp for stamp, done in found.items() if not done and stamp < complete[0]]
    for stamp in sorted(doomed):
        keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{base}/{stamp}/") for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
        log(f"retention: deleted {'complete' if found[stamp] else 'incomplete'} backup {stamp}")
    log(f"retention: {min(len(complete), keep)} complete backup(s) kept")


# --- restore ------------------------------------------------------------------------------------------
def restore_location() -> tuple[str, str]:
    uri = env("RESTORE_FROM")
    match = RESTORE_URI.match(uri)
    if not match:
        raise Refusal(EXIT_OTHER, f"RESTORE_FROM must be s3://bucket/<prefix>/<cluster>/<YYYYMMDDTHHMMSSZ> (got {uri!r})")
    return match[1], f"{match[2]}/{match[3]}"


def read_manifest(s3: Any, bucket: str, where: str) -> dict[str, Any]:
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{where}/{MANIFEST}")["Body"].read()
    except Exception as error:
        refusal = s3_error(error, f"s3://{bucket}/{where}/{MANIFEST}")
        if refusal.code == EXIT_MISSING:
            refusal = Refusal(EXIT_MISSING, f"{refusal}: the backup is incomplete, refusing to restore it")
        raise refusal from None
    manifest = json.loads(body)
    files = [entry["file"] for entry in manifest["shards"]]
    if sorted(entry["shard"] for entry in manifest["shards"]) != list(range(len(files))):
        raise Refusal(EXIT_OTHER, "the manifest's shards are not numbered 0..n-1")
    return manifest


def check_layout(manifest: dict[str, Any], members: list[tuple[int, str, str]]) -> None:
    masters = sum(1 for _, role, _ in members if role == "master")
    if masters != len(manifest["shards"]):
        raise Refusal(EXIT_LAYOUT, f"the backup has {len(manifest['shards'])} shards but this cluster has "
                                   f"{masters}: restore into a cluster with the same shard count")


def fetch_verified(s3: Any, bucket: str, key: str, entry: dict[str, Any], into: Any | None) -> None:
    """Stream one object through SHA-256 (into a file, or nowhere); refuse on a size or checksum mismatch."""
    digest, size = hashlib.sha256(), 0
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(8 * 1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
            if into is not None:
                into.write(chunk)
    except Refusal:
        raise
    except Exception as error:
        raise s3_error(error, f"s3://{bucket}/{key}") from None
    if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:
        raise Refusal(EXIT_MISMATCH, f"s3://{bucket}/{key}: {size} bytes, sha256 {digest.hexdigest()}; the manifest "
                                     f"says {entry['bytes']} bytes, sha256 {entry['sha256']}: refusing to restore")


def verify_restore() -> None:
    bucket, where = restore_location()
    members = topology(env("TOPOLOGY_FILE", "/etc/redis/topology.txt"))
    s3 = s3_client()
    manifest = read_manifest(s3, bucket, where)
    check_layout(manifest, members)

    def verify(entry: dict[str, Any]) -> None:
        fetch_verified(s3, bucket, f"{where}/{entry['file']}", entry, None)
        log(f"verified {entry['file']}: {entry['bytes']} bytes, slots {','.join(entry['slots'])}")

    with ThreadPoolExecutor(max_workers=min(4, len(manifest["shards"])) or 1) as pool:
        list(pool.map(verify, manifest["shards"]))  # re-raises the first refusal
    if why := formed_or_holding(members):
        raise Refusal(EXIT_NOT_FRESH, f"the target cluster is not fresh ({why}): restore only into a new cluster "
                                      f"(see the README's restore section)")
    log(f"backup s3://{bucket}/{where} verified: {len(manifest['shards'])} shards; the members may load it")


def restore_member() -> None:
    data, me = env("REDIS_DATA_DIR", "/data"), env("POD_HOSTNAME")
    members = topology(env("TOPOLOGY_FILE", "/etc/redis/topology.txt"))
    mine = [(shard, role) for shard, role, host in members if host == me]
    if not mine:
        raise Refusal(EXIT_LAYOUT, f"{me} is not in the topology")
    shard, role = mine[0]
    if role != "master":
        log(f"{me} is a replica: it will sync from its master, nothing to restore")
        return
    if os.path.exists(os.path.join(data, "nodes.conf")) or os.path.exists(os.path.join(data, "appendonlydir")):
        log(f"{data} already holds a member's data: not restoring over it")
        return
    if why := formed_or_holding(members, skip=me):
        log(f"the cluster is already formed ({why}): not restoring into a new member")
        return
    bucket, where = restore_location()
    s3 = s3_client()
    manifest = read_manifest(s3, bucket, where)
    check_layout(manifest, members)
    entry = next(e for e in manifest["shards"] if e["shard"] == shard)
    folder = os.path.join(data, "appendonlydir")
    staging = os.path.join(data, "restore.partial")
    os.makedirs(staging, exist_ok=True)
    try:
        with open(os.path.join(staging, AOF_BASE), "wb") as handle:
            fetch_verified(s3, bucket, f"{where}/{entry['file']}", entry, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(staging)  # nothing half-written is left for Redis (or a retry) to trip over
        raise
    # Redis 7's multi-part AOF: a manifest naming one base file (an RDB, since aof-use-rdb-preamble) and no
    # increments; the member loads it at start-up and appends to a new increment from there.
    with open(os.path.join(staging, AOF_MANIFEST), "w") as handle:
        handle.write(f"file {AOF_BASE} seq 1 type b\n")
    os.rename(staging, folder)  # atomic: a member never starts from half a restore
    log(f"shard {shard}: installed {entry['file']} ({entry['bytes']} bytes, slots {','.join(entry['slots'])}) "
        f"as the AOF base of {me}")


COMMANDS = {"upload": upload, "verify-restore": verify_restore, "restore-member": restore_member}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        log(f"usage: backup_s3.py {'|'.join(COMMANDS)}")
        return EXIT_OTHER
    try:
        COMMANDS[argv[1]]()
    except Refusal as refusal:
        log(f"refused: {refusal}")
        return refusal.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
