"""Pure builders: an InferenceService's Args to Kubernetes objects as plain dicts. No Pulumi calls."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources as package_files
from typing import Any

from ..labels import selector_labels, standard_labels
from ..probes import PRESETS, model_server_probes
from ..scheduling import HOSTNAME, ZONE, separate, spread
from ..security import dns_egress_rule, restricted_container_security_context, restricted_pod_security_context
from .spec import COMPONENT, MODEL_CACHE_PATH, InferenceServiceArgs, InferenceSpec

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
    scaled_object_spec: dict[str, Any] | None = None  # KEDA, instead of the HPA (autoscaling.engine keda)
    fetch_config_map: dict[str, Any] | None = None  # metadata and data of the model-delivery script

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
    server_args = [*args.args, *_model_args(args)]
    if server_args:
        container["args"] = server_args
    env = _env(args)
    if env:
        container["env"] = env
    if args.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in args.env_from_secrets]
    return container


FETCH_SCRIPT = "fetch_model.py"
FETCH_SCRIPT_DIR = "/opt/ha-ai-stack"


def fetch_script() -> str:
    return package_files.files(__package__).joinpath(f"scripts/{FETCH_SCRIPT}").read_text()


def fetch_config_map_name(name: str) -> str:
    """Content-named: a new script is a new ConfigMap and a new pod template, never an in-place swap."""
    return f"{name}-fetch-{hashlib.sha256(fetch_script().encode()).hexdigest()[:10]}"


def _model_args(args: InferenceServiceArgs) -> list[str]:
    """Point the server at the delivered model, unless the args already say where it is."""
    if args.model is None:
        return []
    if args.server == "vllm" and "--model" not in args.args:
        return ["--model", args.model.path]
    if args.server == "triton" and not any(a.startswith("--model-repository") for a in args.args):
        return [f"--model-repository={args.model.path}"]
    return []


def _fetch_container(name: str, args: InferenceServiceArgs) -> dict[str, Any]:
    model = args.model
    assert model is not None
    env = [{"name": "MODEL_SOURCE", "value": model.source}, {"name": "MODEL_PATH", "value": model.path},
           {"name": "MODEL_CONCURRENCY", "value": str(model.concurrency)},
           # A per-pod cache has no other writer: an unfinished download there is stale at once. A shared
           # claim may hold another replica's download in progress.
           {"name": "MODEL_STALE_SECONDS", "value": "3600" if model.cache == "pvc" else "0"},
           {"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    if model.manifest:
        env.insert(2, {"name": "MODEL_MANIFEST", "value": model.manifest})
    return {
        "name": "fetch-model",
        "image": model.fetch_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", f"{FETCH_SCRIPT_DIR}/{FETCH_SCRIPT}"],
        "env": env,
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "securityContext": restricted_container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "model-cache", "mountPath": MODEL_CACHE_PATH},
                         {"name": "model-fetch", "mountPath": FETCH_SCRIPT_DIR, "readOnly": True}],
    }


def _model_cache_volume(args: InferenceServiceArgs) -> dict[str, Any]:
    model = args.model
    if model is None or model.cache == "emptyDir":
        return {"name": "model-cache", "emptyDir": {"sizeLimit": args.model_cache_size}}
    if model.cache == "pvc":
        return {"name": "model-cache", "persistentVolumeClaim": {"claimName": model.cache_claim}}
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": args.model_cache_size}}}
    if model.cache_storage_class:
        claim["storageClassName"] = model.cache_storage_class
    return {"name": "model-cache", "ephemeral": {"volumeClaimTemplate": {"spec": claim}}}


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
            _model_cache_volume(args),
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": args.shm_size}},
        ],
    }
    if args.model is not None:
        spec["initContainers"] = [_fetch_container(name, args)]
        spec["volumes"].append({"name": "model-fetch", "configMap": {"name": fetch_config_map_name(name),
                                                                     "defaultMode": 0o444}})
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
    egress: list[dict[str, Any]] = [dns_egress_rule()]
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


SCALE_UP_POLICY = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                   "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}


def _scale_down_policy(seconds: int) -> dict[str, Any]:
    return {"stabilizationWindowSeconds": seconds, "selectPolicy": "Min",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]}


def _scaled_object_spec(name: str, args: InferenceServiceArgs) -> dict[str, Any] | None:
    """KEDA: CPU and a Prometheus query per pod, with the same bounds and behaviour as the HPA would have."""
    scaling = args.autoscaling
    if scaling is None or scaling.engine != "keda":
        return None
    triggers: list[dict[str, Any]] = []
    if scaling.target_cpu_utilization is not None:
        triggers.append({"type": "cpu", "metricType": "Utilization",
                         "metadata": {"value": str(scaling.target_cpu_utilization)}})
    if scaling.metric is not None:
        query = (f'avg(avg by (pod) ({scaling.metric.name}{{namespace="{args.namespace}", pod=~"{name}-.*"}}))')
        triggers.append({"type": "prometheus", "metricType": "AverageValue",
                         "metadata": {"serverAddress": scaling.prometheus_url, "query": query,
                                      "threshold": scaling.metric.target_average_value}})
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicaCount": args.floor_replicas(),
        "maxReplicaCount": scaling.max_replicas,
        "triggers": triggers,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
            "scaleUp": SCALE_UP_POLICY, "scaleDown": _scale_down_policy(scaling.scale_down_stabilization_seconds)}}},
    }


def _hpa_spec(name: str, args: InferenceServiceArgs) -> dict[str, Any] | None:
    scaling = args.autoscaling
    if scaling is None or scaling.engine != "hpa":
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
        "behavior": {"scaleUp": SCALE_UP_POLICY,
                     "scaleDown": _scale_down_policy(scaling.scale_down_stabilization_seconds)},
    }


# Per rollout step: scheduling (and a new GPU node, when the pool scales up) and the image pull.
STEP_SLACK_SECONDS = 600
AWAIT_SLACK_SECONDS = 300
SLOW_ROLLOUT_SECONDS = 4 * 3600


def rollout_deadline_seconds(args: InferenceSpec) -> int:
    """Kubernetes' progressDeadlineSeconds: the longest one step may go without progress (one model load)."""
    return args.model_load_seconds + STEP_SLACK_SECONDS


def rollout_steps(args: InferenceSpec) -> int:
    """Steps of a rolling update: with maxUnavailable 0, ``max_surge`` new pods load at a time, for as many
    replicas as may be running (the HPA's ceiling, when there is one)."""
    replicas = args.autoscaling.max_replicas if args.autoscaling else args.replicas
    return -(-replicas // args.max_surge)


def update_await_seconds(args: InferenceSpec) -> int:
    """How long Pulumi waits for a rolling update: every step's model load and slack, then a margin."""
    return rollout_steps(args) * rollout_deadline_seconds(args) + AWAIT_SLACK_SECONDS


def create_await_seconds(args: InferenceSpec) -> int:
    """A new Deployment starts every pod at once: one model load and slack."""
    return rollout_deadline_seconds(args) + AWAIT_SLACK_SECONDS


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
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": args.max_surge}},
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
        scaled_object_spec=_scaled_object_spec(name, args),
        fetch_config_map=({"metadata": {**metadata, "name": fetch_config_map_name(name)},
                           "data": {FETCH_SCRIPT: fetch_script()}} if args.model is not None else None),
    )


