"""Workload rules: replicas, disruption budgets, spread, autoscaling, probes, resources, GPUs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .library.scheduling import GPU_RESOURCE

from .catalog import Rule, setting
from .k8s import (
    HOSTNAME,
    HPA,
    PDB,
    REPLICATED,
    object_type,
    ZONE,
    dig,
    matches,
    namespace_of,
    object_name,
    replicas,
    workload_containers,
    workload_group,
    workload_pod,
)

MIN_REPLICAS = {"minReplicas": {"type": "integer", "minimum": 1, "default": 3}}
ZONE_SPREAD = {"requireZoneSpread": {"type": "boolean", "default": True}}


def _min_replicas(args: Any, report: Any) -> None:
    minimum = setting(args, "minReplicas", MIN_REPLICAS)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for resource in args.resources:
        if resource.resource_type in REPLICATED:
            totals[workload_group(resource.props)] += replicas(resource.props)
    for (namespace, group), total in sorted(totals.items()):
        if total < minimum:
            report(f"{namespace}/{group} runs {total} replicas; the tier needs at least {minimum}.")


def _disruption_allowed(pdb_spec: dict[str, Any], total: int) -> bool:
    """Can a drain evict one pod? A budget with neither field sets no floor (Kubernetes' disruption controller)."""
    if "maxUnavailable" in pdb_spec:
        value = pdb_spec["maxUnavailable"]
        return (int(value.removesuffix("%")) > 0) if isinstance(value, str) else int(value) > 0
    if "minAvailable" in pdb_spec:
        value = pdb_spec["minAvailable"]
        return int(value.removesuffix("%")) < 100 if isinstance(value, str) else int(value) < total
    return True


def _pdb_coverage(args: Any, report: Any) -> None:
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for resource in args.resources:
        if resource.resource_type in REPLICATED:
            groups[workload_group(resource.props)].append(resource)
    budgets = [r for r in args.resources if r.resource_type == PDB]
    for (namespace, group), members in sorted(groups.items()):
        total = sum(replicas(m.props) for m in members)
        if total < 2:
            continue
        for member in members:
            labels = dig(member.props, "spec", "template", "metadata", "labels") or {}
            covering = [b for b in budgets if namespace_of(b.props) == namespace
                        and matches(dig(b.props, "spec", "selector"), labels)]
            if not covering:
                report(f"{object_name(member.props)} has {total} replicas and no PodDisruptionBudget selects its pods.",
                       member.urn)
            elif not any(_disruption_allowed(b.props.get("spec") or {}, total) for b in covering):
                report(f"{object_name(member.props)}: its PodDisruptionBudget allows no disruption, so node "
                       f"drains block forever.", member.urn)


def _affinity_terms(pod: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    anti = dig(pod, "affinity", kind) or {}
    terms = list(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    terms += [t.get("podAffinityTerm", {}) for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    return terms


def _spreads_over(pod: dict[str, Any], topology: str) -> bool:
    if any(t.get("topologyKey") == topology for t in _affinity_terms(pod, "podAntiAffinity")):
        return True
    return any(c.get("topologyKey") == topology for c in pod.get("topologySpreadConstraints") or [])


def _pinned_to_one_zone(pod: dict[str, Any]) -> bool:
    """Zone-pinned groups (one StatefulSet per zone) spread by construction."""
    terms = dig(pod, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
                "nodeSelectorTerms") or []
    return any(e.get("key") == ZONE and e.get("operator") == "In" and len(e.get("values") or []) == 1
               for term in terms for e in term.get("matchExpressions") or [])


def _spread(args: Any, report: Any) -> None:
    if args.resource_type not in REPLICATED or replicas(args.props) < 2:
        return
    pod = dig(args.props, "spec", "template", "spec") or {}
    if not _spreads_over(pod, HOSTNAME):
        report(f"{object_name(args.props)}: no hostname anti-affinity or spread, so replicas can share a node.")
    if setting(args, "requireZoneSpread", ZONE_SPREAD) and not (_spreads_over(pod, ZONE) or _pinned_to_one_zone(pod)):
        report(f"{object_name(args.props)}: no zone spread, so one zone outage can take every replica.")


def _hpa_bounds(args: Any, report: Any) -> None:
    if args.resource_type != HPA:
        return
    spec = args.props.get("spec") or {}
    minimum, maximum = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
    floor = setting(args, "minReplicas", MIN_REPLICAS)
    if minimum < floor:
        report(f"{object_name(args.props)}: minReplicas {minimum} is below the tier minimum {floor}.")
    if maximum < minimum:
        report(f"{object_name(args.props)}: maxReplicas {maximum} is below minReplicas {minimum}.")


def _probes(args: Any, report: Any) -> None:
    if object_type(args.resource_type) not in REPLICATED | {"kubernetes:apps/v1:DaemonSet"}:
        return
    for container in (workload_pod(args) or {}).get("containers") or []:
        name = f"{object_name(args.props)} container {container.get('name')}"
        if container.get("ports"):
            missing = [p for p in ("readinessProbe", "livenessProbe") if p not in container]
            if missing:
                report(f"{name} serves traffic but has no {' or '.join(missing)}.")
        if dig(container, "resources", "limits", GPU_RESOURCE) and "startupProbe" not in container:
            report(f"{name} uses GPUs but has no startupProbe: liveness can kill it while the model loads.")


def _resources(args: Any, report: Any) -> None:
    for container in workload_containers(args):
        missing = [f"{field}.{resource}" for field in ("requests", "limits") for resource in ("cpu", "memory")
                   if dig(container, "resources", field, resource) is None]
        if missing:
            report(f"{object_name(args.props)} container {container.get('name')} has no {', '.join(missing)}.")


def _tolerates_gpu_taint(pod: dict[str, Any]) -> bool:
    for toleration in pod.get("tolerations") or []:
        effect_ok = toleration.get("effect") in (None, "", "NoSchedule")
        if toleration.get("operator") == "Exists" and not toleration.get("key") and effect_ok:
            return True
        if toleration.get("key") == GPU_RESOURCE and effect_ok:
            return True
    return False


def _gpu_count(value: Any) -> Any:
    """A GPU quantity as a number: 1, "1" and the engine's 1.0 (protobuf numbers are doubles) are one count."""
    try:
        return float(str(value))
    except ValueError:
        return value


def _gpu_scheduling(args: Any, report: Any) -> None:
    uses_gpus = False
    for container in workload_containers(args):
        requested = dig(container, "resources", "requests", GPU_RESOURCE)
        limited = dig(container, "resources", "limits", GPU_RESOURCE)
        if requested is None and limited is None:
            continue
        uses_gpus = True
        if _gpu_count(requested) != _gpu_count(limited):
            report(f"{object_name(args.props)} container {container.get('name')}: {GPU_RESOURCE} request "
                   f"{requested} differs from limit {limited}.")
    if uses_gpus and not _tolerates_gpu_taint(workload_pod(args) or {}):
        report(f"{object_name(args.props)} asks for GPUs but does not tolerate the {GPU_RESOURCE} NoSchedule taint.")


RULES = [
    Rule("workload-min-replicas", "Deployments and StatefulSets of one app run at least the tier's minimum replicas.",
         "raise replicas (or the HPA floor).",
         "Polaris deploymentMissingReplicas; Kyverno require-multiple-replicas", _min_replicas, stack=True,
         config=MIN_REPLICAS),
    Rule("pdb-coverage", "Every multi-replica workload is covered by a PodDisruptionBudget that allows a disruption.",
         "add a PDB with maxUnavailable: 1 selecting the pods.",
         "kube-score deployment-has-poddisruptionbudget; Polaris missingPodDisruptionBudget", _pdb_coverage,
         stack=True),
    Rule("pod-spread", "Replicas are kept apart by hostname, and by zone where the tier requires it.",
         "add hostname pod anti-affinity and a zone topologySpreadConstraint (or pin one StatefulSet per zone).",
         "kube-score deployment-has-host-podantiaffinity; Polaris topologySpreadConstraint", _spread,
         config=ZONE_SPREAD),
    Rule("hpa-bounds", "HorizontalPodAutoscalers keep minReplicas at the tier minimum and maxReplicas >= minReplicas.",
         "raise minReplicas / maxReplicas.", "Polaris hpaMinAvailability, hpaMaxAvailability", _hpa_bounds,
         config=MIN_REPLICAS),
    Rule("probes", "Serving containers have readiness and liveness probes; GPU containers have a startup probe.",
         "add the probes (for model servers, a startup probe sized for the model load).",
         "Polaris readinessProbeMissing, livenessProbeMissing; Kyverno require-pod-probes", _probes),
    Rule("resources-set", "Every container sets CPU and memory requests and limits.",
         "set resources.requests and resources.limits.",
         "Polaris cpuRequestsMissing et al.; kube-score container-resources; Kyverno require-requests-limits",
         _resources),
    Rule("gpu-scheduling", "nvidia.com/gpu requests equal limits, and GPU pods tolerate the GPU taint.",
         "set equal GPU requests and limits and tolerate nvidia.com/gpu:NoSchedule.", "none", _gpu_scheduling),
]
