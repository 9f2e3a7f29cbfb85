"""The stack config: one pydantic model, tier defaults, and a loader that reports every problem at once.

Config lives under the ``haai:`` namespace of a Pulumi stack file. Tier defaults fill what a stack
leaves out; model defaults are the production ones, so a library user gets HA without a config file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import names
from .cloud_identity import ROLE_ARN_ANNOTATION, s3_locations
from .errors import ConfigError, dotted_path, problems_of
from .gpu_node_pool import GpuNodePoolArgs
from .inference import InferenceSpec
from .inference.spec import SERVICE_NAME_MAX
from .gpu_metrics import GPU_METRIC_PREFIX
from .prerequisites import Prerequisite, PriorityClassSpec
from .redis_cluster import RedisClusterSpec
from .scheduling import gpu_fit_problem

NAMESPACE = "haai"
Tier = Literal["dev", "staging", "prod"]
TIERS: tuple[str, ...] = get_args(Tier)
MIN_KUBERNETES_MINOR = 30  # preStop `sleep` action (beta, on by default since 1.30)
MAX_KUBERNETES_MINOR = 37  # newest schema kubernetes-validate ships

# What each tier changes from the (production) model defaults. The README table is generated from this.
DEFAULT_REDIS_STORAGE_CLASS = "redis-gp3"

TIER_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "dev": {
        "inference": {"replicas": 1, "anti_affinity": "preferred", "zone_spread": "preferred"},
        "redis": {"replicas_per_shard": 0, "storage_size": "1Gi"},
    },
    "staging": {"inference": {"replicas": 2}, "redis": {"storage_size": "10Gi"}},
    "prod": {"inference": {}, "redis": {}},
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InferenceEntry(InferenceSpec):
    """One inference service in the stack config."""

    name: str = Field(description="Service name; names every object of the service.")
    gpu_pool: str | None = Field(
        default=None, description="GPU pool to run on; defaults to the only pool when there is one."
    )
    use_redis: bool = Field(default=False, description="Wire the stack's Redis connection into the pods.")

    _check_name = field_validator("name")(lambda v: names.dns_1035_label(v, SERVICE_NAME_MAX))


GpuPoolConfig = GpuNodePoolArgs  # the stack config's pool entries are the component's args


class RedisConfig(RedisClusterSpec):
    """The Redis Cluster section: the RedisCluster settings, plus whether the stack has one."""

    enabled: bool = Field(default=False, description="Deploy a Redis Cluster in the stack.")
    create_storage_class: bool = Field(
        default=True, description="On AWS pools (eks, karpenter), bring the PVCs' StorageClass: EBS CSI gp3, "
                                  "encrypted, expandable, WaitForFirstConsumer, Retain in prod; named storage_class "
                                  "(default redis-gp3). Off: declare the class in prerequisites.")

    def storage_class_name(self, on_aws: bool) -> str | None:
        """The class the PVCs ask for: the configured one, or ours on AWS, or the cluster's default."""
        return self.storage_class or (DEFAULT_REDIS_STORAGE_CLASS if on_aws and self.create_storage_class else None)


class ClusterTarget(_Section):
    """Which cluster the stack deploys to: an explicit Kubernetes provider, never "whatever is current"."""

    context: str | None = Field(default=None, description="kubeconfig context of the target cluster.")
    kubeconfig: str | None = Field(
        default=None, description="Path of the kubeconfig file (default: the KUBECONFIG environment, then ~/.kube/config).")


class MetricsConfig(_Section):
    """The GPU metrics path and the monitoring objects."""

    gpu: bool | None = Field(
        default=None, description="dcgm-exporter, its ServiceMonitor and the prometheus-adapter rules. Default: on "
                                  "when any HPA reads a GPU (DCGM_) metric.")
    monitors: bool = Field(default=True, description="PodMonitors for Redis, Triton and vLLM, and a PrometheusRule "
                                                     "with the stack's alerts (needs the prometheus-operator CRDs).")
    prometheus_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels your Prometheus selects monitors and rules by.")

    _check_labels = field_validator("prometheus_labels")(names.labels)


# Names the stack's own objects take (per kind), so a service may not take them.
RESERVED_SERVICE_NAMES = {"default-deny": "the namespace's default-deny NetworkPolicy"}
RESERVED_WITH_REDIS = {"redis": "the Redis Cluster's Service, PDB and NetworkPolicy",
                       "redis-headless": "the Redis Cluster's headless Service",
                       "redis-bootstrap": "the Redis admin Jobs' NetworkPolicy"}


class StackConfig(_Section):
    """The whole stack: tier, target cluster, services, pools and Redis."""

    tier: Tier = Field(description="Environment tier; picks the defaults below and the policy levels.")
    kubernetes_version: str = Field(default="1.33", description="Target Kubernetes minor, for schemas.")
    namespace: str = Field(default="ai-serving", description="Namespace of every namespaced object.")
    inference: list[InferenceEntry] = Field(default_factory=list, description="Inference services.")
    gpu_pools: list[GpuPoolConfig] = Field(default_factory=list, description="GPU node pools.")
    redis: RedisConfig = Field(default_factory=RedisConfig, description="Redis Cluster.")
    nvidia_device_plugin: bool = Field(
        default=True, description="Deploy the NVIDIA device plugin when there are GPU pools (off if the GPU "
                                  "operator or Bottlerocket already provides it).")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="GPU metrics and monitoring.")
    cluster: ClusterTarget | None = Field(
        default=None, description="The target cluster (kubeconfig context or file); every Kubernetes object goes "
                                  "through an explicit provider for it. Null: the current context.")
    priority_classes: list[PriorityClassSpec] = Field(
        default_factory=list, description="PriorityClasses the stack brings (applied server-side, so stacks on "
                                          "one cluster can share one).")
    prerequisites: list[Prerequisite] = Field(
        default_factory=list, description="What the cluster must already have, each with a reason: every name an "
                                          "object references is created by the stack, well known, or listed here.")

    _check_namespace = field_validator("namespace")(names.dns_label)

    def hpa_metrics(self) -> list[tuple[str, str]]:
        """(type, name) of every Pods or External metric an HPA of the stack reads (engine hpa)."""
        return [(e.autoscaling.metric.type, e.autoscaling.metric.name) for e in self.inference
                if e.autoscaling and e.autoscaling.engine == "hpa" and e.autoscaling.metric]

    def gpu_metrics_on(self) -> bool:
        """The GPU metrics path: as configured, else on when an HPA reads a GPU metric."""
        if self.metrics.gpu is not None:
            return self.metrics.gpu
        return bool(gpu_metric_names(self.hpa_metrics())) or any(
            e.autoscaling and e.autoscaling.engine == "keda" and e.autoscaling.metric
            and e.autoscaling.metric.name.startswith(GPU_METRIC_PREFIX) for e in self.inference)

    def aws_pools(self) -> list[GpuPoolConfig]:
        """Pools whose nodes run in AWS (EBS volumes, IRSA)."""
        return [pool for pool in self.gpu_pools if pool.backend in ("eks", "karpenter")]

    @field_validator("kubernetes_version")
    @classmethod
    def _supported_version(cls, value: str) -> str:
        match = re.fullmatch(r"1\.(\d+)", value)
        if match and int(match[1]) < 10 and MIN_KUBERNETES_MINOR <= int(match[1]) * 10 <= MAX_KUBERNETES_MINOR:
            raise ValueError(f"got {value!r}: YAML read an unquoted 1.{match[1]}0 as the number {value}; "
                             f"quote it: kubernetes_version: \"1.{match[1]}0\"")
        if not match or not MIN_KUBERNETES_MINOR <= int(match[1]) <= MAX_KUBERNETES_MINOR:
            raise ValueError(
                f"must be a supported minor version from 1.{MIN_KUBERNETES_MINOR} to 1.{MAX_KUBERNETES_MINOR} "
                f"(got {value!r})"
            )
        return value

    def pool(self, name: str) -> GpuPoolConfig | None:
        return next((p for p in self.gpu_pools if p.name == name), None)

    def pool_for(self, entry: InferenceEntry) -> GpuPoolConfig | None:
        """The pool an entry runs on: the named one, or the only pool for a GPU service."""
        if entry.gpu_pool is not None:
            return self.pool(entry.gpu_pool)
        if entry.resources.gpus and len(self.gpu_pools) == 1:
            return self.gpu_pools[0]
        return None

    def reference_problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """Problems that span sections (names, references, GPU fit), each with its config path."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        named: dict[str, list[str]] = {"inference": [e.name for e in self.inference],
                                       "gpu_pools": [p.name for p in self.gpu_pools],
                                       "priority_classes": [p.name for p in self.priority_classes]}
        for section, section_names in named.items():
            seen: dict[str, int] = {}
            for index, name in enumerate(section_names):
                if name in seen:
                    problems.append(((section, index, "name"), f"duplicate name {name!r} (also at [{seen[name]}])"))
                seen.setdefault(name, index)
        reserved = {**RESERVED_SERVICE_NAMES, **(RESERVED_WITH_REDIS if self.redis.enabled else {})}
        for index, entry in enumerate(self.inference):
            if entry.name in reserved:
                problems.append((("inference", index, "name"), f"{entry.name!r} is taken by {reserved[entry.name]}: "
                                                               f"choose another name"))
        for index, entry in enumerate(self.inference):
            gpus = entry.resources.gpus
            pool = self.pool_for(entry)
            if entry.gpu_pool is not None and pool is None:
                known = ", ".join(repr(p.name) for p in self.gpu_pools) or "none defined"
                problems.append((("inference", index, "gpu_pool"), f"unknown pool {entry.gpu_pool!r} (pools: {known})"))
            elif gpus and pool is None:
                problems.append(
                    (("inference", index, "gpu_pool"), f"needed: the service asks for {gpus} GPUs and there are "
                     f"{len(self.gpu_pools)} pools to choose from")
                )
            elif pool and (problem := gpu_fit_problem(gpus, pool.name, pool.resolved_gpus_per_node())):
                problems.append((("inference", index, "resources", "gpus"), problem))
            if (locations := s3_locations(*entry.container_texts())) and \
                    ROLE_ARN_ANNOTATION not in entry.service_account_annotations and \
                    not (pool and pool.backend == "eks"):
                where = f"pool {pool.name!r} (backend {pool.backend})" if pool else "no GPU pool"
                problems.append((("inference", index, "service_account_annotations"),
                                 f"the service reads s3://{locations[0].bucket}/{locations[0].prefix} and runs on "
                                 f"{where}: give the IAM role its pods assume as `{ROLE_ARN_ANNOTATION}` (the stack "
                                 f"makes one itself only on eks pools)"))
            if entry.autoscaling and entry.autoscaling.engine == "hpa" and entry.autoscaling.metric:
                metric = entry.autoscaling.metric
                kind = "PodsMetric" if metric.type == "pods" else "ExternalMetric"
                served = (metric.type == "pods" and metric.name.startswith(GPU_METRIC_PREFIX) and self.gpu_metrics_on())
                declared = any(p.kind == kind and p.name == metric.name for p in self.prerequisites)
                if not served and not declared:
                    problems.append((("inference", index, "autoscaling", "metric"),
                                     f"nothing serves the {metric.type} metric {metric.name!r}: turn on metrics.gpu "
                                     f"(for a DCGM_ metric), or declare a {kind} prerequisite naming what serves it"))
            if entry.use_redis and not self.redis.enabled:
                problems.append((("inference", index, "use_redis"), "needs redis.enabled: true"))
        redis = self.redis
        if redis.enabled and (redis.backup or redis.restore_from) and \
                ROLE_ARN_ANNOTATION not in redis.service_account_annotations and \
                not any(pool.backend == "eks" for pool in self.gpu_pools):
            problems.append((("redis", "service_account_annotations"),
                             f"the Redis backups use S3 and no eks pool is there to make their role: give the IAM "
                             f"role the backup and restore pods assume as `{ROLE_ARN_ANNOTATION}`"))
        if self.redis.enabled and self.tier == "prod" and self.redis.backup is None:
            problems.append((("redis", "backup"), "needed in prod (tier prod): backups to S3 are on in prod; set "
                                                  "backup.bucket"))
        if self.redis.enabled and self.tier != "dev" and self.redis.replicas_per_shard < 1:
            problems.append((("redis", "replicas_per_shard"),
                             f"must be >= 1 outside dev (tier {self.tier}): a shard without a replica is lost "
                             f"with its node"))
        return problems


def config_path(loc: tuple[Any, ...]) -> str:
    """``('inference', 1, 'replicas')`` -> ``haai:inference[1].replicas``."""
    return dotted_path(loc, NAMESPACE + ":")


def _apply_tier_defaults(raw: dict[str, Any], tier: str) -> dict[str, Any]:
    defaults = TIER_DEFAULTS[tier]
    merged = dict(raw)
    if isinstance(raw.get("inference"), list):
        merged["inference"] = [
            {**defaults["inference"], **entry} if isinstance(entry, dict) else entry for entry in raw["inference"]
        ]
    redis = raw.get("redis", {})
    if isinstance(redis, dict):
        merged["redis"] = {**defaults["redis"], **redis}
    return merged


def validate_stack_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate a dict of ``haai:`` keys (without the prefix). Raises ConfigError listing every problem."""
    data = dict(raw)
    tier = data.get("tier")
    if tier in TIERS:
        data = _apply_tier_defaults(data, str(tier))
    try:
        config = StackConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"{path}: {why}" for path, why in problems_of(exc, StackConfig, NAMESPACE + ":")]) from None
    reference = [f"{config_path(loc)}: {message}" for loc, message in config.reference_problems()]
    if reference:
        raise ConfigError(reference)
    return config


def _all_configured_keys() -> set[str]:
    return set(pulumi.runtime.get_config_env()) | set(pulumi.runtime.config.CONFIG.get())


def _project_keys_meant_for_us() -> list[str]:
    """Keys the CLI put in the project's namespace (a stack file key without ``haai:``) that name one of
    our settings: the program would silently ignore them, so they are errors with a hint."""
    prefix = pulumi.get_project() + ":"
    fields = set(StackConfig.model_fields)
    return sorted(f"{k}: ignored by the program (did you mean `{NAMESPACE}:{k[len(prefix):]}`?)"
                  for k in _all_configured_keys() if k.startswith(prefix) and k[len(prefix):] in fields)


SECRET_CONFIG_REASON = ("stored as a secret (`secure:`), but ha-ai-stack's config carries no secrets: keep the secret "
                        "in a Kubernetes Secret and reference it (secret_env, or a declared prerequisite), so pods "
                        "read it through secretKeyRef and it never passes through the program")


def _secret_config_keys() -> set[str]:
    """Keys the engine marks secret: from the language host's environment, or set in process."""
    keys = set(pulumi.runtime.get_config_secret_keys_env())
    return keys | {k for k in _all_configured_keys() if pulumi.runtime.is_config_secret(k)}


def _configured_keys() -> list[str]:
    """Every configured key of the ``haai`` namespace.

    The SDK has no call that lists keys, so unknown top-level keys would pass silently through
    ``pulumi.Config``. The language host hands config to the program through the store behind
    ``pulumi.runtime.get_config`` (filled by ``set_all_config``) or the ``PULUMI_CONFIG`` environment,
    so both are read.
    """
    keys = _all_configured_keys()
    prefix = NAMESPACE + ":"
    return sorted(k[len(prefix):] for k in keys if k.startswith(prefix))


def read_pulumi_config() -> dict[str, Any]:
    """The ``haai:`` keys of the running stack, with structured values decoded from JSON."""
    config = pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    problems: list[str] = _project_keys_meant_for_us()
    secret = _secret_config_keys()
    for key in _configured_keys():
        if f"{NAMESPACE}:{key}" in secret:
            problems.append(f"{config_path((key,))}: {SECRET_CONFIG_REASON}")
            continue
        text = config.get(key)
        if text is not None and text.lstrip()[:1] in ("{", "["):
            try:
                raw[key] = json.loads(text)
            except json.JSONDecodeError as error:
                problems.append(f"{config_path((key,))}: {text[:40]!r} starts like a list or map but is not one "
                                f"({error.msg} at character {error.pos + 1}); write it as YAML, or quote it if "
                                f"it is meant as text")
        else:
            raw[key] = text
    if problems:
        raise ConfigError(problems)
    return with_default_tier(raw, pulumi.get_stack())


def with_default_tier(raw: dict[str, Any], stack: str) -> dict[str, Any]:
    """The tier defaults to the stack's name when that name is a tier."""
    return raw if "tier" in raw or stack not in TIERS else {**raw, "tier": stack}


def stack_file_config(stack_config: Mapping[str, Any], stack: str) -> dict[str, Any]:
    """The ``haai:`` keys of a stack file's ``config:`` map, as the program would read them."""
    prefix = NAMESPACE + ":"
    raw = {k[len(prefix):]: v for k, v in stack_config.items() if k.startswith(prefix)}
    return with_default_tier(raw, stack)


def load_stack_config() -> StackConfig:
    """Read and validate the running stack's config before any resource is registered."""
    return validate_stack_config(read_pulumi_config())


def gpu_metric_names(metrics: list[tuple[str, str]]) -> list[str]:
    """The GPU (DCGM_) metrics among (type, name) HPA metrics: the ones the stack's adapter rules serve."""
    return sorted({name for kind, name in metrics if kind == "pods" and name.startswith(GPU_METRIC_PREFIX)})
