"""InferenceService: a GPU model server behind a Service, made highly available.

The spec is plain data (pydantic); ``build_inference_objects`` turns it into Kubernetes objects as
dicts (pure, unit-testable); the component only wires those into resources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .connection import RedisConnection
from .images import require_pinned_image
from .labels import selector_labels, standard_labels
from .options import inherited_dependencies
from .probes import PRESETS, ServerKind, model_server_probes
from .quantity import parse_quantity, positive_quantity
from .scheduling import (
    GPU_RESOURCE,
    HOSTNAME,
    ZONE,
    GpuSchedulingContract,
    Placement,
    gpu_fit_problem,
    separate,
    spread,
)
from .security import restricted_container_security_context, restricted_pod_security_context

COMPONENT = "inference"
SECRET_LOOKING_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|CREDENTIAL|PRIVATE_?KEY)", re.I)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODEL_CACHE_PATH = "/models"


class _Strict(BaseModel):
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

    @model_validator(mode="after")
    def _has_a_signal(self) -> "AutoscalingSpec":
        if self.target_cpu_utilization is None and self.metric is None:
            raise ValueError("set target_cpu_utilization or metric: the autoscaler needs a signal")
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
    anti_affinity: Placement = Field(default="required", description="Hostname anti-affinity strength.")
    zone_spread: Placement = Field(default="required", description="Zone spread strength (maxSkew 1).")
    disruption: DisruptionSpec = Field(default_factory=DisruptionSpec, description="PodDisruptionBudget.")
    termination_grace_period_seconds: int = Field(
        default=120, ge=1, le=3600, description="Time to finish in-flight requests; >= longest request."
    )
    pre_stop_sleep_seconds: int = Field(
        default=15, ge=0, le=600, description="preStop sleep so endpoints drop the pod before it stops."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Literal env vars (no secrets).")
    secret_env: dict[str, SecretKeyRef] = Field(default_factory=dict, description="Env vars from Secret keys.")
    env_from_secrets: list[str] = Field(default_factory=list, description="Secrets loaded whole as env.")
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the pods.")
    service_account_annotations: dict[str, str] = Field(
        default_factory=dict, description="ServiceAccount annotations (e.g. an IRSA role for model pulls)."
    )
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")
    model_cache_size: str = Field(default="100Gi", description=f"emptyDir size limit at {MODEL_CACHE_PATH}.")
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
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid env var name")
            if SECRET_LOOKING_ENV.search(name):
                raise ValueError(f"{name} looks like a secret: move it to secret_env so it comes from a Secret")
        return env

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

    def http_port(self) -> int:
        return self.port or PRESETS[self.server].port

    def metrics_port_or_preset(self) -> int | None:
        return self.metrics_port or PRESETS[self.server].metrics_port


class InferenceServiceArgs(InferenceSpec):
    """Args of ``InferenceService``: the spec plus where it runs and what it connects to."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

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
        return self


@dataclass
class InferenceObjects:
    """The Kubernetes objects of one service, as ``(metadata, spec-or-body)`` dicts."""

    metadata: dict[str, Any]
    selector: dict[str, str]
    service_account_metadata: dict[str, Any]
    deployment_spec: dict[str, Any]
    service_spec: dict[str, Any]
    pdb_spec: dict[str, Any]
    network_policy_spec: dict[str, Any]
    hpa_spec: dict[str, Any] | None = None


def _env(args: InferenceServiceArgs) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(args.env.items())]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
        for k, ref in sorted(args.secret_env.items())
    ]
    if args.redis:
        env += [
            {"name": "REDIS_CLUSTER_NODES", "value": args.redis.seed_nodes()},
            {"name": "REDIS_PORT", "value": str(args.redis.port)},
            {
                "name": "REDIS_PASSWORD",
                "valueFrom": {
                    "secretKeyRef": {"name": args.redis.password_secret_name, "key": args.redis.password_secret_key}
                },
            },
        ]
    return env


def _container(args: InferenceServiceArgs) -> dict[str, Any]:
    preset = PRESETS[args.server]
    port = args.http_port()
    ports = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    metrics_port = args.metrics_port_or_preset()
    if metrics_port and metrics_port != port:
        ports.append({"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"})
    container: dict[str, Any] = {
        "name": "server",
        "image": args.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": ports,
        "resources": {"requests": args.resources.requests(), "limits": args.resources.limits()},
        "securityContext": restricted_container_security_context(),
        "lifecycle": {"preStop": {"sleep": {"seconds": args.pre_stop_sleep_seconds}}},
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "model-cache", "mountPath": MODEL_CACHE_PATH},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        **model_server_probes(
            args.readiness_path or preset.readiness_path,
            args.liveness_path or preset.liveness_path,
            "http",
            args.model_load_seconds,
        ),
    }
    if args.pre_stop_sleep_seconds == 0:
        del container["lifecycle"]
    if args.command is not None:
        container["command"] = list(args.command)
    if args.args:
        container["args"] = list(args.args)
    env = _env(args)
    if env:
        container["env"] = env
    if args.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in args.env_from_secrets]
    return container


def _pod_spec(name: str, args: InferenceServiceArgs, selector: dict[str, str]) -> dict[str, Any]:
    pool = args.node_pool
    zones = len(pool.zones) if pool else 0
    spec: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security_context(),
        "terminationGracePeriodSeconds": args.termination_grace_period_seconds,
        "affinity": {"podAntiAffinity": separate(selector, args.anti_affinity, HOSTNAME)},
        "topologySpreadConstraints": [
            spread(selector, args.zone_spread, ZONE, min_domains=zones or None, match_label_keys=["pod-template-hash"])
        ],
        "containers": [_container(args)],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": args.tmp_size}},
            {"name": "model-cache", "emptyDir": {"sizeLimit": args.model_cache_size}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": args.shm_size}},
        ],
    }
    if pool is not None:
        spec["nodeSelector"] = dict(pool.node_selector)
        spec["tolerations"] = [dict(t) for t in pool.tolerations]
    if args.priority_class_name:
        spec["priorityClassName"] = args.priority_class_name
    return spec


def _network_policy_spec(args: InferenceServiceArgs, selector: dict[str, str]) -> dict[str, Any]:
    ports = [{"port": args.http_port(), "protocol": "TCP"}]
    metrics_port = args.metrics_port_or_preset()
    if metrics_port and metrics_port != args.http_port():
        ports.append({"port": metrics_port, "protocol": "TCP"})
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    peers += [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        for ns in sorted(set(args.allow_from_namespaces))
    ]
    egress: list[dict[str, Any]] = [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        }
    ]
    if args.redis:
        egress.append(
            {
                "to": [{"podSelector": {"matchLabels": dict(args.redis.member_selector)}}],
                "ports": [{"port": args.redis.port, "protocol": "TCP"}],
            }
        )
    if args.egress_https:
        egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]})
    return {
        "podSelector": {"matchLabels": selector},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": peers, "ports": ports}],
        "egress": egress,
    }


def _hpa_spec(name: str, args: InferenceServiceArgs) -> dict[str, Any] | None:
    scaling = args.autoscaling
    if scaling is None:
        return None
    metrics: list[dict[str, Any]] = []
    if scaling.target_cpu_utilization is not None:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization},
                },
            }
        )
    if scaling.metric is not None:
        metrics.append(scaling.metric.to_k8s())
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": args.floor_replicas(),
        "maxReplicas": scaling.max_replicas,
        "metrics": metrics,
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "selectPolicy": "Max",
                "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds,
                "selectPolicy": "Min",
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
            },
        },
    }


def rollout_deadline_seconds(args: InferenceSpec) -> int:
    """How long a rollout may take: one model load per surge step, plus scheduling slack."""
    return args.model_load_seconds + 600


def build_inference_objects(name: str, args: InferenceServiceArgs) -> InferenceObjects:
    """Every object of one inference service, as plain Kubernetes dicts. Pure: no Pulumi calls."""
    selector = selector_labels(name, name)
    labels = standard_labels(name, name, COMPONENT)
    pod_labels = {**labels, **(args.redis.client_labels if args.redis else {})}
    metadata = {"name": name, "namespace": args.namespace, "labels": labels}
    pod_metadata: dict[str, Any] = {"labels": pod_labels}
    if args.pod_annotations:
        pod_metadata["annotations"] = dict(sorted(args.pod_annotations.items()))

    deployment_spec = {
        "replicas": args.floor_replicas(),
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": rollout_deadline_seconds(args),
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": pod_metadata, "spec": _pod_spec(name, args, selector)},
    }
    service_spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": selector,
        "ports": [{"name": "http", "port": args.http_port(), "targetPort": "http", "protocol": "TCP"}],
    }
    metrics_port = args.metrics_port_or_preset()
    if metrics_port and metrics_port != args.http_port():
        service_spec["ports"].append({"name": "metrics", "port": metrics_port, "targetPort": "metrics", "protocol": "TCP"})
    pdb_spec: dict[str, Any] = {"selector": {"matchLabels": selector}, "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    if args.disruption.min_available is not None:
        pdb_spec["minAvailable"] = args.disruption.min_available
    else:
        pdb_spec["maxUnavailable"] = args.disruption.max_unavailable
    service_account_metadata = dict(metadata)
    if args.service_account_annotations:
        service_account_metadata["annotations"] = dict(sorted(args.service_account_annotations.items()))
    return InferenceObjects(
        metadata=metadata,
        selector=selector,
        service_account_metadata=service_account_metadata,
        deployment_spec=deployment_spec,
        service_spec=service_spec,
        pdb_spec=pdb_spec,
        network_policy_spec=_network_policy_spec(args, selector),
        hpa_spec=_hpa_spec(name, args),
    )


class InferenceService(pulumi.ComponentResource):
    """A highly available model server: Deployment, Service, HPA, PDB, ServiceAccount, NetworkPolicy.

    Example::

        InferenceService("ai-inference-service", InferenceServiceArgs(
            image="ghcr.io/acme/ai-model:1.4.2", replicas=3, port=8080,
            resources=ResourceSpec(cpu="2", memory="8Gi", cpu_limit="4", memory_limit="8Gi")))
    """

    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    pod_disruption_budget: k8s.policy.v1.PodDisruptionBudget
    service_account: k8s.core.v1.ServiceAccount
    network_policy: k8s.networking.v1.NetworkPolicy
    autoscaler: k8s.autoscaling.v2.HorizontalPodAutoscaler | None
    service_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]

    def __init__(self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haai:index:InferenceService", name, None, opts)
        objects = build_inference_objects(name, args)
        inherited = inherited_dependencies(opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=inherited)
        metadata = objects.metadata

        # Pods never need the API, so the token is not mounted (the pod spec says so too).
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=objects.service_account_metadata, automount_service_account_token=False, opts=child
        )
        # The HPA owns spec.replicas once it exists; Pulumi must not reset it on every update.
        # Pulumi waits for the rollout as long as Kubernetes does (one model load plus slack).
        deadline = f"{rollout_deadline_seconds(args)}s"
        deployment_opts = pulumi.ResourceOptions(
            parent=self,
            depends_on=[*inherited, self.service_account],
            ignore_changes=["spec.replicas"] if objects.hpa_spec else None,
            custom_timeouts=pulumi.CustomTimeouts(create=deadline, update=deadline),
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment", metadata=metadata, spec=objects.deployment_spec, opts=deployment_opts
        )
        self.service = k8s.core.v1.Service(f"{name}-service", metadata=metadata, spec=objects.service_spec, opts=child)
        self.pod_disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=metadata, spec=objects.pdb_spec, opts=child
        )
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=metadata, spec=objects.network_policy_spec, opts=child
        )
        self.autoscaler = (
            k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-hpa", metadata=metadata, spec=objects.hpa_spec, opts=child)
            if objects.hpa_spec
            else None
        )
        self.service_name = self.service.metadata.apply(lambda meta: meta.name or name)
        port = args.http_port()
        self.endpoint = self.service_name.apply(lambda svc: f"http://{svc}.{args.namespace}.svc.cluster.local:{port}")
        self.register_outputs({"service_name": self.service_name, "endpoint": self.endpoint})
