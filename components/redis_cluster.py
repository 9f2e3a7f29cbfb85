"""RedisCluster: a zone-aware Redis Cluster that survives failover, full restarts and zone loss.

Layout: one StatefulSet per zone, pinned there by node affinity (EBS volumes are zonal anyway).
Shard i's master lives in zone i mod Z and its replica j in zone (i + j) mod Z, so no two members
of a shard share a zone and no zone holds a majority of the masters. The pairing is written to
``topology.txt`` in the ConfigMap, and ``bootstrap.sh`` makes each replica follow its own shard's
master, so the layout holds from the first boot. Without zones, one StatefulSet with required
hostname anti-affinity keeps every member on its own node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources as package_files
from string import Template
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .connection import RedisConnection
from .images import require_pinned_image
from .labels import selector_labels, standard_labels
from .options import inherited_dependencies
from .quantity import parse_quantity, positive_quantity
from .scheduling import HOSTNAME, ZONE, Placement, separate
from .security import restricted_container_security_context, restricted_pod_security_context

COMPONENT = "redis"
REDIS_UID = 999  # the official redis image's "redis" user
CLIENT_PORT = 6379
BUS_PORT = 16379
SCRIPTS = ("lib.sh", "start.sh", "bootstrap.sh", "pre-stop.sh", "readiness.sh", "liveness.sh")
CONFIG_DIR = "/etc/redis"
DATA_DIR = "/data"
RUN_DIR = "/run/redis"
# Chosen from bench/redis_failover.py: see the README's Redis benchmark.
DEFAULT_NODE_TIMEOUT_MS = 3000


class RedisClusterSpec(BaseModel):
    """Plain settings of a Redis Cluster (shared by the stack config and the component args)."""

    model_config = ConfigDict(extra="forbid")

    shards: int = Field(default=3, ge=3, le=100, description="Masters; at least 3 so a majority survives.")
    replicas_per_shard: int = Field(default=1, ge=0, le=5, description="Replicas of each master.")
    zones: list[str] = Field(
        default_factory=list, description="Zones to spread over; needs >= replicas_per_shard + 1. Empty: by node."
    )
    storage_size: str = Field(default="20Gi", description="PVC size of each member.")
    storage_class: str | None = Field(default=None, description="StorageClass of the PVCs; cluster default if null.")
    image: str = Field(default="redis:7.2.5", description="Redis image, pinned.")
    node_timeout_ms: int = Field(
        default=DEFAULT_NODE_TIMEOUT_MS, ge=500, le=60000, description="cluster-node-timeout (failure detection)."
    )
    require_full_coverage: bool = Field(
        default=False, description="Stop all writes when any slot is uncovered (Redis default: true)."
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
    metrics_exporter: bool = Field(default=False, description="Add a redis_exporter sidecar on port 9121.")
    exporter_image: str = Field(default="oliver006/redis_exporter:v1.62.0", description="Exporter image, pinned.")

    _check_images = field_validator("image", "exporter_image")(require_pinned_image)
    _check_quantities = field_validator("storage_size", "cpu", "memory")(positive_quantity)

    @field_validator("zones")
    @classmethod
    def _distinct_zones(cls, zones: list[str]) -> list[str]:
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


class RedisClusterArgs(RedisClusterSpec):
    """Args of ``RedisCluster``: the spec plus its namespace."""

    namespace: str = Field(default="default", description="Namespace of every object.")


@dataclass(frozen=True)
class Member:
    """One cluster member: which shard and role, and where it lives."""

    shard: int
    role: Literal["master", "replica"]
    group: str  # StatefulSet name
    zone: str | None
    ordinal: int

    @property
    def pod(self) -> str:
        return f"{self.group}-{self.ordinal}"


def plan_members(name: str, spec: RedisClusterSpec) -> list[Member]:
    """Place every member: masters round-robin over zones, replica j of shard i in zone (i + j) mod Z."""
    wanted = [(shard, "master" if j == 0 else "replica", j) for shard in range(spec.shards)
              for j in range(spec.replicas_per_shard + 1)]
    counts: dict[str, int] = {}
    members = []
    for shard, role, j in wanted:
        zone = spec.zones[(shard + j) % len(spec.zones)] if spec.zones else None
        group = f"{name}-{zone}" if zone else name
        ordinal = counts.get(group, 0)
        counts[group] = ordinal + 1
        members.append(Member(shard=shard, role=role, group=group, zone=zone, ordinal=ordinal))  # type: ignore[arg-type]
    return members


def headless_service_name(name: str) -> str:
    return f"{name}-headless"


def member_host(name: str, namespace: str, member: Member) -> str:
    """A member's stable DNS name (through the headless Service)."""
    return f"{member.pod}.{headless_service_name(name)}.{namespace}.svc.cluster.local"


def topology_text(name: str, namespace: str, members: list[Member]) -> str:
    lines = ["# shard role hostname (read by bootstrap.sh)"]
    lines += [f"{m.shard} {m.role} {member_host(name, namespace, m)}" for m in members]
    return "\n".join(lines) + "\n"


def redis_conf(spec: RedisClusterSpec) -> str:
    """redis.conf from the shipped template; no secrets and no per-pod values."""
    template = Template(package_files.files(__package__).joinpath("redis/redis.conf.template").read_text())
    return template.substitute(
        node_timeout_ms=spec.node_timeout_ms,
        require_full_coverage="yes" if spec.require_full_coverage else "no",
        allow_reads_when_down="yes" if spec.allow_reads_when_down else "no",
        min_replicas_to_write=spec.min_replicas_to_write,
        maxmemory=spec.maxmemory_bytes(),
        maxmemory_policy=spec.maxmemory_policy,
    )


def config_files(name: str, spec: RedisClusterArgs, members: list[Member]) -> dict[str, str]:
    """The ConfigMap's data: redis.conf, the scripts (verbatim) and the topology."""
    files = {"redis.conf": redis_conf(spec), "topology.txt": topology_text(name, spec.namespace, members)}
    for script in SCRIPTS:
        files[script] = package_files.files(__package__).joinpath(f"redis/{script}").read_text()
    return files


def _script_probe(script: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {"exec": {"command": ["sh", f"{CONFIG_DIR}/{script}"]}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures, "successThreshold": 1}


def _password_env(secret_name: str) -> dict[str, Any]:
    return {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "password"}}}


def statefulset_spec(
    name: str, spec: RedisClusterArgs, group: str, zone: str | None, replicas: int, secret_name: str
) -> dict[str, Any]:
    """One StatefulSet: the members of one zone (or all members, without zones)."""
    selector = selector_labels(name, name)
    group_selector = {**selector, "ha-ai-stack/redis-group": group}
    headless = headless_service_name(name)
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_HOSTNAME", "value": f"$(POD_NAME).{headless}.{spec.namespace}.svc.cluster.local"},
        _password_env(secret_name),
        {"name": "REDIS_CONF", "value": f"{CONFIG_DIR}/redis.conf"},
        {"name": "REDIS_DATA_DIR", "value": DATA_DIR},
        {"name": "REDIS_RUN_DIR", "value": RUN_DIR},
        {"name": "PRESTOP_TIMEOUT", "value": str(spec.handover_timeout_seconds)},
    ]
    amounts = {"cpu": spec.cpu, "memory": spec.memory}
    redis: dict[str, Any] = {
        "name": "redis",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", f"{CONFIG_DIR}/start.sh"],
        "env": env,
        "ports": [{"name": "redis", "containerPort": CLIENT_PORT, "protocol": "TCP"},
                  {"name": "cluster-bus", "containerPort": BUS_PORT, "protocol": "TCP"}],
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "securityContext": restricted_container_security_context(),
        "startupProbe": _script_probe("liveness.sh", 5, 120),
        "readinessProbe": _script_probe("readiness.sh", 5, 2),
        "livenessProbe": _script_probe("liveness.sh", 10, 6),
        "lifecycle": {"preStop": {"exec": {"command": ["sh", f"{CONFIG_DIR}/pre-stop.sh"]}}},
        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR},
                         {"name": "config", "mountPath": CONFIG_DIR},
                         {"name": "run", "mountPath": RUN_DIR},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    containers = [redis]
    if spec.metrics_exporter:
        containers.append({
            "name": "metrics",
            "image": spec.exporter_image,
            "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "REDIS_ADDR", "value": f"redis://127.0.0.1:{CLIENT_PORT}"}, _password_env(secret_name)],
            "ports": [{"name": "metrics", "containerPort": 9121, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}},
            "securityContext": restricted_container_security_context(),
            "readinessProbe": {"httpGet": {"path": "/health", "port": "metrics"}, "periodSeconds": 10,
                               "timeoutSeconds": 5, "failureThreshold": 3, "successThreshold": 1},
            "livenessProbe": {"httpGet": {"path": "/health", "port": "metrics"}, "periodSeconds": 10,
                              "timeoutSeconds": 5, "failureThreshold": 6, "successThreshold": 1},
        })
    # Shard members are already in different zones; within a zone, keep members on distinct nodes when
    # possible. Without zones, distinct nodes are the only separation, so they are required.
    placement: Placement = "preferred" if zone else "required"
    affinity: dict[str, Any] = {"podAntiAffinity": separate(selector, placement, HOSTNAME)}
    if zone:
        affinity["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": ZONE, "operator": "In", "values": [zone]}]}]}}
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.storage_size}}}
    if spec.storage_class:
        claim["storageClassName"] = spec.storage_class
    labels = standard_labels(name, name, COMPONENT, {"ha-ai-stack/redis-group": group})
    return {
        "replicas": replicas,
        "serviceName": headless,
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "RollingUpdate"},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "selector": {"matchLabels": group_selector},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": restricted_pod_security_context(REDIS_UID),
                "terminationGracePeriodSeconds": spec.grace_period_seconds(),
                "affinity": affinity,
                "containers": containers,
                "volumes": [{"name": "config", "configMap": {"name": f"{name}-config", "defaultMode": 0o555}},
                            {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            },
        },
        "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": selector_labels(name, name)}, "spec": claim}],
    }


def client_labels(name: str) -> dict[str, str]:
    """The label a pod needs to reach the cluster through its NetworkPolicy."""
    return {f"ha-ai-stack/{name}-client": "true"}


def network_policy_spec(name: str) -> dict[str, Any]:
    """6379 from clients and members; 16379 (cluster bus) from members only; egress to members and DNS."""
    members = {"podSelector": {"matchLabels": selector_labels(name, name)}}
    clients = {"podSelector": {"matchLabels": client_labels(name)}}
    return {
        "podSelector": {"matchLabels": selector_labels(name, name)},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {"from": [members, clients], "ports": [{"port": CLIENT_PORT, "protocol": "TCP"}]},
            {"from": [members], "ports": [{"port": BUS_PORT, "protocol": "TCP"}]},
        ],
        "egress": [
            {"to": [members], "ports": [{"port": CLIENT_PORT, "protocol": "TCP"}, {"port": BUS_PORT, "protocol": "TCP"}]},
            _dns_egress(),
        ],
    }


def _dns_egress() -> dict[str, Any]:
    return {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }


def bootstrap_policy_spec(name: str) -> dict[str, Any]:
    """The bootstrap Job may reach the members' client port and DNS, nothing else."""
    return {
        "podSelector": {"matchLabels": {**client_labels(name), "app.kubernetes.io/component": "redis-bootstrap"}},
        "policyTypes": ["Ingress", "Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": selector_labels(name, name)}}],
                    "ports": [{"port": CLIENT_PORT, "protocol": "TCP"}]}, _dns_egress()],
    }


def bootstrap_job_spec(name: str, spec: RedisClusterArgs, secret_name: str) -> dict[str, Any]:
    labels = {**standard_labels(name, name, "redis-bootstrap"), **client_labels(name)}
    return {
        "backoffLimit": 20,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "OnFailure",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": restricted_pod_security_context(REDIS_UID),
                "containers": [{
                    "name": "bootstrap",
                    "image": spec.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", f"{CONFIG_DIR}/bootstrap.sh"],
                    "env": [_password_env(secret_name),
                            {"name": "TOPOLOGY_FILE", "value": f"{CONFIG_DIR}/topology.txt"},
                            {"name": "BOOTSTRAP_TIMEOUT", "value": "900"}],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                  "limits": {"cpu": "200m", "memory": "128Mi"}},
                    "securityContext": restricted_container_security_context(),
                    "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR}],
                }],
                "volumes": [{"name": "config", "configMap": {"name": f"{name}-config", "defaultMode": 0o555}}],
            },
        },
    }


def topology_hash(files: dict[str, str]) -> str:
    """Short hash of the topology: part of the bootstrap Job's name, so a new topology runs a new Job."""
    return hashlib.sha256(files["topology.txt"].encode()).hexdigest()[:10]


class RedisCluster(pulumi.ComponentResource):
    """A Redis Cluster spread over zones, with persistence, auth, a planned-handover preStop and a bootstrap Job."""

    password: random.RandomPassword
    secret: k8s.core.v1.Secret
    config_map: k8s.core.v1.ConfigMap
    headless_service: k8s.core.v1.Service
    client_service: k8s.core.v1.Service
    stateful_sets: list[k8s.apps.v1.StatefulSet]
    pod_disruption_budget: k8s.policy.v1.PodDisruptionBudget
    network_policies: list[k8s.networking.v1.NetworkPolicy]
    bootstrap_job: k8s.batch.v1.Job
    members: list[Member]
    connection: RedisConnection

    def __init__(self, name: str, args: RedisClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haai:index:RedisCluster", name, None, opts)
        inherited = inherited_dependencies(opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=inherited)
        namespace = args.namespace
        labels = standard_labels(name, name, COMPONENT)
        selector = selector_labels(name, name)

        def metadata(object_name: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
            return {"name": object_name, "namespace": namespace, "labels": {**labels, **(extra or {})}}

        self.members = plan_members(name, args)
        files = config_files(name, args, self.members)
        secret_name = f"{name}-auth"

        self.password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret", metadata=metadata(secret_name), type="Opaque",
            string_data={"password": self.password.result}, opts=child)
        self.config_map = k8s.core.v1.ConfigMap(f"{name}-config", metadata=metadata(f"{name}-config"),
                                                data=files, opts=child)
        ports = [{"name": "redis", "port": CLIENT_PORT, "targetPort": "redis", "protocol": "TCP"}]
        self.headless_service = k8s.core.v1.Service(
            f"{name}-headless", metadata=metadata(headless_service_name(name)),
            spec={"clusterIP": "None", "publishNotReadyAddresses": True, "selector": selector,
                  "ports": [*ports, {"name": "cluster-bus", "port": BUS_PORT, "targetPort": "cluster-bus",
                                     "protocol": "TCP"}]},
            opts=child)
        self.client_service = k8s.core.v1.Service(
            f"{name}-client", metadata=metadata(name),
            spec={"type": "ClusterIP", "selector": selector, "ports": ports}, opts=child)

        groups: dict[str, list[Member]] = {}
        for member in self.members:
            groups.setdefault(member.group, []).append(member)
        # Members only become ready once the cluster is formed, and the bootstrap Job forms it, so the
        # StatefulSets must not block on readiness; the Job is what Pulumi waits for.
        sts_opts = pulumi.ResourceOptions(parent=self, depends_on=[*inherited, self.config_map, self.secret])
        self.stateful_sets = [
            k8s.apps.v1.StatefulSet(
                f"{group}-sts",
                metadata={**metadata(group, {"ha-ai-stack/redis-group": group}),
                          "annotations": {"pulumi.com/skipAwait": "true"}},
                spec=statefulset_spec(name, args, group, members[0].zone, len(members), secret_name),
                opts=sts_opts)
            for group, members in groups.items()
        ]
        self.pod_disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=metadata(name),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}}, opts=child)
        self.network_policies = [
            k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=metadata(name),
                                            spec=network_policy_spec(name), opts=child),
            k8s.networking.v1.NetworkPolicy(f"{name}-bootstrap-netpol", metadata=metadata(f"{name}-bootstrap"),
                                            spec=bootstrap_policy_spec(name), opts=child),
        ]
        job_name = f"{name}-bootstrap-{topology_hash(files)}"
        self.bootstrap_job = k8s.batch.v1.Job(
            f"{name}-bootstrap", metadata=metadata(job_name),
            spec=bootstrap_job_spec(name, args, secret_name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*inherited, *self.stateful_sets,
                                                                  *self.network_policies, self.headless_service],
                                        delete_before_replace=True))
        self.connection = RedisConnection(
            seed_hosts=[member_host(name, namespace, m) for m in self.members],
            port=CLIENT_PORT,
            password_secret_name=secret_name,
            password_secret_key="password",
            member_selector=selector,
            client_labels=client_labels(name),
        )
        self.register_outputs({"client_service": name, "seed_nodes": self.connection.seed_nodes()})
