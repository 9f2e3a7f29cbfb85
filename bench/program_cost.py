"""Cost of building the prod stack with the components vs a hand-written pulumi_kubernetes program.

Both run under the same mock runtime (ha_ai_stack_tools.capture), declare the same Kubernetes objects
(checked before timing), and are timed as median of RUNS runs, interleaved so drift hits both.
Usage: python bench/program_cost.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402
import pulumi_kubernetes as k8s  # noqa: E402

from ha_ai_stack_tools.capture import Project, capture_program  # noqa: E402
from ha_ai_stack_tools.render import manifests  # noqa: E402

NAMESPACE = "ai-serving"
IMAGE = "nvcr.io/nvidia/tritonserver:24.08-py3"
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]


def stack_config(services: int) -> dict[str, Any]:
    """The prod stack's shape with ``services`` Triton services on one A10G pool."""
    return {
        "haai:tier": "prod",
        "haai:kubernetes_version": "1.33",
        "haai:namespace": NAMESPACE,
        "haai:gpu_pools": [{"name": "gpu-a10g", "gpus_per_node": 4, "gpu_model": "A10G", "zones": ZONES}],
        "haai:inference": [
            {"name": f"svc-{i}", "image": IMAGE, "server": "triton", "resources": {"cpu": "8", "memory": "32Gi", "gpus": 1},
             "autoscaling": {"max_replicas": 12,
                             "metric": {"type": "pods", "name": "DCGM_FI_DEV_GPU_UTIL", "target_average_value": "70"}}}
            for i in range(services)
        ],
    }


def hand_written(services: int) -> None:
    """The same objects, declared directly: what a user would write without the components."""
    ns_labels = {"app.kubernetes.io/name": "bench", "app.kubernetes.io/instance": "bench",
                 "app.kubernetes.io/component": "namespace", "app.kubernetes.io/part-of": "ha-ai-stack",
                 "app.kubernetes.io/managed-by": "pulumi"}
    namespace = k8s.core.v1.Namespace("ns", metadata={"name": NAMESPACE, "labels": {
        **ns_labels, "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "restricted"}})
    k8s.networking.v1.NetworkPolicy("deny", metadata={"name": "default-deny", "namespace": NAMESPACE, "labels": ns_labels},
                                    spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    for i in range(services):
        name = f"svc-{i}"
        selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
        labels = {**selector, "app.kubernetes.io/component": "inference", "app.kubernetes.io/part-of": "ha-ai-stack",
                  "app.kubernetes.io/managed-by": "pulumi"}
        meta = {"name": name, "namespace": NAMESPACE, "labels": labels}
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta, automount_service_account_token=False)
        probe = {"periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3, "successThreshold": 1}
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata=meta, spec={
            "replicas": 3, "revisionHistoryLimit": 5, "progressDeadlineSeconds": 2400,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": name, "automountServiceAccountToken": False, "enableServiceLinks": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                                    "fsGroupChangePolicy": "OnRootMismatch",
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "terminationGracePeriodSeconds": 120,
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}]}},
                "topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": selector}, "nodeTaintsPolicy": "Honor",
                    "matchLabelKeys": ["pod-template-hash"], "minDomains": 3}],
                "nodeSelector": {"nvidia.com/gpu.present": "true", "ha-ai-stack/gpu-pool": "gpu-a10g"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [{
                    "name": "server", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"},
                              {"name": "metrics", "containerPort": 8002, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                                  "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                                        "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                        "capabilities": {"drop": ["ALL"]},
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "lifecycle": {"preStop": {"sleep": {"seconds": 15}}},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                     {"name": "model-cache", "mountPath": "/models"},
                                     {"name": "dshm", "mountPath": "/dev/shm"}],
                    "startupProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10,
                                     "timeoutSeconds": 5, "failureThreshold": 180, "successThreshold": 1},
                    "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, **probe},
                    "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, **probe,
                                      "periodSeconds": 10, "failureThreshold": 6},
                }],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                            {"name": "model-cache", "emptyDir": {"sizeLimit": "100Gi"}},
                            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}],
            }}}, opts=pulumi.ResourceOptions(depends_on=[sa, namespace], ignore_changes=["spec.replicas"],
                                             custom_timeouts=pulumi.CustomTimeouts(create="2400s", update="2400s")))
        k8s.core.v1.Service(f"{name}-service", metadata=meta, spec={
            "type": "ClusterIP", "selector": selector,
            "ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"},
                      {"name": "metrics", "port": 8002, "targetPort": "metrics", "protocol": "TCP"}]})
        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=meta, spec={
            "selector": {"matchLabels": selector}, "unhealthyPodEvictionPolicy": "AlwaysAllow", "maxUnavailable": 1})
        k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=meta, spec={
            "podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}],
                         "ports": [{"port": 8000, "protocol": "TCP"}, {"port": 8002, "protocol": "TCP"}]}],
            "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                 "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}]})
        k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-hpa", metadata=meta, spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 3, "maxReplicas": 12,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                           "averageUtilization": 70}}},
                {"type": "Pods", "pods": {"metric": {"name": "DCGM_FI_DEV_GPU_UTIL"},
                                          "target": {"type": "AverageValue", "averageValue": "70"}}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
                "scaleDown": {"stabilizationWindowSeconds": 600, "selectPolicy": "Min",
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]}}})


def components_program(services: int) -> tuple[Any, dict[str, Any]]:
    project = Project.load(ROOT)
    return project.run_program, stack_config(services)


def run(kind: str, services: int) -> tuple[float, list[dict[str, Any]]]:
    """One timed build; returns (seconds, manifests)."""
    if kind == "components":
        program, config = components_program(services)
    else:
        program, config = (lambda: hand_written(services)), {}
    started = time.perf_counter()
    capture = capture_program(program, project="ha-ai-stack", stack="prod", config=config)
    elapsed = time.perf_counter() - started
    return elapsed, manifests(capture)


def comparable(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Manifests with the namespace object's instance label ignored (stack name vs 'bench')."""
    return [m for m in objects if m["kind"] != "Namespace" and m["metadata"].get("name") != "default-deny"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 25, 50])
    options = parser.parse_args()

    for size in options.sizes:
        _, ours = run("components", size)
        _, theirs = run("hand-written", size)
        if comparable(ours) != comparable(theirs):
            raise SystemExit(f"the two programs declare different objects at {size} services: fix the baseline")
    run("components", 1)  # warm imports and caches outside the timed runs

    rows = []
    for size in options.sizes:
        timings: dict[str, list[float]] = {"components": [], "hand-written": []}
        for _ in range(options.runs):
            for kind in timings:
                timings[kind].append(run(kind, size)[0])
        ours, theirs = (statistics.median(timings[k]) for k in ("components", "hand-written"))
        rows.append((size, ours, theirs))

    base_per_service = rows[0][1] / rows[0][0]
    print(f"prod stack under mocks, median of {options.runs} runs (ms)")
    print(f"{'services':>8} | {'components':>10} | {'hand-written':>12} | {'ms/service':>10} | "
          f"{'ratio':>5} | {'per-service vs first':>20}")
    for size, ours, theirs in rows:
        per_service = ours / size
        print(f"{size:>8} | {ours * 1000:>10.1f} | {theirs * 1000:>12.1f} | {per_service * 1000:>10.2f} | "
              f"{ours / theirs:>5.2f} | {per_service / base_per_service:>19.2f}x")


if __name__ == "__main__":
    main()
