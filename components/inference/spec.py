"""InferenceService's arguments: plain data, validated up front, shared with the stack config entries.

Defaults are the production ones: three replicas, required spread, zero-downtime rollouts.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..connection import RedisConnection
from ..errors import ArgsModel
from ..images import PYTHON_BOTO3_IMAGE, require_pinned_image
from ..probes import PRESETS, ServerKind
from ..quantity import parse_quantity, positive_quantity
from ..scheduling import GPU_RESOURCE, GpuSchedulingContract, Placement, gpu_fit_problem
from .. import names
from ..security import SECRET_LOOKING_ENV

COMPONENT = "inference"
MODEL_CACHE_PATH = "/models"
# The service's name is its Service's (a DNS-1035 label) and its pods' prefix; 40 leaves room for the
# ReplicaSet hash and pod suffix in the pods' names.
SERVICE_NAME_MAX = 40


class _Strict(ArgsModel):
    model_config = ConfigDict(extra="forbid")


class ResourceSpec(_Strict):
    """CPU, memory and GPUs of the server container. Limits default to the requests (Guaranteed QoS)."""

    cpu: str = Field(default="2", description="CPU request.")
    memory: str = Field(default="8Gi", description="Memory request.")
    cpu_limit: str | None = Field(default=None, description="CPU limit; defaults to `cpu`.")
    memory_limit: str | None = Field(default=None, description="Memory limit; defaults to `memory`.")
    gpus: int = Field(default=0, ge=0, le=16, description="`nvidia.com/gpu` request, always equal to the limit.")

    _check_quantities = field_validator("cpu", "memory", "cpu_limit", "memory_limit")(
        lambda v: v if v is None else positive_quantity(v)
    )

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> "ResourceSpec":
        for request, limit in (("cpu", "cpu_limit"), ("memory", "memory_limit")):
            limit_value = getattr(self, limit)
            if limit_value is not None and parse_quantity(limit_value) < parse_quantity(getattr(self, request)):
                raise ValueError(f"{limit} {limit_value} is below the {request} request {getattr(self, request)}")
        return self

    def requests(self) -> dict[str, str]:
        return self._with_gpus({"cpu": self.cpu, "memory": self.memory})

    def limits(self) -> dict[str, str]:
        return self._with_gpus({"cpu": self.cpu_limit or self.cpu, "memory": self.memory_limit or self.memory})

    def _with_gpus(self, amounts: dict[str, str]) -> dict[str, str]:
        return {**amounts, GPU_RESOURCE: str(self.gpus)} if self.gpus else amounts


class MetricSpec(_Strict):
    """An extra HPA metric, e.g. GPU utilisation (Pods) or queue time (External)."""

    type: Literal["pods", "external"] = Field(description="`pods` (per-pod custom metric) or `external`.")
    name: str = Field(min_length=1, description="Metric name as the metrics adapter serves it.")
    target_average_value: str = Field(description="Target average value per pod, a quantity.")
    selector: dict[str, str] = Field(default_factory=dict, description="Metric label selector.")

    _check_selector = field_validator("selector")(names.labels)

    _check_target = field_validator("target_average_value")(positive_quantity)

    def to_k8s(self) -> dict[str, Any]:
        metric: dict[str, Any] = {"name": self.name}
        if self.selector:
            metric["selector"] = {"matchLabels": dict(self.selector)}
        target = {"type": "AverageValue", "averageValue": self.target_average_value}
        key = "pods" if self.type == "pods" else "external"
        return {"type": key.capitalize(), key: {"metric": metric, "target": target}}


class AutoscalingSpec(_Strict):
    """HorizontalPodAutoscaler settings. Scale-down is slow on purpose: GPU pods are slow to come back."""

    min_replicas: int | None = Field(default=None, ge=1, description="Floor; defaults to `replicas`.")
    max_replicas: int = Field(default=10, ge=1, description="Ceiling.")
    target_cpu_utilization: int | None = Field(default=70, ge=1, le=100, description="CPU target %, or null.")
    metric: MetricSpec | None = Field(default=None, description="Optional Pods or External metric.")
    scale_down_stabilization_seconds: int = Field(
        default=600, ge=0, le=3600, description="Window before scaling down (avoids flapping reloads)."
    )
    engine: Literal["hpa", "keda"] = Field(
        default="hpa", description="hpa: a HorizontalPodAutoscaler, its Pods metric served by prometheus-adapter "
                                   "(the stack renders the adapter's rules). keda: a KEDA ScaledObject whose "
                                   "Prometheus trigger reads the metric itself (KEDA makes the HPA).")
    prometheus_url: str = Field(default="http://prometheus-operated.monitoring.svc:9090",
                                description="Prometheus the KEDA trigger queries (engine keda).")

    @model_validator(mode="after")
    def _has_a_signal(self) -> "AutoscalingSpec":
        if self.target_cpu_utilization is None and self.metric is None:
            raise ValueError("set target_cpu_utilization or metric: the autoscaler needs a signal")
        if self.engine == "keda" and self.metric is not None and self.metric.type != "pods":
            raise ValueError("engine keda supports a pods metric (a Prometheus query per pod); use engine hpa "
                             "for an external metric")
        return self


class DisruptionSpec(_Strict):
    """PodDisruptionBudget: give exactly one of max_unavailable (default 1) or min_available."""

    max_unavailable: int | str | None = Field(default=1, description="Pods that may be down at once (n or 'n%').")
    min_available: int | str | None = Field(default=None, description="Alternative: pods that must stay up.")

    @field_validator("max_unavailable", "min_available", mode="plain")
    @classmethod
    def _count_or_percent(cls, value: Any) -> int | str | None:
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        if isinstance(value, str) and re.fullmatch(r"(100|[1-9]?[0-9])%", value):
            return value
        if isinstance(value, str) and re.fullmatch(r"0|[1-9][0-9]*", value):
            return int(value)  # the component provider's schema carries counts as strings too
        raise ValueError(f"must be a whole number >= 0 or a percentage like '25%' (got {value!r})")

    @model_validator(mode="after")
    def _exactly_one(self) -> "DisruptionSpec":
        if (self.max_unavailable is None) == (self.min_available is None):
            raise ValueError("set exactly one of max_unavailable and min_available")
        return self


class SecretKeyRef(_Strict):
    """A key of a Kubernetes Secret."""

    secret: str = Field(min_length=1, description="Secret name.")
    key: str = Field(min_length=1, description="Key in the Secret.")

    _check_secret = field_validator("secret")(names.dns_subdomain)
    _check_key = field_validator("key")(names.config_key)


S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?")
DEFAULT_FETCH_IMAGE = PYTHON_BOTO3_IMAGE


class ModelSpec(_Strict):
    """Model weights delivered from S3 into the pod's model cache by an init container, verified, before the
    server starts (see fetch_model.py)."""

    source: str = Field(description="s3://bucket/prefix holding the model's files.")
    manifest: str | None = Field(
        default=None, description="s3:// URI of a JSON manifest ({files: [{path, size, sha256}]}); every file is "
                                  "checked against it. Without one, sizes are checked against S3 only.")
    path: str = Field(default=f"{MODEL_CACHE_PATH}/model",
                      description=f"Where the server reads the model: a folder under {MODEL_CACHE_PATH}.")
    cache: Literal["emptyDir", "ephemeral", "pvc"] = Field(
        default="emptyDir", description="The cache volume: emptyDir (node disk, lost with the pod), ephemeral (a "
                                        "per-pod volume from a StorageClass, for models larger than node disk), pvc "
                                        "(an existing shared claim such as EFS: one download for every replica).")
    cache_storage_class: str | None = Field(default=None, description="StorageClass of an ephemeral cache.")
    cache_claim: str | None = Field(default=None, description="The existing PersistentVolumeClaim of a pvc cache.")
    fetch_image: str = Field(default=DEFAULT_FETCH_IMAGE, description="Init container image: Python 3 with boto3, "
                                                                      "pinned.")
    concurrency: int = Field(default=8, ge=1, le=64, description="Files downloaded at once.")

    _check_image = field_validator("fetch_image")(require_pinned_image)
    _check_class = field_validator("cache_storage_class")(lambda v: v if v is None else names.dns_subdomain(v))
    _check_claim = field_validator("cache_claim")(lambda v: v if v is None else names.dns_subdomain(v))

    @field_validator("source", "manifest")
    @classmethod
    def _s3(cls, value: str | None) -> str | None:
        if value is not None and not S3_URI.fullmatch(value):
            raise ValueError(f"must be an s3://bucket/key URI (got {value!r})")
        return value

    @field_validator("path")
    @classmethod
    def _under_cache(cls, value: str) -> str:
        parts = value.rstrip("/").split("/")
        if not value.startswith(MODEL_CACHE_PATH + "/") or ".." in parts or len(parts) < 3:
            raise ValueError(f"must be a folder under {MODEL_CACHE_PATH}, e.g. {MODEL_CACHE_PATH}/llama (got {value!r})")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _cache_source(self) -> "ModelSpec":
        if (self.cache == "pvc") != (self.cache_claim is not None):
            raise ValueError("cache: pvc needs cache_claim (and cache_claim needs cache: pvc)")
        if self.cache_storage_class is not None and self.cache != "ephemeral":
            raise ValueError("cache_storage_class applies to cache: ephemeral")
        return self


class InferenceSpec(_Strict):
    """Everything about one inference service that is plain data (shared by config and component args).

    Defaults are the production ones: three replicas, required spread, zero-downtime rollouts.
    """

    image: str = Field(description="Container image, pinned by tag (not `latest`) or digest.")
    server: ServerKind = Field(default="custom", description="Probe/port preset: `triton`, `vllm` or `custom`.")
    port: int | None = Field(default=None, ge=1, le=65535, description="HTTP port; defaults to the preset's.")
    readiness_path: str | None = Field(default=None, description="Readiness path; defaults to the preset's.")
    liveness_path: str | None = Field(default=None, description="Liveness path; defaults to the preset's.")
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="Metrics port (Triton: 8002).")
    command: list[str] | None = Field(default=None, description="Container command; image default if null.")
    args: list[str] = Field(default_factory=list, description="Container arguments.")
    replicas: int = Field(default=3, ge=1, le=1000, description="Replicas (HPA floor when autoscaling).")
    autoscaling: AutoscalingSpec | None = Field(default=None, description="HPA settings; none when null.")
    resources: ResourceSpec = Field(default_factory=ResourceSpec, description="Requests, limits and GPUs.")
    model_load_seconds: int = Field(
        default=1800, ge=10, le=14400, description="Longest model load the startup probe allows."
    )
    max_surge: int = Field(
        default=1, ge=1, le=100,
        description="New pods a rolling update starts at once (maxUnavailable stays 0). Each step waits for a model "
                    "load, so a rollout takes replicas / max_surge loads; raise it where the GPU pool has headroom.")
    anti_affinity: Placement = Field(default="required", description="Hostname anti-affinity strength: `required` keeps replicas on distinct nodes "
                    "(https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#inter-pod-affinity-and-anti-affinity).")
    zone_spread: Placement = Field(default="required", description="Zone spread strength (maxSkew 1): `required` refuses to pack a zone "
                    "(https://kubernetes.io/docs/concepts/scheduling-eviction/topology-spread-constraints/).")
    disruption: DisruptionSpec = Field(default_factory=DisruptionSpec, description="PodDisruptionBudget: limits evictions by drains and "
                    "autoscalers (https://kubernetes.io/docs/concepts/workloads/pods/disruptions/).")
    termination_grace_period_seconds: int = Field(
        default=120, ge=1, le=3600, description="Time to finish in-flight requests; >= longest request."
    )
    pre_stop_sleep_seconds: int = Field(
        default=15, ge=0, le=600, description="preStop sleep so endpoints drop the pod before it stops."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Literal env vars (no secrets).")
    secret_env: dict[str, SecretKeyRef] = Field(default_factory=dict, description="Env vars from Secret keys.")
    env_from_secrets: list[str] = Field(default_factory=list, description="Secrets loaded whole as env.")
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the pods, so serving outlives batch work under "
                    "pressure (https://kubernetes.io/docs/concepts/scheduling-eviction/pod-priority-preemption/).")
    service_account_annotations: dict[str, str] = Field(
        default_factory=dict, description="ServiceAccount annotations (e.g. an IRSA role for model pulls)."
    )
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")
    model: ModelSpec | None = Field(default=None, description="Model weights to deliver from S3 before the server "
                                                                 "starts; the server's preset points at model.path.")
    model_cache_size: str = Field(default="100Gi", description=f"Size of the model cache at {MODEL_CACHE_PATH}.")
    shm_size: str = Field(default="2Gi", description="Memory-backed /dev/shm size (NCCL, Triton, vLLM).")
    tmp_size: str = Field(default="1Gi", description="emptyDir size limit at /tmp.")
    allow_from_namespaces: list[str] = Field(
        default_factory=list, description="Namespaces allowed to call the service besides its own."
    )
    egress_https: bool = Field(default=True, description="Allow egress on 443 (model registries, S3).")

    _check_image = field_validator("image")(require_pinned_image)
    _check_sizes = field_validator("model_cache_size", "shm_size", "tmp_size")(positive_quantity)

    @field_validator("env")
    @classmethod
    def _no_literal_secrets(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            names.env_var_name(name)
            if SECRET_LOOKING_ENV.search(name):
                raise ValueError(f"{name} looks like a secret: move it to secret_env so it comes from a Secret")
        return env

    @field_validator("secret_env")
    @classmethod
    def _secret_env_names(cls, refs: dict[str, SecretKeyRef]) -> dict[str, SecretKeyRef]:
        names.each(names.env_var_name)(list(refs))
        return refs

    _check_env_from = field_validator("env_from_secrets")(names.each(names.dns_subdomain))
    _check_priority = field_validator("priority_class_name")(lambda v: v if v is None else names.dns_subdomain(v))
    _check_annotations = field_validator("service_account_annotations", "pod_annotations")(names.annotation_keys)
    _check_namespaces = field_validator("allow_from_namespaces")(names.each(names.dns_label))

    @model_validator(mode="after")
    def _drain_fits_grace_period(self) -> "InferenceSpec":
        if self.pre_stop_sleep_seconds >= self.termination_grace_period_seconds:
            raise ValueError(
                f"pre_stop_sleep_seconds ({self.pre_stop_sleep_seconds}) must be shorter than "
                f"termination_grace_period_seconds ({self.termination_grace_period_seconds})"
            )
        if self.autoscaling and self.autoscaling.max_replicas < self.floor_replicas():
            raise ValueError(
                f"autoscaling.max_replicas ({self.autoscaling.max_replicas}) is below the minimum "
                f"({self.floor_replicas()})"
            )
        return self

    def floor_replicas(self) -> int:
        """Replicas at rest: the HPA floor when autoscaling, else ``replicas``."""
        if self.autoscaling and self.autoscaling.min_replicas is not None:
            return self.autoscaling.min_replicas
        return self.replicas

    def container_texts(self) -> list[str]:
        """Where an s3:// location would be named: the server's command, args and env, and the model."""
        model = [self.model.source, self.model.manifest or ""] if self.model else []
        return [*(self.command or []), *self.args, *self.env.values(), *model]

    def http_port(self) -> int:
        return self.port or PRESETS[self.server].port

    def metrics_port_or_preset(self) -> int | None:
        return self.metrics_port or PRESETS[self.server].metrics_port


class InferenceServiceArgs(InferenceSpec):
    """Args of ``InferenceService``: the spec plus where it runs and what it connects to."""

    _check_namespace = field_validator("namespace")(names.dns_label)

    field_hints: ClassVar[dict[str, str]] = {
        "node_pool": "pass the pool's scheduling contract (`pool.contract`), not the GpuNodePool",
        "redis": "pass the cluster's connection contract (`redis.connection`), not the RedisCluster",
    }

    namespace: str = Field(default="default", description="Namespace of every object.")
    node_pool: GpuSchedulingContract | None = Field(
        default=None, description="Scheduling contract of the GPU pool; required when gpus > 0."
    )
    redis: RedisConnection | None = Field(default=None, description="Redis connection contract, if any.")

    @model_validator(mode="after")
    def _gpus_fit_pool(self) -> "InferenceServiceArgs":
        gpus = self.resources.gpus
        if gpus and self.node_pool is None:
            raise ValueError("resources.gpus > 0 needs node_pool (the GPU pool's scheduling contract)")
        problem = self.node_pool and gpu_fit_problem(gpus, self.node_pool.pool_name, self.node_pool.gpus_per_node)
        if problem:
            raise ValueError(f"resources.gpus {problem}")
        if self.redis is not None and self.redis.namespace != self.namespace:
            raise ValueError(
                f"redis is in namespace {self.redis.namespace!r} but the service is in {self.namespace!r}: the "
                f"cluster's NetworkPolicy admits clients from its own namespace only; run the service there")
        return self


