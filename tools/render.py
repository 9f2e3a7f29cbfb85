"""Turn a capture into Kubernetes manifests (deterministic files) and a short HA summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .capture import Capture

HEADER = "# Rendered by haai from the Pulumi program under mocks. Secrets are masked.\n"
# Apply order, so a directory of files reads top-down like a deployment.
KIND_ORDER = ["Namespace", "ServiceAccount", "Secret", "ConfigMap", "NetworkPolicy", "Service",
              "PersistentVolumeClaim", "StatefulSet", "Deployment", "DaemonSet", "Job", "CronJob",
              "HorizontalPodAutoscaler", "PodDisruptionBudget"]


def manifests(capture: Capture) -> list[dict[str, Any]]:
    """Every Kubernetes object of the capture, in a stable order (kind, namespace, name)."""
    objects = [
        r.inputs for r in capture.resources
        if r.custom and r.type_token.startswith("kubernetes:") and "kind" in r.inputs
    ]
    return sorted(objects, key=object_key)


def object_key(manifest: dict[str, Any]) -> tuple[int, str, str, str]:
    kind = manifest["kind"]
    metadata = manifest.get("metadata", {})
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return rank, kind, metadata.get("namespace", ""), metadata.get("name", "")


def file_name(manifest: dict[str, Any]) -> str:
    metadata = manifest.get("metadata", {})
    return f"{metadata.get('namespace', '_cluster')}.{manifest['kind'].lower()}.{metadata['name']}.yaml"


def to_yaml(manifest: dict[str, Any]) -> str:
    """One manifest as YAML; keys sorted so equal objects are equal bytes."""
    return HEADER + yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False, width=1000)


class OutputDirError(Exception):
    """The output folder cannot take this render as it is (a file, or most of it would be deleted)."""


def stale_files(objects: list[dict[str, Any]], out_dir: Path) -> tuple[list[Path], int]:
    """Files an earlier render wrote for objects that are gone, and how many rendered files there are."""
    wanted = {file_name(m) for m in objects}
    ours = [path for path in sorted(out_dir.glob("*.yaml")) if path.read_text(errors="replace").startswith(HEADER)]
    return [path for path in ours if path.name not in wanted], len(ours)


def write_manifests(objects: list[dict[str, Any]], out_dir: Path, *, prune: bool = False) -> list[Path]:
    """Write one file per object; remove files an earlier render wrote that no longer exist.

    Checks first and writes nothing when it cannot finish: a file where the folder should be, or a
    render that would shrink the folder by deleting more than half of the manifests already there
    (usually the wrong stack, or a config that lost its services) unless ``prune`` says that is intended.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputDirError(f"{out_dir} is a file, not a folder: choose another --out")
    stale, existing = stale_files(objects, out_dir) if out_dir.is_dir() else ([], 0)
    if not prune and len(stale) * 2 > existing and len(objects) < existing:
        raise OutputDirError(f"this render would delete {len(stale)} of the {existing} manifests in {out_dir} "
                             f"(e.g. {stale[0].name}); nothing was written. Check the stack and its config, or "
                             f"pass --prune if the objects are really gone")
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {file_name(m): to_yaml(m) for m in objects}
    for path in stale:
        path.unlink()
    paths = []
    for name, text in wanted.items():
        path = out_dir / name
        path.write_text(text)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class SummaryRow:
    kind: str
    name: str
    replicas: str
    features: str


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _workload_features(manifest: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    spec = manifest["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    namespace = manifest["metadata"].get("namespace")
    features = []
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    if anti:
        features.append("anti-affinity:" + ("hard" if "requiredDuringSchedulingIgnoredDuringExecution" in anti
                                            else "soft"))
    node_terms = (pod.get("affinity", {}).get("nodeAffinity", {})
                  .get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", []))
    zones = [v for term in node_terms for e in term.get("matchExpressions", [])
             if e["key"] == "topology.kubernetes.io/zone" for v in e.get("values", [])]
    if zones:
        features.append("pinned:" + ",".join(zones))
    for constraint in pod.get("topologySpreadConstraints", []):
        strength = "hard" if constraint["whenUnsatisfiable"] == "DoNotSchedule" else "soft"
        features.append(f"{constraint['topologyKey'].rsplit('/', 1)[-1]}-spread:{strength}")
    probes = [p for p in ("startupProbe", "readinessProbe", "livenessProbe")
              if all(p in c for c in pod["containers"])]
    if probes:
        features.append("probes:" + "/".join(p.removesuffix("Probe") for p in probes))
    rolling = spec.get("strategy", {}).get("rollingUpdate")
    if rolling:
        features.append(f"rollout:surge={rolling.get('maxSurge')},unavailable={rolling.get('maxUnavailable')}")
    gpus = sum(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) for c in pod["containers"])
    if gpus:
        features.append(f"gpu:{gpus}")
    for other in objects:
        if other.get("metadata", {}).get("namespace") != namespace:
            continue
        if other["kind"] == "PodDisruptionBudget" and _selects(other["spec"]["selector"].get("matchLabels", {}), pod_labels):
            key = "maxUnavailable" if "maxUnavailable" in other["spec"] else "minAvailable"
            features.append(f"pdb:{key}={other['spec'][key]}")
        if other["kind"] == "HorizontalPodAutoscaler" and other["spec"]["scaleTargetRef"]["name"] == manifest["metadata"]["name"]:
            features.append(f"hpa:{other['spec']['minReplicas']}-{other['spec']['maxReplicas']}")
    return features


def summary(objects: list[dict[str, Any]]) -> list[SummaryRow]:
    """One row per object: kind, namespace/name, replicas, and the HA features it has."""
    rows = []
    for manifest in objects:
        metadata = manifest.get("metadata", {})
        name = f"{metadata['namespace']}/{metadata['name']}" if "namespace" in metadata else metadata["name"]
        replicas, features = "", []
        if manifest["kind"] in ("Deployment", "StatefulSet"):
            replicas = str(manifest["spec"].get("replicas", ""))
            features = _workload_features(manifest, objects)
        rows.append(SummaryRow(manifest["kind"], name, replicas, ", ".join(features)))
    return rows
