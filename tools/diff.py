"""``haai diff``: what a change does to each stack, field by field, with the risky changes flagged.

Both sides are rendered by ``revisions.py``; this module decides what changed and what is risky. Secrets are
masked by the capture, so they cannot reach any output.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .revisions import snapshots

ABSENT = None  # a field on one side only: its value on the other side


def _dig(value: Any, *keys: str) -> Any:
    """Follow ``keys`` through nested dicts; None where one is missing (rendered inputs are JSON objects)."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def kind_of(label: str) -> str:
    """The kind a resource label starts with ("Deployment ns/name" -> "Deployment")."""
    return label.partition(" ")[0]


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ResourceDiff:
    resource: str
    status: str  # added | removed | changed
    changes: list[FieldChange] = field(default_factory=list)


@dataclass(frozen=True)
class Risk:
    resource: str
    why: str


@dataclass
class StackDiff:
    stack: str
    resources: list[ResourceDiff]
    risks: list[Risk]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.resources)


# --- comparing -----------------------------------------------------------------------------------

def resource_label(resource: dict[str, Any]) -> str:
    inputs = resource["inputs"]
    if resource["type"].startswith("kubernetes:") and "kind" in inputs:
        metadata = inputs.get("metadata") or {}
        where = f"{metadata['namespace']}/" if "namespace" in metadata else ""
        # Without metadata.name the provider names the object at create time; the logical name is what we know.
        return f"{inputs['kind']} {where}{metadata.get('name', resource['name'])}"
    return f"{resource['type'].rpartition(':')[2]} {resource['name']}"


def _named(items: list[Any]) -> dict[str, Any] | None:
    """A list of dicts with unique names, keyed by name (containers, env, ports, volumes)."""
    if items and all(isinstance(i, dict) and "name" in i for i in items):
        names = [str(i["name"]) for i in items]
        if len(set(names)) == len(names):
            return dict(zip(names, items))
    return None


def field_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[FieldChange] = []
        for key in sorted(set(old) | set(new)):
            changes += field_changes(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return changes
    if isinstance(old, list) and isinstance(new, list):
        old_named, new_named = _named(old), _named(new)
        if old_named is not None and new_named is not None:
            changes = []
            for name in list(old_named) + [n for n in new_named if n not in old_named]:
                changes += field_changes(old_named.get(name), new_named.get(name), f"{path}[{name}]")
            return changes
        if len(old) == len(new):
            return [c for i, (a, b) in enumerate(zip(old, new)) for c in field_changes(a, b, f"{path}[{i}]")]
    return [] if old == new else [FieldChange(path, old, new)]


def diff_resources(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> list[ResourceDiff]:
    """Resources keyed as Pulumi keys them: type and logical name."""
    old = {(r["type"], r["name"]): r for r in base}
    new = {(r["type"], r["name"]): r for r in head}
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            diffs.append(ResourceDiff(resource_label(new[key]), "added"))
        elif key not in new:
            diffs.append(ResourceDiff(resource_label(old[key]), "removed"))
        else:
            changes = field_changes(old[key]["inputs"], new[key]["inputs"])
            if changes:
                diffs.append(ResourceDiff(resource_label(new[key]), "changed", changes))
    return diffs


# --- risks ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Replacement:
    """A change a provider carries out by replacing the resource, and why that matters here."""

    kind: str  # the label's kind: a Kubernetes kind, or the type's name for other providers
    fields: tuple[str, ...]  # changed-field prefixes that force the replacement
    why: str
    source: str  # the provider behaviour the row follows


# One table for every replacement `haai diff` knows, each row cited to the provider's behaviour. A Kubernetes
# object whose metadata.name stays the same is replaced delete-first (the provider cannot create a second object
# with its name); so is an EKS node group with a fixed node_group_name.
REPLACEMENTS: tuple[Replacement, ...] = (
    Replacement("Deployment", ("spec.selector",), "the selector is immutable; every replica stops",
                "Kubernetes apps/v1: spec.selector is immutable; pulumi-kubernetes replaces on immutable fields"),
    Replacement("StatefulSet", ("spec.selector", "spec.volumeClaimTemplates", "spec.serviceName",
                                "spec.podManagementPolicy"),
                "an immutable field: every member stops at once",
                "Kubernetes apps/v1: only replicas, template, updateStrategy, ordinals, minReadySeconds and "
                "persistentVolumeClaimRetentionPolicy may change"),
    Replacement("PersistentVolumeClaim", ("spec.storageClassName", "spec.accessModes", "spec.volumeName"),
                "an immutable field: the claim, and its data, are made again",
                "Kubernetes core/v1: a bound claim's spec is immutable except resources.requests"),
    Replacement("Job", ("spec.template", "spec.selector"), "the Job template is immutable: the Job runs again",
                "Kubernetes batch/v1: spec.template is immutable once created"),
    Replacement("ConfigMap", ("data", "binaryData"), "its data changed: pods that mount it lose it until the new one "
                "exists", "pulumi-kubernetes replaces ConfigMaps on a data change unless enableConfigMapMutable"),
    Replacement("Secret", ("data", "stringData", "type"), "its data changed: pods that read it fail to start until "
                "the new one exists", "pulumi-kubernetes replaces Secrets on a data change unless enableSecretMutable"),
    Replacement("StorageClass", ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"),
                "an immutable field (a server-side apply of it fails instead)",
                "Kubernetes storage.k8s.io/v1: these fields are immutable"),
    Replacement("PriorityClass", ("value",), "value is immutable (a server-side apply of it fails instead)",
                "Kubernetes scheduling.k8s.io/v1: value is immutable"),
    Replacement("NodeGroup", ("instanceTypes", "capacityType", "amiType", "subnetIds", "nodeGroupName", "nodeRoleArn",
                              "clusterName", "diskSize", "remoteAccess"),
                "every GPU node of the pool goes before new ones exist",
                "pulumi-aws (terraform aws_eks_node_group): these arguments force a new resource"),
    Replacement("Role", ("name", "path"), "pods assuming it lose their AWS access until the new role exists",
                "pulumi-aws (aws_iam_role): name and path force a new resource"),
    Replacement("Addon", ("addonName", "clusterName"), "the add-on (EBS CSI: new volumes) is missing meanwhile",
                "pulumi-aws (aws_eks_addon): addon_name and cluster_name force a new resource"),
)


def _delete_first(kind: str, before: dict[str, Any], after: dict[str, Any]) -> bool:
    """A replacement that must delete the old resource before making the new one (the name is taken)."""
    if "kind" in after["inputs"]:
        # Without metadata.name the provider autonames the object, so the new one can be made first.
        name = _dig(after["inputs"], "metadata", "name")
        return name is not None and name == _dig(before["inputs"], "metadata", "name")
    return kind == "NodeGroup" and bool(after["inputs"].get("nodeGroupName"))


def replacement_risks(diff: ResourceDiff, before: dict[str, Any], after: dict[str, Any]) -> list[Risk]:
    """The replacements a changed resource goes through (both sides exist)."""
    kind = kind_of(diff.resource)
    risks = []
    for rule in REPLACEMENTS:
        paths = sorted({c.path for c in diff.changes if rule.kind == kind and c.path.startswith(rule.fields)})
        if paths:
            how = ("replaced DELETE-FIRST (the name is taken, so it is gone until the new one is up)"
                   if _delete_first(kind, before, after) else "replaced (the new one is made first)")
            risks.append(Risk(diff.resource, f"{how}: {rule.why} ({', '.join(paths[:3])})"))
    return risks


def _by_label(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {resource_label(r): r for r in resources}


def _topology(resources: list[dict[str, Any]]) -> tuple[int, int] | None:
    """(masters, fewest replicas of a shard) from a Redis ConfigMap's topology.txt."""
    for resource in resources:
        text = resource["inputs"].get("data", {}).get("topology.txt") if resource["inputs"].get("kind") == "ConfigMap" \
            else None
        if text:
            shards: dict[str, int] = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    shard, role, _ = line.split()
                    shards[shard] = shards.get(shard, 0) + (role == "replica")
            return len(shards), min(shards.values())
    return None


def _component(resource: dict[str, Any]) -> str | None:
    """The component label of a CronJob's pods (what the job runs)."""
    return _dig(resource["inputs"], "spec", "jobTemplate", "spec", "template", "metadata", "labels",
                "app.kubernetes.io/component")


def _zones_of(resource: dict[str, Any]) -> int | None:
    inputs = resource["inputs"]
    if resource["type"] == "aws:eks/nodeGroup:NodeGroup":
        return len(inputs.get("subnetIds") or [])
    if inputs.get("kind") == "NodePool":
        requirements = _dig(inputs, "spec", "template", "spec", "requirements") or []
        return len({v for r in requirements if r.get("key") == "topology.kubernetes.io/zone" for v in r.get("values", [])})
    return None


def risks(base: list[dict[str, Any]], head: list[dict[str, Any]], min_replicas: int,
          diffs: list[ResourceDiff]) -> list[Risk]:
    old, new = _by_label(base), _by_label(head)
    found: list[Risk] = []
    old_by_name = {(r["type"], r["name"]): r for r in base}
    for diff in diffs:
        kind = kind_of(diff.resource)
        after = new.get(diff.resource)
        before = old_by_name.get((after["type"], after["name"])) if after else old.get(diff.resource)
        if diff.status == "changed":
            found += replacement_risks(diff, before, after)
        if diff.status == "removed" and kind in ("StatefulSet", "PersistentVolumeClaim"):
            found.append(Risk(diff.resource, "removed: its data goes with it (volumes are orphaned or deleted)"))
        if diff.status == "removed" and kind == "PodDisruptionBudget":
            found.append(Risk(diff.resource, "PodDisruptionBudget removed: a drain may take every replica at once"))
        if diff.status == "changed" and kind == "StatefulSet" and any(
                c.path.startswith("spec.template") for c in diff.changes):
            found.append(Risk(diff.resource, "pod template changed: every member restarts, one at a time, zone "
                                             "after zone (expect brief handovers; watch the balance Job)"))
        if diff.status == "removed" and kind == "CronJob" and _component(before) == "redis-backup":
            found.append(Risk(diff.resource, "Redis backups stop: no new backup is taken after this update (the "
                                             "existing ones stay in S3)"))
        if kind == "RandomPassword" and diff.status in ("changed", "removed"):
            found.append(Risk(diff.resource, "the Redis password is replaced: an outage unless members and clients "
                                             "restart together"))
    for label, resource in new.items():
        before = old.get(label)
        if before is None:
            continue
        kind = resource["inputs"].get("kind")
        field_path = {"Deployment": "replicas", "HorizontalPodAutoscaler": "minReplicas"}.get(kind)
        if field_path:
            was, now = _dig(before["inputs"], "spec", field_path), _dig(resource["inputs"], "spec", field_path)
            if isinstance(was, int) and isinstance(now, int) and now < was and now < min_replicas:
                found.append(Risk(label, f"{field_path} {was} -> {now}, below the tier minimum {min_replicas}"))
        if resource["type"] == "aws:eks/nodeGroup:NodeGroup":
            was = _dig(before["inputs"], "scalingConfig", "minSize")
            now = _dig(resource["inputs"], "scalingConfig", "minSize")
            if isinstance(was, int) and isinstance(now, int) and now < was:
                found.append(Risk(label, f"GPU pool min size {was} -> {now}: less guaranteed GPU capacity"))
        was_zones, now_zones = _zones_of(before), _zones_of(resource)
        if was_zones is not None and now_zones is not None and now_zones < was_zones:
            found.append(Risk(label, f"GPU pool zones reduced ({was_zones} -> {now_zones}): a zone outage takes more"))
    old_topology, new_topology = _topology(base), _topology(head)
    if old_topology and new_topology:
        if new_topology[0] < old_topology[0]:
            found.append(Risk("Redis Cluster", f"shards {old_topology[0]} -> {new_topology[0]}: the removed shards' "
                                               f"slots must be migrated first, or their keys are lost (the "
                                               f"bootstrap Job refuses; see the README's manual procedure)"))
        if new_topology[1] < old_topology[1]:
            found.append(Risk("Redis Cluster", f"replicas per shard {old_topology[1]} -> {new_topology[1]}: "
                                               f"a node or zone loss can now lose a shard"))
    return found


def tier_min_replicas(project_root: Path, tier: str | None) -> int:
    """The tier minimum from the policy pack's tier config (the one place it is set)."""
    path = project_root / "policies" / "config" / f"{tier}.json"
    if tier and path.is_file():
        return int(json.loads(path.read_text()).get("workload-min-replicas", {}).get("minReplicas", 1))
    return 1


def diff_stacks(project_root: Path, base: str, stacks: list[str]) -> list[StackDiff]:
    base_side, head_side = snapshots(project_root, base, stacks)
    result = []
    for stack in stacks:
        old, new = base_side[stack]["resources"], head_side[stack]["resources"]
        diffs = diff_resources(old, new)
        minimum = tier_min_replicas(project_root, head_side[stack].get("tier"))
        result.append(StackDiff(stack, diffs, risks(old, new, minimum, diffs)))
    return result


# --- formats -------------------------------------------------------------------------------------

def show(value: Any, limit: int = 120) -> str:
    text = "(absent)" if value is ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_text(diffs: list[StackDiff]) -> str:
    symbols = {"added": "+", "removed": "-", "changed": "~"}
    lines = []
    for stack in diffs:
        lines.append(f"stack {stack.stack}: {stack.count('added')} added, {stack.count('changed')} changed, "
                     f"{stack.count('removed')} removed, {len(stack.risks)} risky")
        for risk in stack.risks:
            lines.append(f"  ! {risk.resource}: {risk.why}")
        for resource in stack.resources:
            lines.append(f"  {symbols[resource.status]} {resource.resource}")
            lines += [f"      {c.path}: {show(c.old)} -> {show(c.new)}" for c in resource.changes]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def as_markdown(diffs: list[StackDiff], base: str) -> str:
    lines = [f"## haai diff against `{base}`", "", "| stack | added | changed | removed | risky |",
             "|---|---|---|---|---|"]
    lines += [f"| {s.stack} | {s.count('added')} | {s.count('changed')} | {s.count('removed')} | {len(s.risks)} |"
              for s in diffs]
    for stack in diffs:
        if not stack.resources and not stack.risks:
            continue
        lines += ["", f"### {stack.stack}"]
        if stack.risks:
            lines += ["", "**Risky changes**", ""]
            lines += [f"- :warning: `{r.resource}`: {_cell(r.why)}" for r in stack.risks]
        for resource in stack.resources:
            lines += ["", f"<details><summary>{resource.status}: <code>{resource.resource}</code> "
                          f"({len(resource.changes)} fields)</summary>", ""]
            if resource.changes:
                lines += ["| field | old | new |", "|---|---|---|"]
                lines += [f"| `{_cell(c.path)}` | `{_cell(show(c.old))}` | `{_cell(show(c.new))}` |"
                          for c in resource.changes]
            lines += ["", "</details>"]
    return "\n".join(lines)


def as_json(diffs: list[StackDiff]) -> str:
    return json.dumps([asdict(d) for d in diffs], indent=2, sort_keys=True)
