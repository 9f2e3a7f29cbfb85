"""What a stack needs from its cluster: one notion, shared by the config, the policy pack and preflight.

Every name a rendered object references (a PriorityClass, a StorageClass, a Secret and its key, a
ConfigMap, a ServiceAccount, a PVC, an IngressClass, the CRD behind a custom resource, the metrics
behind an HPA) must be one of three things: created by the stack, a well-known system object, or
declared in the stack config's ``prerequisites`` with a one-line reason. ``references_of`` reads the
references out of an object; the ``references-resolve`` policy and ``haai preflight`` use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import names

PrerequisiteKind = Literal[
    "PriorityClass", "StorageClass", "DefaultStorageClass", "Secret", "ConfigMap", "ServiceAccount",
    "PersistentVolumeClaim", "IngressClass", "CustomResourceDefinition", "APIService", "PodsMetric",
    "ExternalMetric",
]
NAMESPACED = {"Secret", "ConfigMap", "ServiceAccount", "PersistentVolumeClaim"}
# The ConfigMap that carries the declared prerequisites into the cluster (and to the policy pack).
PREREQUISITES_CONFIG_MAP = "ha-ai-stack-prerequisites"
PREREQUISITES_KEY = "prerequisites.json"

# Objects every cluster has: referenced freely.
WELL_KNOWN: dict[str, set[str]] = {
    "PriorityClass": {"system-cluster-critical", "system-node-critical"},
    "ServiceAccount": {"default"},
}
# API groups served by Kubernetes itself: custom resources outside them need their CRD.
BUILT_IN_GROUPS = {"", "core", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io",
                   "storage.k8s.io", "scheduling.k8s.io", "apiextensions.k8s.io", "admissionregistration.k8s.io",
                   "coordination.k8s.io", "discovery.k8s.io", "node.k8s.io", "certificates.k8s.io",
                   "apiregistration.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io"}
# HPA Resource metrics are served by metrics-server (declare it with kind APIService: v1beta1.metrics.k8s.io).
RESOURCE_METRICS_API = "v1beta1.metrics.k8s.io"
CUSTOM_METRICS_API = "v1beta1.custom.metrics.k8s.io"  # prometheus-adapter, for Pods metrics
EXTERNAL_METRICS_API = "v1beta1.external.metrics.k8s.io"
# A ConfigMap of adapter rules names the Pods metrics it serves in this annotation (comma-separated).
SERVES_PODS_METRICS = "ha-ai-stack/serves-pods-metrics"


class Prerequisite(BaseModel):
    """One thing the cluster must have before this stack can run, and why."""

    model_config = ConfigDict(extra="forbid")

    kind: PrerequisiteKind = Field(description="What it is: an object kind, or a metric the HPA reads.")
    name: str = Field(default="", description="Its name (a metric's name; a CRD's `<plural>.<group>`); "
                                              "empty for DefaultStorageClass.")
    namespace: str | None = Field(default=None, description="For namespaced kinds: default the stack's namespace.")
    keys: list[str] = Field(default_factory=list, description="Secret or ConfigMap keys the stack reads.")
    reason: str = Field(min_length=1, description="One line: what it is for and who provides it.")

    _check_keys = field_validator("keys")(names.each(names.config_key))

    @model_validator(mode="after")
    def _named(self) -> "Prerequisite":
        if self.kind == "DefaultStorageClass":
            if self.name:
                raise ValueError("DefaultStorageClass takes no name: it is whichever class the cluster marks default")
        elif not self.name:
            raise ValueError(f"a {self.kind} prerequisite needs its name")
        elif self.kind not in ("PodsMetric", "ExternalMetric"):
            names.dns_subdomain(self.name)
        if self.keys and self.kind not in ("Secret", "ConfigMap"):
            raise ValueError(f"keys apply to Secret and ConfigMap prerequisites, not {self.kind}")
        if self.namespace is not None and self.kind not in NAMESPACED:
            raise ValueError(f"{self.kind} is not namespaced: drop namespace")
        return self


class PriorityClassSpec(BaseModel):
    """A PriorityClass the stack brings (cluster-wide, applied server-side so stacks can share it)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Its name, as pods' priorityClassName.")
    value: int = Field(ge=-2147483648, le=1000000000, description="Priority; above 1e9 is reserved for the system.")
    preemption_policy: Literal["PreemptLowerPriority", "Never"] = Field(
        default="PreemptLowerPriority", description="Whether its pods may evict lower-priority pods.")
    description: str = Field(default="", description="Shown by kubectl describe priorityclass.")

    _check_name = field_validator("name")(names.dns_subdomain)

    def manifest_spec(self) -> dict[str, Any]:
        body: dict[str, Any] = {"value": self.value, "preemptionPolicy": self.preemption_policy,
                                "globalDefault": False}
        if self.description:
            body["description"] = self.description
        return body


@dataclass(frozen=True)
class Reference:
    """A name an object refers to, with where (the field path) it appears."""

    kind: str
    name: str
    namespace: str | None
    path: str
    key: str | None = None

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        key = f", key {self.key}" if self.key else ""
        what = "the cluster's default StorageClass" if self.kind == "DefaultStorageClass" else f"{where}{self.name}"
        return f"{self.kind} {what}{key}"


POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"), "StatefulSet": ("spec", "template"), "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"), "ReplicaSet": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def _dig(value: Any, *path: Any) -> Any:
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, (list, tuple)) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return None
    return value


def _pod_references(pod: Mapping[str, Any], namespace: str | None, base: str) -> list[Reference]:
    found: list[Reference] = []
    if (pc := pod.get("priorityClassName")):
        found.append(Reference("PriorityClass", pc, None, f"{base}.priorityClassName"))
    found.append(Reference("ServiceAccount", pod.get("serviceAccountName") or "default", namespace,
                           f"{base}.serviceAccountName"))
    for index, volume in enumerate(pod.get("volumes") or []):
        path = f"{base}.volumes[{index}]"
        if (secret := _dig(volume, "secret", "secretName")):
            found.append(Reference("Secret", secret, namespace, f"{path}.secret.secretName"))
        if (config_map := _dig(volume, "configMap", "name")):
            found.append(Reference("ConfigMap", config_map, namespace, f"{path}.configMap.name"))
        if (claim := _dig(volume, "persistentVolumeClaim", "claimName")):
            found.append(Reference("PersistentVolumeClaim", claim, namespace, f"{path}.persistentVolumeClaim.claimName"))
    for group in ("initContainers", "containers"):
        for index, container in enumerate(pod.get(group) or []):
            path = f"{base}.{group}[{index}]"
            for env_index, env in enumerate(container.get("env") or []):
                for source, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    ref = _dig(env, "valueFrom", source)
                    if isinstance(ref, Mapping) and ref.get("name") and not ref.get("optional"):
                        found.append(Reference(kind, ref["name"], namespace, f"{path}.env[{env_index}].valueFrom.{source}",
                                               ref.get("key")))
            for env_index, source in enumerate(container.get("envFrom") or []):
                for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    ref = source.get(field) if isinstance(source, Mapping) else None
                    if isinstance(ref, Mapping) and ref.get("name") and not ref.get("optional"):
                        found.append(Reference(kind, ref["name"], namespace, f"{path}.envFrom[{env_index}].{field}"))
    return found


def _storage_class(spec: Mapping[str, Any] | None, path: str) -> Reference:
    name = (spec or {}).get("storageClassName")
    return Reference("StorageClass", name, None, f"{path}.storageClassName") if name else \
        Reference("DefaultStorageClass", "", None, f"{path}.storageClassName")


def references_of(api_version: str, kind: str, body: Mapping[str, Any]) -> list[Reference]:
    """Every name ``body`` (a manifest) references in the cluster, with its field path."""
    namespace = _dig(body, "metadata", "namespace")
    found: list[Reference] = []
    if kind in POD_TEMPLATE_PATHS and isinstance(pod := _dig(body, *POD_TEMPLATE_PATHS[kind], "spec"), Mapping):
        found += _pod_references(pod, namespace, ".".join(POD_TEMPLATE_PATHS[kind]) + ".spec")
    if kind == "StatefulSet":
        for index, claim in enumerate(_dig(body, "spec", "volumeClaimTemplates") or []):
            found.append(_storage_class(claim.get("spec"), f"spec.volumeClaimTemplates[{index}].spec"))
    if kind == "PersistentVolumeClaim":
        found.append(_storage_class(body.get("spec"), "spec"))
    if kind == "Ingress" and (ingress_class := _dig(body, "spec", "ingressClassName")):
        found.append(Reference("IngressClass", ingress_class, None, "spec.ingressClassName"))
    if kind == "HorizontalPodAutoscaler":
        for index, metric in enumerate(_dig(body, "spec", "metrics") or []):
            path = f"spec.metrics[{index}]"
            if metric.get("type") == "Resource":
                found.append(Reference("APIService", RESOURCE_METRICS_API, None, path))
            elif metric.get("type") == "Pods":
                found.append(Reference("PodsMetric", _dig(metric, "pods", "metric", "name") or "", None,
                                       f"{path}.pods.metric.name"))
                found.append(Reference("APIService", CUSTOM_METRICS_API, None, path))
            elif metric.get("type") == "External":
                found.append(Reference("ExternalMetric", _dig(metric, "external", "metric", "name") or "", None,
                                       f"{path}.external.metric.name"))
                found.append(Reference("APIService", EXTERNAL_METRICS_API, None, path))
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    if group not in BUILT_IN_GROUPS:
        found.append(Reference("CustomResourceDefinition", f"{_plural(kind)}.{group}", None, "apiVersion"))
    return found


def _plural(kind: str) -> str:
    lower = kind.lower()
    return lower + ("es" if lower.endswith(("s", "x")) else "s")


@dataclass(frozen=True)
class Provided:
    """What resolves references: objects a stack creates, and what it declares."""

    names: frozenset[tuple[str, str, str | None]]  # (kind, name, namespace)
    keys: Mapping[tuple[str, str, str | None], frozenset[str] | None]  # None: keys unknown (e.g. masked)

    def resolves(self, reference: Reference) -> bool:
        if reference.name in WELL_KNOWN.get(reference.kind, set()):
            return True
        ident = (reference.kind, reference.name, reference.namespace)
        if ident not in self.names:
            return False
        known = self.keys.get(ident)
        return reference.key is None or known is None or reference.key in known


def provided_by(manifests: Iterable[tuple[str, Mapping[str, Any]]], declared: Iterable[Prerequisite],
                default_namespace: str | None) -> Provided:
    """Names created by ``manifests`` ((kind, body) pairs) or declared as prerequisites."""
    found: set[tuple[str, str, str | None]] = set()
    keys: dict[tuple[str, str, str | None], frozenset[str] | None] = {}
    for kind, body in manifests:
        name, namespace = _dig(body, "metadata", "name"), _dig(body, "metadata", "namespace")
        if not isinstance(name, str):
            continue
        ident = (kind, name, namespace if kind in NAMESPACED else None)
        found.add(ident)
        if kind in ("Secret", "ConfigMap"):
            data = {**(body.get("data") or {}), **(body.get("stringData") or {})} \
                if all(isinstance(body.get(f) or {}, Mapping) for f in ("data", "stringData")) else None
            keys[ident] = frozenset(data) if data is not None else None
        served = _dig(body, "metadata", "annotations", SERVES_PODS_METRICS)
        if kind == "ConfigMap" and isinstance(served, str):
            found.update(("PodsMetric", metric, None) for metric in served.split(",") if metric)
        if kind == "StorageClass" and _dig(body, "metadata", "annotations",
                                           "storageclass.kubernetes.io/is-default-class") == "true":
            found.add(("DefaultStorageClass", "", None))
    for item in declared:
        namespace = (item.namespace or default_namespace) if item.kind in NAMESPACED else None
        ident = (item.kind, item.name, namespace)
        found.add(ident)
        keys[ident] = frozenset(item.keys) if item.keys else keys.get(ident)
    return Provided(frozenset(found), keys)


def prerequisites_config_map_data(declared: list[Prerequisite]) -> dict[str, str]:
    """The data of the ConfigMap that carries the declared prerequisites (sorted, so renders are stable)."""
    items = sorted((p.model_dump(exclude_none=True) for p in declared), key=lambda d: json.dumps(d, sort_keys=True))
    return {PREREQUISITES_KEY: json.dumps(items, indent=2, sort_keys=True) + "\n"}


def declared_from_config_map(data: Mapping[str, Any]) -> list[Prerequisite]:
    return [Prerequisite.model_validate(item) for item in json.loads(str(data.get(PREREQUISITES_KEY) or "[]"))]
