"""RedisCluster's arguments: plain settings, validated up front, shared with the stack config's redis section."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import names
from ..errors import ArgsModel
from ..images import PYTHON_BOTO3_IMAGE, require_pinned_image
from ..quantity import parse_quantity, positive_quantity

COMPONENT = "redis"
REDIS_UID = 999  # the official redis image's "redis" user
CLIENT_PORT = 6379
BUS_PORT = 16379
SCRIPTS = ("lib.sh", "start.sh", "bootstrap.sh", "balance.sh", "pre-stop.sh", "readiness.sh", "liveness.sh",
           "backup.sh", "backup_s3.py")
# The scripts' own deadlines (seconds); each await Pulumi makes on a Job is longer than its script's.
BOOTSTRAP_TIMEOUT_SECONDS = 900
BALANCE_TIMEOUT_SECONDS = 600
BACKUP_TIMEOUT_SECONDS = 3600
RESTORE_TIMEOUT_SECONDS = 3600
AWAIT_SLACK_SECONDS = 300
# "<name>-bootstrap-<10 hex>" is the longest Job name: a label value, so at most 63 characters.
MAX_NAME_LENGTH = 63 - len("-bootstrap-") - 10
MAX_ZONE_LENGTH = 40
CONFIG_DIR = "/etc/redis"
DATA_DIR = "/data"
RUN_DIR = "/run/redis"
BACKUP_DIR = "/backup"
BACKUP_FOLDER = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(?:[^\s/]+/)*[^\s/]+/\d{8}T\d{6}Z$")
# Chosen from bench/redis_failover.py: see the README's Redis benchmark.
DEFAULT_NODE_TIMEOUT_MS = 3000


class BackupSpec(BaseModel):
    """Scheduled backups of every shard to S3 (see backup.sh and backup_s3.py)."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(description="S3 bucket the backups go to.")
    prefix: str = Field(default="redis-backups", description="Key prefix; each backup lands in "
                        "<prefix>/<cluster>/<UTC timestamp>/ as shard-<n>.rdb files and a manifest.json written last.")
    schedule: str = Field(default="0 */6 * * *", description="Cron schedule (UTC) of the backup CronJob.")
    retention: int = Field(default=7, ge=1, le=1000, description="Complete backups to keep (the newest); the only "
                                                                 "complete one is never deleted.")
    image: str = Field(default=PYTHON_BOTO3_IMAGE, description="Image with Python 3 and boto3 for the S3 side, pinned.")

    _check_image = field_validator("image")(require_pinned_image)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, bucket: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ValueError(f"must be an S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens (got {bucket!r})")
        return bucket

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*", prefix):
            raise ValueError(f"must be an S3 key prefix without leading or trailing '/' or spaces (got {prefix!r})")
        return prefix

    _cron = field_validator("schedule")(lambda v: _five_field_cron(v))


def _five_field_cron(schedule: str) -> str:
    if len(schedule.split()) != 5:
        raise ValueError(f"must be a 5-field cron schedule such as '*/10 * * * *' (got {schedule!r})")
    return schedule


class RedisClusterSpec(ArgsModel):
    """Plain settings of a Redis Cluster (shared by the stack config and the component args)."""

    model_config = ConfigDict(extra="forbid")

    shards: int = Field(default=3, ge=3, le=100, description="Masters; at least 3 so a majority survives.")
    replicas_per_shard: int = Field(default=1, ge=0, le=5, description="Replicas of each master.")
    zones: list[str] = Field(
        default_factory=list, description="Zones to spread over; needs >= replicas_per_shard + 1. Empty: by node."
    )
    storage_size: str = Field(default="20Gi", description="PVC size of each member.")
    storage_class: str | None = Field(
        default=None, description="StorageClass of the PVCs; the cluster's default class if null (on AWS pools the "
                                  "stack brings one: see create_storage_class).")
    image: str = Field(default="redis:7.2.5", description="Redis image, pinned.")
    node_timeout_ms: int = Field(
        default=DEFAULT_NODE_TIMEOUT_MS, ge=500, le=60000, description="cluster-node-timeout: how long a member may be silent before failover; "
                    "3000 from the benchmark (https://redis.io/docs/latest/operate/oss_and_stack/management/scaling/)."
    )
    require_full_coverage: bool = Field(
        default=False, description="Stop all writes when any slot is uncovered (Redis default: true); off "
                    "keeps the other shards writable (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/)."
    )
    allow_reads_when_down: bool = Field(default=False, description="Serve reads while the cluster is down.")
    min_replicas_to_write: int = Field(default=0, ge=0, le=5, description="Refuse writes with fewer in-sync replicas.")
    cpu: str = Field(default="500m", description="CPU request and limit of each member.")
    memory: str = Field(default="2Gi", description="Memory request and limit of each member.")
    maxmemory_percent: int = Field(default=75, ge=10, le=90, description="maxmemory as % of the memory limit.")
    maxmemory_policy: Literal["noeviction", "allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu"] = Field(
        default="noeviction", description="What Redis does at maxmemory."
    )
    handover_timeout_seconds: int = Field(
        default=60, ge=5, le=600, description="pre-stop's wait for a master handover; grace period adds 30 s."
    )
    member_ready_timeout_seconds: int = Field(
        default=600, ge=60, le=7200,
        description="Longest time one member may take to restart, load its data and finish its first sync. A "
                    "rollout restarts members one at a time, so Pulumi awaits each StatefulSet for its members x "
                    "(this + the grace period).")
    balance_schedule: str | None = Field(
        default="*/10 * * * *",
        description="Cron schedule (UTC) of the balance CronJob that moves masters back to one per zone after "
                    "unplanned failovers; null turns it off (a balance Job still runs after every rollout).")
    backup: BackupSpec | None = Field(default=None, description="Scheduled S3 backups; null: none.")
    restore_from: str | None = Field(
        default=None, description="s3://<bucket>/<prefix>/<cluster>/<timestamp> of a complete backup to load into a "
                                  "NEW cluster with the same shard count: a restore Job verifies it before any member "
                                  "starts, and each home master loads its shard. Ignored by members that hold data.")
    service_account_annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the ServiceAccount the backup and restore pods use, e.g. "
                                          "eks.amazonaws.com/role-arn; on eks pools the stack makes a role for the "
                                          "backup prefix (and restore_from) when none is given.")
    metrics_exporter: bool = Field(default=False, description="Add a redis_exporter sidecar on port 9121.")
    exporter_image: str = Field(default="oliver006/redis_exporter:v1.62.0", description="Exporter image, pinned.")

    _check_images = field_validator("image", "exporter_image")(require_pinned_image)
    _check_annotations = field_validator("service_account_annotations")(names.annotation_keys)
    _check_storage_class = field_validator("storage_class")(lambda v: v if v is None else names.dns_subdomain(v))
    _check_quantities = field_validator("storage_size", "cpu", "memory")(positive_quantity)

    _cron = field_validator("balance_schedule")(lambda v: v if v is None else _five_field_cron(v))

    @field_validator("restore_from")
    @classmethod
    def _backup_folder(cls, uri: str | None) -> str | None:
        if uri is not None and not BACKUP_FOLDER.match(uri):
            raise ValueError(f"must name one backup: s3://<bucket>/<prefix>/<cluster>/<YYYYMMDDTHHMMSSZ> (got {uri!r})")
        return uri

    @field_validator("zones")
    @classmethod
    def _distinct_zones(cls, zones: list[str]) -> list[str]:
        for zone in zones:  # part of a StatefulSet's name (see name_problems)
            names.dns_label(zone, MAX_ZONE_LENGTH)
        if len(set(zones)) != len(zones):
            raise ValueError(f"zones must be distinct (got {zones})")
        return zones

    @model_validator(mode="after")
    def _spreadable(self) -> "RedisClusterSpec":
        members = self.replicas_per_shard + 1
        zones = len(self.zones)
        if zones and zones < members:
            raise ValueError(
                f"replicas_per_shard {self.replicas_per_shard} needs at least {members} zones so that no two "
                f"members of a shard share a zone (got {zones}); add zones or list none to spread by node"
            )
        if zones:
            most = max(sum(1 for shard in range(self.shards) if shard % zones == z) for z in range(zones))
            # A failover needs the votes of a majority of ALL masters: losing a zone must leave more than half.
            if most * 2 >= self.shards:
                raise ValueError(
                    f"with {zones} zones one zone would hold {most} of {self.shards} masters: losing it would leave "
                    f"{self.shards - most}, not a majority, so no failover could win a vote; use more zones or "
                    f"another shard count"
                )
        if self.min_replicas_to_write > self.replicas_per_shard:
            raise ValueError(
                f"min_replicas_to_write ({self.min_replicas_to_write}) exceeds replicas_per_shard "
                f"({self.replicas_per_shard}): every write would be refused"
            )
        return self

    def maxmemory_bytes(self) -> int:
        return int(parse_quantity(self.memory) * Decimal(self.maxmemory_percent) / 100)

    def grace_period_seconds(self) -> int:
        return self.handover_timeout_seconds + 30

    def statefulset_await_seconds(self, members: int) -> int:
        """How long Pulumi waits for one StatefulSet's rollout: one member after another, each stopping
        (grace period) and coming back ready (load and first sync), plus scheduling slack."""
        return members * (self.grace_period_seconds() + self.member_ready_timeout_seconds) + AWAIT_SLACK_SECONDS


class RedisClusterArgs(RedisClusterSpec):
    """Args of ``RedisCluster``: the spec plus its namespace."""

    namespace: str = Field(default="default", description="Namespace of every object.")

    _check_namespace = field_validator("namespace")(names.dns_label)


def name_problems(name: str, zones: list[str]) -> list[str]:
    """Why ``name`` cannot name a cluster over ``zones``: the longest names we derive from it must fit.

    ``<name>-bootstrap-<hash>`` and ``<name>-balance-<hash>`` are Job names (a label on their pods, at
    most 63), ``<name>-balance`` a CronJob (at most 52), ``<name>-<zone>`` a StatefulSet (its revision
    label, at most 52), and the pods' hostnames ``<name>-<zone>-<ordinal>`` DNS labels.
    """
    problems = []
    try:
        names.dns_1035_label(name, MAX_NAME_LENGTH)
    except ValueError as error:
        problems.append(str(error))
    longest_zone = max((len(zone) for zone in zones), default=0)
    if zones and len(name) + 1 + longest_zone > names.STATEFULSET_NAME_MAX:
        problems.append(f"{name!r} plus its longest zone makes a StatefulSet name of {len(name) + 1 + longest_zone} "
                        f"characters; at most {names.STATEFULSET_NAME_MAX} fit its pods' revision label")
    return problems


