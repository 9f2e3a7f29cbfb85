"""Pure builders: member placement, the shipped config files, and the Kubernetes objects as dicts.

Layout: one StatefulSet per zone, pinned there by node affinity (EBS volumes are zonal anyway).
Shard i's master lives in zone i mod Z and its replica j in zone (i + j) mod Z, so no two members
of a shard share a zone and no zone holds a majority of the masters. The pairing is written to
``topology.txt`` in the ConfigMap, and ``bootstrap.sh`` makes each replica follow its own shard's
master, so the layout holds from the first boot. Without zones, one StatefulSet with required
hostname anti-affinity keeps every member on its own node.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources as package_files
from string import Template
from typing import Any, Literal

from ..labels import selector_labels, standard_labels
from ..quantity import parse_quantity
from ..scheduling import HOSTNAME, ZONE, Placement, separate
from ..images import PYTHON_BOTO3_IMAGE
from ..security import dns_egress_rule, restricted_container_security_context, restricted_pod_security_context
from .spec import (
    AWAIT_SLACK_SECONDS,
    BACKUP_DIR,
    BACKUP_TIMEOUT_SECONDS,
    BALANCE_TIMEOUT_SECONDS,
    BOOTSTRAP_TIMEOUT_SECONDS,
    BUS_PORT,
    CLIENT_PORT,
    COMPONENT,
    CONFIG_DIR,
    DATA_DIR,
    REDIS_UID,
    RESTORE_TIMEOUT_SECONDS,
    RUN_DIR,
    SCRIPTS,
    RedisClusterArgs,
    RedisClusterSpec,
)

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
    template = Template(package_files.files(__package__).joinpath("scripts/redis.conf.template").read_text())
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
        files[script] = package_files.files(__package__).joinpath(f"scripts/{script}").read_text()
    return files


def _script_probe(script: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {"exec": {"command": ["sh", f"{CONFIG_DIR}/{script}"]}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures, "successThreshold": 1}


def _password_env(secret_name: str) -> dict[str, Any]:
    return {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "password"}}}


def statefulset_spec(
    name: str, spec: RedisClusterArgs, group: str, zone: str | None, replicas: int, secret_name: str, config_map: str
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
        # A member may load and sync for at least member_ready_timeout_seconds before the kubelet gives up on it
        # (rounded up to the 5 s period; the field's minimum, 60 s, keeps the threshold above 1).
        "startupProbe": _script_probe("liveness.sh", 5, math.ceil(spec.member_ready_timeout_seconds / 5)),
        "readinessProbe": _script_probe("readiness.sh", 5, 2),
        "livenessProbe": _script_probe("liveness.sh", 10, 6),
        "lifecycle": {"preStop": {"exec": {"command": ["sh", f"{CONFIG_DIR}/pre-stop.sh"]}}},
        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR},
                         {"name": "config", "mountPath": CONFIG_DIR},
                         {"name": "run", "mountPath": RUN_DIR},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    containers = [redis]
    pod_extra: dict[str, Any] = {}
    pod_labels: dict[str, str] = {}
    if spec.restore_from:
        # Loads this member's shard of the backup into a fresh data volume before Redis starts (once).
        pod_extra = {"serviceAccountName": backup_service_account_name(name), "initContainers": [_s3_container(
            "restore", spec, "restore-member", secret_name,
            {"RESTORE_FROM": spec.restore_from, "POD_HOSTNAME": f"$(POD_NAME).{headless}.{spec.namespace}.svc.cluster.local",
             "REDIS_DATA_DIR": DATA_DIR},
            [{"name": "data", "mountPath": DATA_DIR}], pod_name=True)]}
        pod_labels = s3_labels(name)
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
    labels = standard_labels(name, name, COMPONENT, {"ha-ai-stack/redis-group": group, **pod_labels})
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
                **pod_extra,
                "containers": containers,
                "volumes": [{"name": "config", "configMap": {"name": config_map, "defaultMode": 0o555}},
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
            dns_egress_rule(),
        ],
    }


def admin_labels(name: str) -> dict[str, str]:
    """Labels of the bootstrap and balance Jobs' pods: what their NetworkPolicy selects."""
    return {**client_labels(name), f"ha-ai-stack/{name}-admin": "true"}


def bootstrap_policy_spec(name: str) -> dict[str, Any]:
    """The admin Jobs (bootstrap, balance) may reach the members' client port and DNS, nothing else."""
    return {
        "podSelector": {"matchLabels": admin_labels(name)},
        "policyTypes": ["Ingress", "Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": selector_labels(name, name)}}],
                    "ports": [{"port": CLIENT_PORT, "protocol": "TCP"}]}, dns_egress_rule()],
    }


def _container(name: str, image: str, command: list[str], env: list[dict[str, Any]],
               mounts: list[dict[str, Any]], resources: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": env,
        "resources": resources or {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        "securityContext": restricted_container_security_context(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR}, *mounts],
    }


def _script_container(name: str, spec: RedisClusterArgs, script: str, secret_name: str, env: dict[str, str],
                      mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A shipped shell script in the Redis image (it has redis-cli), against the members."""
    return _container(name, spec.image, ["sh", f"{CONFIG_DIR}/{script}"],
                      [_password_env(secret_name), {"name": "TOPOLOGY_FILE", "value": f"{CONFIG_DIR}/topology.txt"},
                       *({"name": k, "value": v} for k, v in env.items())], mounts or [])


def _s3_container(name: str, spec: RedisClusterArgs, command: str, secret_name: str, env: dict[str, str],
                  mounts: list[dict[str, Any]], *, pod_name: bool = False) -> dict[str, Any]:
    """backup_s3.py in the Python/boto3 image; AWS credentials come from the ServiceAccount's identity."""
    image = spec.backup.image if spec.backup else PYTHON_BOTO3_IMAGE
    python_env = [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                  *([{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}] if pod_name else [])]
    return _container(name, image, ["python3", f"{CONFIG_DIR}/backup_s3.py", command],
                      [*python_env, _password_env(secret_name),
                       {"name": "TOPOLOGY_FILE", "value": f"{CONFIG_DIR}/topology.txt"},
                       *({"name": k, "value": v} for k, v in env.items())], mounts,
                      {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}})


def _admin_job_spec(name: str, spec: RedisClusterArgs, config_map: str, component: str, *,
                    containers: list[dict[str, Any]], backoff_limit: int, deadline_seconds: int,
                    init_containers: list[dict[str, Any]] | None = None, volumes: list[dict[str, Any]] | None = None,
                    service_account: str | None = None, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Job running shipped scripts against the members (bootstrap, balance, backup, restore)."""
    labels = {**standard_labels(name, name, component), **admin_labels(name), **(extra_labels or {})}
    pod: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security_context(REDIS_UID),
        **({"serviceAccountName": service_account} if service_account else {}),
        **({"initContainers": init_containers} if init_containers else {}),
        "containers": containers,
        "volumes": [{"name": "config", "configMap": {"name": config_map, "defaultMode": 0o555}}, *(volumes or [])],
    }
    return {"backoffLimit": backoff_limit, "activeDeadlineSeconds": deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod}}


def bootstrap_job_spec(name: str, spec: RedisClusterArgs, secret_name: str, config_map: str) -> dict[str, Any]:
    """Forms the cluster once (bootstrap.sh is idempotent)."""
    return _admin_job_spec(name, spec, config_map, "redis-bootstrap", containers=[_script_container(
        "bootstrap", spec, "bootstrap.sh", secret_name, {"BOOTSTRAP_TIMEOUT": str(BOOTSTRAP_TIMEOUT_SECONDS)})],
        backoff_limit=20, deadline_seconds=BOOTSTRAP_TIMEOUT_SECONDS + AWAIT_SLACK_SECONDS)


def balance_cron_job_spec(name: str, spec: RedisClusterArgs, secret_name: str, config_map: str) -> dict[str, Any]:
    assert spec.balance_schedule is not None
    return cron_job_spec(spec.balance_schedule, balance_job_spec(name, spec, secret_name, config_map))


def balance_job_spec(name: str, spec: RedisClusterArgs, secret_name: str, config_map: str) -> dict[str, Any]:
    """Moves masters back to their home zones (balance.sh), after a rollout or on a schedule."""
    return _admin_job_spec(name, spec, config_map, "redis-balance", containers=[_script_container(
        "balance", spec, "balance.sh", secret_name, {"BALANCE_TIMEOUT": str(BALANCE_TIMEOUT_SECONDS),
                                                     "HANDOVER_TIMEOUT": str(spec.handover_timeout_seconds)})],
        backoff_limit=3, deadline_seconds=BALANCE_TIMEOUT_SECONDS + AWAIT_SLACK_SECONDS)


def cron_job_spec(schedule: str, job: dict[str, Any]) -> dict[str, Any]:
    """A CronJob around ``job``: UTC, never two at once, the last few runs kept for inspection."""
    return {
        "schedule": schedule,
        "timeZone": "Etc/UTC",
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 300,
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": job},
    }


def backup_service_account_name(name: str) -> str:
    return f"{name}-backup"


def s3_labels(name: str) -> dict[str, str]:
    """Pods that talk to S3 (backup, restore): what the S3 egress NetworkPolicy selects."""
    return {f"ha-ai-stack/{name}-s3": "true"}


def s3_egress_policy_spec(name: str) -> dict[str, Any]:
    """HTTPS out (S3, and STS for the pod's identity) for the backup and restore pods; nothing comes in."""
    return {
        "podSelector": {"matchLabels": s3_labels(name)},
        "policyTypes": ["Ingress", "Egress"],
        "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}, dns_egress_rule()],
    }


def staging_size(spec: RedisClusterSpec) -> str:
    """Room for one snapshot of every shard: shards x the member memory limit (an RDB is smaller)."""
    return f"{-(-int(parse_quantity(spec.memory)) * spec.shards // 2**20)}Mi"


def backup_job_spec(name: str, spec: RedisClusterArgs, secret_name: str, config_map: str) -> dict[str, Any]:
    """backup.sh dumps every shard into a scratch volume (Redis image), then backup_s3.py uploads it."""
    assert spec.backup is not None
    staging = {"name": "staging", "mountPath": BACKUP_DIR}
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": staging_size(spec)}}}
    if spec.storage_class:
        claim["storageClassName"] = spec.storage_class
    return _admin_job_spec(
        name, spec, config_map, "redis-backup",
        init_containers=[_script_container("dump", spec, "backup.sh", secret_name, {"BACKUP_DIR": BACKUP_DIR},
                                           [staging])],
        containers=[_s3_container("upload", spec, "upload", secret_name, {
            "BACKUP_DIR": BACKUP_DIR, "BACKUP_BUCKET": spec.backup.bucket, "BACKUP_PREFIX": spec.backup.prefix,
            "CLUSTER_NAME": name, "BACKUP_RETENTION": str(spec.backup.retention)}, [staging])],
        volumes=[{"name": "staging", "ephemeral": {"volumeClaimTemplate": {"spec": claim}}}],
        service_account=backup_service_account_name(name), extra_labels=s3_labels(name),
        backoff_limit=2, deadline_seconds=BACKUP_TIMEOUT_SECONDS)


def restore_job_spec(name: str, spec: RedisClusterArgs, secret_name: str, config_map: str) -> dict[str, Any]:
    """Verifies the backup named by restore_from (manifest, shard count, every checksum) and that the target is
    fresh, before any member starts; the members then load their shards (backup_s3.py restore-member)."""
    assert spec.restore_from is not None
    return _admin_job_spec(
        name, spec, config_map, "redis-restore",
        containers=[_s3_container("verify", spec, "verify-restore", secret_name, {"RESTORE_FROM": spec.restore_from}, [])],
        service_account=backup_service_account_name(name), extra_labels=s3_labels(name),
        backoff_limit=1, deadline_seconds=RESTORE_TIMEOUT_SECONDS)


def short_hash(value: Any) -> str:
    """10 hex digits of the SHA-256 of ``value`` as canonical JSON (names that change with their content)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def topology_hash(files: dict[str, str]) -> str:
    """Short hash of the topology: part of the bootstrap Job's name, so a new topology runs a new Job."""
    return hashlib.sha256(files["topology.txt"].encode()).hexdigest()[:10]


def config_map_name(name: str, files: dict[str, str]) -> str:
    """Content-named: a changed redis.conf or script is a NEW ConfigMap, which changes the pod template and
    so rolls every member safely; the old one, still mounted by running pods, is deleted only after."""
    return f"{name}-config-{short_hash(files)}"
