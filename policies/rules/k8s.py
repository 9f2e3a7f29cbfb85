"""Reading Kubernetes objects as the engine hands them to a policy: pod templates, containers, selectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WORKLOAD_TEMPLATE_PATH: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:Deployment": ("spec", "template"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
}
REPLICATED = {"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"}
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def dig(value: Any, *path: str, default: Any = None) -> Any:
    """Follow ``path`` through maps. The engine's props are read-only Mapping proxies (which raise on unknown
    values in a preview), not dicts, so test for the ABC."""
    for key in path:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        else:
            return default
    return value


def object_type(resource_type: str) -> str:
    """The object's type token, for a resource or its server-side-apply Patch variant (same object)."""
    return resource_type.removesuffix("Patch")


def pod_template(resource_type: str, props: dict[str, Any]) -> dict[str, Any] | None:
    path = WORKLOAD_TEMPLATE_PATH.get(object_type(resource_type))
    return dig(props, *path) if path else None


def all_containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers") or []) + list(pod_spec.get("containers") or [])


def workload_pod(args: Any) -> dict[str, Any] | None:
    """The pod spec of the resource a policy is looking at, or None when it is not a workload."""
    template = pod_template(args.resource_type, args.props)
    return None if template is None else (template.get("spec") or {})


def workload_containers(args: Any) -> list[dict[str, Any]]:
    """Every container (init containers too) of a workload; none for other resources."""
    pod = workload_pod(args)
    return [] if pod is None else all_containers(pod)


def object_name(props: dict[str, Any]) -> str:
    metadata = props.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata.get('name')}" if namespace else str(metadata.get("name"))


def namespace_of(props: dict[str, Any]) -> str:
    return (props.get("metadata") or {}).get("namespace") or "default"


def matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Does a label selector (matchLabels and matchExpressions) select these labels? An empty selector selects all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def replicas(props: dict[str, Any]) -> int:
    """Replicas of a Deployment or StatefulSet (Kubernetes defaults a missing field to 1)."""
    value = dig(props, "spec", "replicas")
    return 1 if value is None else int(value)


def workload_group(props: dict[str, Any]) -> tuple[str, str]:
    """Workloads that form one application: same namespace and app.kubernetes.io/instance (or name)."""
    labels = dig(props, "metadata", "labels") or {}
    return namespace_of(props), labels.get("app.kubernetes.io/instance") or dig(props, "metadata", "name")
