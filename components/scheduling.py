"""Scheduling intent: spread, separate, tolerate. One place for each placement rule.

Also the *scheduling contract* that a GPU node pool hands to the workloads that run on it.
"""


from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Placement = Literal["required", "preferred"]

HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
POOL_LABEL = "ha-ai-stack/gpu-pool"
GPU_TOLERATION: dict[str, str] = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


class GpuSchedulingContract(BaseModel):
    """What a pod needs to land on a GPU pool, and only there.

    Produced by a GPU node pool; consumed by ``InferenceService(node_pool=...)``.
    """

    # Attribute docstrings are the descriptions, for pydantic and for the component provider's schema alike.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    pool_name: str
    """Name of the pool; also the value of the pool label."""
    node_selector: dict[str, str]
    """Labels every node of the pool carries."""
    tolerations: list[dict[str, str]] = Field(default_factory=lambda: [dict(GPU_TOLERATION)])
    """Taints of the pool's nodes, tolerated."""
    gpus_per_node: int | None = Field(default=None, ge=1)
    """GPUs on one node, when known."""
    gpu_model: str | None = None
    """GPU model, for example 'A10G', when known."""
    zones: list[str] = Field(default_factory=list)
    """Zones the pool spans, when known."""

    def get(self, key: str, default: Any = None) -> Any:
        """Read a field like a mapping key: how the component provider reads a complex output."""
        return getattr(self, key, default)

    @classmethod
    def for_pool(
        cls,
        pool_name: str,
        *,
        gpus_per_node: int | None = None,
        gpu_model: str | None = None,
        zones: list[str] | None = None,
        extra_node_labels: dict[str, str] | None = None,
    ) -> "GpuSchedulingContract":
        """The contract of a pool whose nodes carry the standard GPU and pool labels."""
        selector = {GPU_PRESENT_LABEL: "true", POOL_LABEL: pool_name, **(extra_node_labels or {})}
        return cls(
            pool_name=pool_name,
            node_selector=selector,
            gpus_per_node=gpus_per_node,
            gpu_model=gpu_model,
            zones=list(zones or []),
        )


def gpu_fit_problem(gpus: int, pool_name: str, gpus_per_node: int | None) -> str | None:
    """Why a pod asking for ``gpus`` cannot fit on one node of the pool, or None when it can (or is unknown)."""
    if gpus and gpus_per_node and gpus > gpus_per_node:
        return f"asks for {gpus} GPUs but a node of pool '{pool_name}' has {gpus_per_node}"
    return None


def separate(selector: dict[str, str], placement: Placement, topology: str = HOSTNAME) -> dict[str, Any]:
    """Pod anti-affinity: keep pods matching ``selector`` apart across ``topology`` domains."""
    term = {"labelSelector": {"matchLabels": dict(selector)}, "topologyKey": topology}
    if placement == "required":
        return {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    return {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]}


def spread(
    selector: dict[str, str],
    placement: Placement,
    topology: str = ZONE,
    *,
    min_domains: int | None = None,
    match_label_keys: list[str] | None = None,
) -> dict[str, Any]:
    """A topology spread constraint with maxSkew 1.

    ``nodeTaintsPolicy: Honor`` counts only nodes the pod tolerates, so zones that hold only other
    tainted nodes do not distort the skew. ``minDomains`` (only valid when required) makes the
    scheduler wait for nodes in every zone instead of packing replicas into the zones that exist.
    """
    constraint: dict[str, Any] = {
        "maxSkew": 1,
        "topologyKey": topology,
        "whenUnsatisfiable": "DoNotSchedule" if placement == "required" else "ScheduleAnyway",
        "labelSelector": {"matchLabels": dict(selector)},
        "nodeTaintsPolicy": "Honor",
    }
    if match_label_keys:
        constraint["matchLabelKeys"] = list(match_label_keys)
    if min_domains is not None and min_domains > 1 and placement == "required":
        constraint["minDomains"] = min_domains
    return constraint



def gpu_node_daemon_set_spec(selector: dict[str, str], labels: dict[str, str], container: dict[str, Any],
                             volumes: list[dict[str, Any]], extra_tolerations: list[dict[str, str]] | None = None
                             ) -> dict[str, Any]:
    """A system DaemonSet on every GPU node, and only there (the device plugin, dcgm-exporter): node-critical,
    no service-account token, the GPU taint tolerated, one node at a time on update."""
    return {
        "selector": {"matchLabels": dict(selector)},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "priorityClassName": "system-node-critical",
                "automountServiceAccountToken": False,
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]}]}]}}},
                "tolerations": [dict(GPU_TOLERATION), *(extra_tolerations or [])],
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
