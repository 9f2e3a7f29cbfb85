"""RedisCluster's arguments: plain settings, validated up front, shared with the stack config's redis section."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from .. import names
from ..errors import ArgsModel
from ..images import require_pinned_image
from ..quantity import parse_quantity, positive_quantity

COMPONENT = "redis"
REDIS_UID = 999  # the official redis image's "redis" user
CLIENT_PORT = 6379
BUS_PORT = 16379
SCRIPTS = ("lib.sh", "start.sh", "bootstrap.sh", "balance.sh", "pre-stop.sh", "readiness.sh", "liveness.sh")
# The scripts' own deadlines (seconds); each await Pulumi makes on a Job is longer than its script's.
BOOTSTRAP_TIMEOUT_SECONDS = 900
BALANCE_TIMEOUT_SECONDS = 600
AWAIT_SLACK_SECONDS = 300
# "<name>-bootstrap-<10 hex>" is the longest Job name: a label value, so at most 63 characters.
MAX_NAME_LENGTH = 63 - len("-bootstrap-") - 10
MAX_ZONE_LENGTH = 40
CONFIG_DIR = "/etc/redis"
DATA_DIR = "/data"
RUN_DIR = "/run/redis"
# Chosen from bench/redis_failover.py: see the README's Redis benchmark.
DEFAULT_NODE_TIMEOUT_MS = 3000


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
    metrics_exporter: bool = Field(default=False, description="Add a redis_exporter sidecar on port 9121.")
    exporter_image: str = Field(default="oliver006/redis_exporter:v1.62.0", description="Exporter image, pinned.")

    _check_images = field_validator("image", "exporter_image")(require_pinned_image)
    _check_storage_class = field_validator("storage_class")(lambda v: v if v is None else names.dns_subdomain(v))
    _check_quantities = field_validator("storage_size", "cpu", "memory")(positive_quantity)

    @field_validator("balance_schedule")
    @classmethod
    def _cron(cls, schedule: str | None) -> str | None:
        if schedule is not None and len(schedule.split()) != 5:
            raise ValueError(f"must be a 5-field cron schedule such as '*/10 * * * *' (got {schedule!r})")
        return schedule

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
            if most * 2 > self.shards:
                raise ValueError(
                    f"with {zones} zones one zone would hold {most} of {self.shards} masters, a majority: losing "
                    f"it would leave no quorum to fail over; use more zones or more shards"
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


