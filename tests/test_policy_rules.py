"""Each policy sub-check on small hand-built objects: a case that fires, with its exact message, and a close
case that must stay quiet, on both sides of every threshold.

test_policies.py proves the rules on the rendered stacks; this module reaches the branches a rendered stack
never takes (hostNetwork, a privileged container, a minAvailable budget, a named port, a namespaceSelector...).
The pack runs as the engine runs it (its own process, over gRPC), configured with every policy mandatory.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from google.protobuf import empty_pb2, json_format

from ha_ai_stack_tools.capture import CapturedResource
from ha_ai_stack_tools.policy_check import analyze, configure

from .conftest import policy_pack

NS = "shop"
HOST, ZONE_KEY = "kubernetes.io/hostname", "topology.kubernetes.io/zone"
Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def pack() -> Iterator[Any]:
    with policy_pack() as stub:
        yield stub


def resource(manifest: dict[str, Any]) -> CapturedResource:
    group_version = manifest["apiVersion"] if "/" in manifest["apiVersion"] else f"core/{manifest['apiVersion']}"
    token = f"kubernetes:{group_version}:{manifest['kind']}"
    name = manifest["metadata"]["name"]
    return CapturedResource(type_token=token, name=name, urn=f"urn:pulumi:t::p::{token}::{name}", parent="",
                            custom=True, inputs=manifest)


def findings(pack: Any, policy: str, objects: Objects, config: dict[str, Any] | None = None) -> list[str]:
    """The policy's messages; each one is also checked to be reported on the object its message starts with."""
    configure(pack, {"all": "mandatory", **(config or {})})
    found = [f for f in analyze(pack, [resource(o) for o in objects]) if f.policy == policy]
    for finding in found:  # messages start "<ns>/<name>..." or "<Kind> <ns>/<name>..."
        subjects = {word.rstrip(":") for word in finding.message.split(" ")[:2]}
        named = {o["metadata"]["name"] for o in objects if qualified_name(o) in subjects}
        if policy not in GROUP_POLICIES:
            assert not named or finding.resource in named, f"reported on {finding.resource}: {finding.message}"
    return [f.message for f in found]


# Policies about a workload group (every Deployment or StatefulSet of one app instance) report on the stack.
GROUP_POLICIES = {"workload-min-replicas"}


def qualified_name(manifest: dict[str, Any]) -> str:
    namespace, name = manifest["metadata"].get("namespace"), manifest["metadata"]["name"]
    return f"{namespace}/{name}" if namespace else name


def container(name: str = "server") -> dict[str, Any]:
    """A container that passes every rule."""
    probe = {"httpGet": {"path": "/health", "port": 8080}}
    return {"name": name, "image": "shop/web:1.4.2", "ports": [{"containerPort": 8080}],
            "readinessProbe": probe, "livenessProbe": probe,
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}


def deployment(name: str = "web", replicas: int | None = 3, instance: str | None = None) -> dict[str, Any]:
    """A Deployment that passes every rule (spread by hostname and zone)."""
    labels = {"app.kubernetes.io/name": name, **({"app.kubernetes.io/instance": instance} if instance else {})}
    selector = {"matchLabels": {"app.kubernetes.io/name": name}}
    spec: dict[str, Any] = {"selector": selector, "template": {"metadata": {"labels": labels}, "spec": {
        "containers": [container()],
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": HOST, "labelSelector": selector}]}},
        "topologySpreadConstraints": [{"topologyKey": ZONE_KEY, "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule",
                                       "labelSelector": selector}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS,
                                                                          "labels": labels}, "spec": spec}


def budget(name: str = "web", namespace: str = NS, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}, **spec}}


def unnamespaced(manifest: dict[str, Any]) -> dict[str, Any]:
    """The object as a manifest without metadata.namespace (the API server puts it in "default")."""
    del manifest["metadata"]["namespace"]
    return manifest


def pod_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def web(change: Callable[[dict[str, Any]], Any]) -> Objects:
    """The passing Deployment with one change to its pod spec."""
    manifest = deployment()
    change(pod_of(manifest))
    return [manifest]


def web_container(change: Callable[[dict[str, Any]], Any]) -> Objects:
    return web(lambda pod: change(pod["containers"][0]))


def context(**fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda c: c["securityContext"].update(fields)


def changed(manifest: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    manifest = copy.deepcopy(manifest)
    change(manifest)
    return manifest


def without(*path: str) -> Callable[[dict[str, Any]], None]:
    def change(value: dict[str, Any]) -> None:
        for key in path[:-1]:
            value = value[key]
        del value[path[-1]]
    return change


def root_only_at_pod_level(pod: dict[str, Any]) -> None:
    del pod["containers"][0]["securityContext"]["runAsNonRoot"]
    pod["securityContext"] = {"runAsNonRoot": True}


def seccomp_at_pod_level(pod: dict[str, Any]) -> None:
    del pod["containers"][0]["securityContext"]["seccompProfile"]
    pod["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}


def init_container_as_root(pod: dict[str, Any]) -> None:
    init = container("fetch")
    init["securityContext"]["runAsNonRoot"] = False
    pod["initContainers"] = [init]


WHO = f"{NS}/web"
RESTRICTED: list[tuple[str, Objects, list[str]]] = [
    ("hostNetwork", web(lambda p: p.update(hostNetwork=True)), [f"{WHO}: hostNetwork is true."]),
    ("hostPID", web(lambda p: p.update(hostPID=True)), [f"{WHO}: hostPID is true."]),
    ("hostIPC", web(lambda p: p.update(hostIPC=True)), [f"{WHO}: hostIPC is true."]),
    ("no namespace", [unnamespaced(web(lambda p: p.update(hostPID=True))[0])], ["web: hostPID is true."]),
    ("hostNetwork false", web(lambda p: p.update(hostNetwork=False, hostPID=False, hostIPC=False)), []),
    ("hostPath", web(lambda p: p.update(volumes=[{"name": "data", "hostPath": {"path": "/data"}}])),
     [f"{WHO}: volume data is a hostPath."]),
    ("emptyDir", web(lambda p: p.update(volumes=[{"name": "data", "emptyDir": {}}])), []),
    ("root", web_container(context(runAsNonRoot=False)),
     [f"{WHO}: container server may run as root (runAsNonRoot is not true)."]),
    ("runAsNonRoot unset", web_container(without("securityContext", "runAsNonRoot")),
     [f"{WHO}: container server may run as root (runAsNonRoot is not true)."]),
    ("runAsNonRoot from the pod", web(root_only_at_pod_level), []),
    ("root init container", web(init_container_as_root),
     [f"{WHO}: container fetch may run as root (runAsNonRoot is not true)."]),
    ("escalation unset", web_container(without("securityContext", "allowPrivilegeEscalation")),
     [f"{WHO}: container server allows privilege escalation."]),
    ("privileged", web_container(context(privileged=True)), [f"{WHO}: container server is privileged."]),
    ("not privileged", web_container(context(privileged=False)), []),
    ("drops NET_RAW only", web_container(context(capabilities={"drop": ["NET_RAW"]})),
     [f"{WHO}: container server does not drop ALL capabilities."]),
    ("drops nothing", web_container(without("securityContext", "capabilities")),
     [f"{WHO}: container server does not drop ALL capabilities."]),
    ("drops ALL and adds none", web_container(context(capabilities={"drop": ["NET_RAW", "ALL"]})), []),
    ("seccomp Unconfined", web_container(context(seccompProfile={"type": "Unconfined"})),
     [f"{WHO}: container server has no RuntimeDefault seccomp profile."]),
    ("no seccomp", web_container(without("securityContext", "seccompProfile")),
     [f"{WHO}: container server has no RuntimeDefault seccomp profile."]),
    ("seccomp Localhost", web_container(context(seccompProfile={"type": "Localhost"})), []),
    ("seccomp from the pod", web(seccomp_at_pod_level), []),
    ("no securityContext at all", web_container(without("securityContext")), [
        f"{WHO}: container server may run as root (runAsNonRoot is not true).",
        f"{WHO}: container server allows privilege escalation.",
        f"{WHO}: container server does not drop ALL capabilities.",
        f"{WHO}: container server has no RuntimeDefault seccomp profile."]),
]


@pytest.mark.parametrize(("case", "objects", "expected"), RESTRICTED, ids=[c[0] for c in RESTRICTED])
def test_pod_security_restricted(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "pod-security-restricted", objects) == expected


def test_restricted_exemption_is_by_namespace_and_name(pack: Any) -> None:
    objects = web(lambda p: p.update(hostPID=True))
    assert findings(pack, "pod-security-restricted", objects, {
        "pod-security-restricted": {"allowedWorkloads": [WHO]}}) == []
    assert findings(pack, "pod-security-restricted", objects, {
        "pod-security-restricted": {"allowedWorkloads": ["other/web"]}}) == [f"{WHO}: hostPID is true."]


def gpu(pod: dict[str, Any], request: Any = "1", limit: Any = "1", tolerations: Any = None) -> None:
    resources = pod["containers"][0]["resources"]
    if request is not None:
        resources["requests"]["nvidia.com/gpu"] = request
    if limit is not None:
        resources["limits"]["nvidia.com/gpu"] = limit
    pod["containers"][0]["startupProbe"] = {"httpGet": {"path": "/health", "port": 8080}}
    if tolerations is not None:
        pod["tolerations"] = tolerations


GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
UNTOLERATED = f"{WHO} asks for GPUs but does not tolerate the nvidia.com/gpu NoSchedule taint."
GPU_CASES: list[tuple[str, Objects, list[str]]] = [
    ("GPU taint tolerated", web(lambda p: gpu(p, tolerations=[GPU_TAINT])), []),
    ("int request equals string limit", web(lambda p: gpu(p, request=1, limit="1", tolerations=[GPU_TAINT])), []),
    ("request 2, limit 1", web(lambda p: gpu(p, request="2", tolerations=[GPU_TAINT])),
     [f"{WHO} container server: nvidia.com/gpu request 2 differs from limit 1."]),
    ("limit only", web(lambda p: gpu(p, request=None, tolerations=[GPU_TAINT])),
     [f"{WHO} container server: nvidia.com/gpu request None differs from limit 1."]),
    ("no toleration", web(lambda p: gpu(p)), [UNTOLERATED]),
    ("tolerates every taint", web(lambda p: gpu(p, tolerations=[{"operator": "Exists"}])), []),
    ("tolerates every NoSchedule taint", web(lambda p: gpu(p, tolerations=[{"operator": "Exists",
                                                                              "effect": "NoSchedule"}])), []),
    ("tolerates every NoExecute taint", web(lambda p: gpu(p, tolerations=[{"operator": "Exists",
                                                                             "effect": "NoExecute"}])), [UNTOLERATED]),
    ("tolerates another key", web(lambda p: gpu(p, tolerations=[{"key": "dedicated", "operator": "Exists"}])),
     [UNTOLERATED]),
    ("GPU key with an empty effect", web(lambda p: gpu(p, tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists",
                                                                        "effect": ""}])), []),
    ("GPU key, NoExecute only", web(lambda p: gpu(p, tolerations=[{**GPU_TAINT, "effect": "NoExecute"}])),
     [UNTOLERATED]),
    ("no GPUs, no toleration", [deployment()], []),
]


@pytest.mark.parametrize(("case", "objects", "expected"), GPU_CASES, ids=[c[0] for c in GPU_CASES])
def test_gpu_scheduling(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "gpu-scheduling", objects) == expected


def daemon_set(change: Callable[[dict[str, Any]], Any]) -> Objects:
    manifest = {**deployment(), "kind": "DaemonSet"}
    del manifest["spec"]["replicas"]
    change(pod_of(manifest)["containers"][0])
    return [manifest]


def job(change: Callable[[dict[str, Any]], Any]) -> Objects:
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "web", "namespace": NS},
                "spec": {"template": {"spec": {"containers": [container()], "restartPolicy": "Never"}}}}
    change(pod_of(manifest)["containers"][0])
    return [manifest]


PROBE_CASES: list[tuple[str, Objects, list[str]]] = [
    ("no liveness", web_container(without("livenessProbe")),
     [f"{WHO} container server serves traffic but has no livenessProbe."]),
    ("no probes", web_container(lambda c: [c.pop("livenessProbe"), c.pop("readinessProbe")]),
     [f"{WHO} container server serves traffic but has no readinessProbe or livenessProbe."]),
    ("no ports, no probes", web_container(lambda c: [c.pop(k) for k in ("livenessProbe", "readinessProbe", "ports")]),
     []),
    ("DaemonSet without readiness", daemon_set(without("readinessProbe")),
     [f"{WHO} container server serves traffic but has no readinessProbe."]),
    ("Job without probes", job(lambda c: [c.pop("livenessProbe"), c.pop("readinessProbe")]), []),
    ("GPU without startup probe", web_container(lambda c: c["resources"]["limits"].update({"nvidia.com/gpu": "1"})),
     [f"{WHO} container server uses GPUs but has no startupProbe: liveness can kill it while the model loads."]),
    ("GPU with startup probe", web_container(lambda c: [c["resources"]["limits"].update({"nvidia.com/gpu": "1"}),
                                                        c.update(startupProbe={"exec": {"command": ["true"]}})]), []),
]


@pytest.mark.parametrize(("case", "objects", "expected"), PROBE_CASES, ids=[c[0] for c in PROBE_CASES])
def test_probes(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "probes", objects) == expected


RESOURCE_CASES: list[tuple[str, Objects, list[str]]] = [
    ("no CPU request", web_container(without("resources", "requests", "cpu")),
     [f"{WHO} container server has no requests.cpu."]),
    ("no limits", web_container(without("resources", "limits")),
     [f"{WHO} container server has no limits.cpu, limits.memory."]),
    ("nothing set", web_container(without("resources")),
     [f"{WHO} container server has no requests.cpu, requests.memory, limits.cpu, limits.memory."]),
    ("Job without memory limit", job(without("resources", "limits", "memory")),
     [f"{WHO} container server has no limits.memory."]),
    ("all four set", [deployment()], []),
]


@pytest.mark.parametrize(("case", "objects", "expected"), RESOURCE_CASES, ids=[c[0] for c in RESOURCE_CASES])
def test_resources_set(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "resources-set", objects) == expected


def secret_env(**variable: Any) -> Objects:
    return web_container(lambda c: c.update(env=[variable]))


SECRET_CASES: list[tuple[str, Objects, list[str]]] = [
    ("literal password", secret_env(name="DB_PASSWORD", value="x"), [
        f"{WHO} container server: env DB_PASSWORD carries a literal value; read it from a Secret "
        "(valueFrom.secretKeyRef)."]),
    ("password from a Secret", secret_env(name="DB_PASSWORD",
                                          valueFrom={"secretKeyRef": {"name": "db", "key": "password"}}), []),
    ("literal non-secret", secret_env(name="LOG_LEVEL", value="info"), []),
]


@pytest.mark.parametrize(("case", "objects", "expected"), SECRET_CASES, ids=[c[0] for c in SECRET_CASES])
def test_no_literal_secret_env(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "no-literal-secret-env", objects) == expected


def test_a_container_without_an_image(pack: Any) -> None:
    assert findings(pack, "image-pinned", web_container(lambda c: c.pop("image"))) == [
        f"{WHO} container server: image '' is not a valid image reference."]


def test_image_digest_setting(pack: Any) -> None:
    by_tag = [deployment()]
    by_digest = web_container(lambda c: c.update(image="shop/web@sha256:" + "a" * 64))
    digests = {"image-pinned": {"requireDigest": True}}
    assert findings(pack, "image-pinned", by_tag) == []
    assert findings(pack, "image-pinned", by_tag, digests) == [
        f"{WHO} container server: image 'shop/web:1.4.2' is pinned by tag only; this tier requires a digest."]
    assert findings(pack, "image-pinned", by_digest, digests) == []


# -- replicas, budgets, spread, autoscaling ---------------------------------------------------------------------


def test_min_replicas_adds_up_one_application(pack: Any) -> None:
    def app(*replicas: int | None) -> Objects:
        return [deployment(f"web-{i}", r, instance="shop") for i, r in enumerate(replicas)]

    expected = [f"{NS}/shop runs 2 replicas; the tier needs at least 3."]
    assert findings(pack, "workload-min-replicas", app(1, 2)) == []
    assert findings(pack, "workload-min-replicas", app(1, 1)) == expected
    assert findings(pack, "workload-min-replicas", app(1, None)) == expected  # a missing field is 1 replica
    assert findings(pack, "workload-min-replicas", app(1, 1), {"workload-min-replicas": {"minReplicas": 2}}) == []
    # Without an instance label, the workload is its own application, named after itself.
    assert findings(pack, "workload-min-replicas", [deployment("web", 2)]) == [
        f"{NS}/web runs 2 replicas; the tier needs at least 3."]


UNCOVERED = f"{WHO} has 3 replicas and no PodDisruptionBudget selects its pods."
BLOCKED = f"{WHO}: its PodDisruptionBudget allows no disruption, so node drains block forever."
PDB_CASES: list[tuple[str, Objects, list[str]]] = [
    ("maxUnavailable 1", [deployment(), budget(maxUnavailable=1)], []),
    ("maxUnavailable 0", [deployment(), budget(maxUnavailable=0)], [BLOCKED]),
    ("maxUnavailable 0%", [deployment(), budget(maxUnavailable="0%")], [BLOCKED]),
    ("maxUnavailable 1%", [deployment(), budget(maxUnavailable="1%")], []),
    ("minAvailable 2 of 3", [deployment(), budget(minAvailable=2)], []),
    ("minAvailable 3 of 3", [deployment(), budget(minAvailable=3)], [BLOCKED]),
    ("minAvailable 99%", [deployment(), budget(minAvailable="99%")], []),
    ("minAvailable 100%", [deployment(), budget(minAvailable="100%")], [BLOCKED]),
    ("budget with neither field", [deployment(), budget()], []),
    ("no budget", [deployment()], [UNCOVERED]),
    ("budget in another namespace", [deployment(), budget(namespace="other", maxUnavailable=1)], [UNCOVERED]),
    ("budget selects other pods", [deployment(), {**budget(maxUnavailable=1), "spec": {
        "maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "api"}}}}], [UNCOVERED]),
    ("one blocking and one allowing budget", [deployment(), budget("a", minAvailable=3), budget("b", maxUnavailable=1)],
     []),
    *[(f"budget selects by {operator} {values or ''}".strip() + f" on {key}",
       [deployment(), {**budget(maxUnavailable=1), "spec": {"maxUnavailable": 1, "selector": {"matchExpressions": [
           {"key": key, "operator": operator, **({"values": values} if values else {})}]}}}],
       [] if covers else [UNCOVERED])
      for operator, key, values, covers in [
          ("In", "app.kubernetes.io/name", ["api", "web"], True), ("In", "app.kubernetes.io/name", ["api"], False),
          ("NotIn", "app.kubernetes.io/name", ["api"], True), ("NotIn", "app.kubernetes.io/name", ["web"], False),
          ("Exists", "app.kubernetes.io/name", None, True), ("Exists", "team", None, False),
          ("DoesNotExist", "team", None, True), ("DoesNotExist", "app.kubernetes.io/name", None, False)]],
    ("one replica needs no budget", [deployment(replicas=1)], []),
    ("two replicas need one", [deployment(replicas=2)], [f"{WHO} has 2 replicas and no PodDisruptionBudget selects "
                                                         "its pods."]),
]


@pytest.mark.parametrize(("case", "objects", "expected"), PDB_CASES, ids=[c[0] for c in PDB_CASES])
def test_pdb_coverage(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "pdb-coverage", objects) == expected


SHARES_NODE = f"{WHO}: no hostname anti-affinity or spread, so replicas can share a node."
SHARES_ZONE = f"{WHO}: no zone spread, so one zone outage can take every replica."


def zone_pinned(operator: str, *zones: str) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        pod["topologySpreadConstraints"] = []
        pod["affinity"]["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": ZONE_KEY, "operator": operator, "values": list(zones)}]}]}}
    return change


def spread_by_constraints_only(pod: dict[str, Any]) -> None:
    del pod["affinity"]
    pod["topologySpreadConstraints"].append({"topologyKey": HOST, "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"})


def soft_anti_affinity(topology: str) -> Callable[[dict[str, Any]], None]:
    return lambda pod: pod.update(topologySpreadConstraints=[], affinity={"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
            "topologyKey": topology}}]}})


SPREAD_CASES: list[tuple[str, Objects, list[str]]] = [
    ("spread both ways", [deployment()], []),
    ("nothing", web(lambda p: p.update(affinity={}, topologySpreadConstraints=[])), [SHARES_NODE, SHARES_ZONE]),
    ("one replica", [{**deployment(replicas=1), "spec": {**deployment(replicas=1)["spec"], "template": {
        "metadata": {}, "spec": {"containers": [container()]}}}}], []),
    ("two replicas, nothing", [changed(deployment(replicas=2), lambda d: pod_of(d).update(
        affinity={}, topologySpreadConstraints=[]))], [SHARES_NODE, SHARES_ZONE]),
    ("hostname by constraint", web(spread_by_constraints_only), []),
    ("soft hostname anti-affinity", web(soft_anti_affinity(HOST)), [SHARES_ZONE]),
    ("soft zone anti-affinity", web(soft_anti_affinity(ZONE_KEY)), [SHARES_NODE]),
    ("pinned to one zone", web(zone_pinned("In", "us-east-1a")), []),
    ("pinned to two zones", web(zone_pinned("In", "us-east-1a", "us-east-1b")), [SHARES_ZONE]),
    ("kept out of one zone", web(zone_pinned("NotIn", "us-east-1a")), [SHARES_ZONE]),
]


@pytest.mark.parametrize(("case", "objects", "expected"), SPREAD_CASES, ids=[c[0] for c in SPREAD_CASES])
def test_pod_spread(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "pod-spread", objects) == expected


def test_zone_spread_is_a_tier_setting(pack: Any) -> None:
    objects = web(lambda p: p.update(topologySpreadConstraints=[]))
    assert findings(pack, "pod-spread", objects) == [SHARES_ZONE]
    assert findings(pack, "pod-spread", objects, {"pod-spread": {"requireZoneSpread": False}}) == []


def autoscaler(**spec: Any) -> Objects:
    return [{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
             "metadata": {"name": "web", "namespace": NS},
             "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, **spec}}]


HPA_CASES: list[tuple[str, Objects, list[str]]] = [
    ("3 to 3", autoscaler(minReplicas=3, maxReplicas=3), []),
    ("2 to 3", autoscaler(minReplicas=2, maxReplicas=3), [f"{WHO}: minReplicas 2 is below the tier minimum 3."]),
    ("no floor", autoscaler(maxReplicas=3), [f"{WHO}: minReplicas 1 is below the tier minimum 3."]),
    ("4 to 3", autoscaler(minReplicas=4, maxReplicas=3), [f"{WHO}: maxReplicas 3 is below minReplicas 4."]),
]


@pytest.mark.parametrize(("case", "objects", "expected"), HPA_CASES, ids=[c[0] for c in HPA_CASES])
def test_hpa_bounds(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "hpa-bounds", objects) == expected


# -- networking and Redis -------------------------------------------------------------------------------------------


def network_policy(name: str, namespace: str = NS, selector: dict[str, Any] | None = None,
                   types: tuple[str, ...] = ("Ingress", "Egress"), **rules: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": {} if selector is None else selector, "policyTypes": list(types), **rules}}


DENY_CASES: list[tuple[str, Objects, list[str]]] = [
    ("default deny", [deployment(), network_policy("deny")], []),
    ("no policy", [deployment()], [f"namespace {NS} runs workloads but has no default-deny NetworkPolicy."]),
    ("egress-only deny", [deployment(), network_policy("deny", types=("Egress",))],
     [f"namespace {NS} runs workloads but has no default-deny NetworkPolicy."]),
    ("deny in another namespace", [deployment(), network_policy("deny", namespace="other")],
     [f"namespace {NS} runs workloads but has no default-deny NetworkPolicy."]),
    ("selects some pods only", [deployment(), network_policy("deny", selector={"matchLabels": {"a": "b"}})],
     [f"namespace {NS} runs workloads but has no default-deny NetworkPolicy."]),
    ("allows egress", [deployment(), network_policy("deny", egress=[{}])],
     [f"namespace {NS} runs workloads but has no default-deny NetworkPolicy."]),
    ("no workloads", [network_policy("deny", namespace="other")], []),
    ("no namespace means default", [unnamespaced(deployment()), network_policy("deny", namespace="default")], []),
    ("nothing in default", [unnamespaced(deployment())],
     ["namespace default runs workloads but has no default-deny NetworkPolicy."]),
]


@pytest.mark.parametrize(("case", "objects", "expected"), DENY_CASES, ids=[c[0] for c in DENY_CASES])
def test_namespace_default_deny(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "namespace-default-deny", objects) == expected


REDIS_CONF = "cluster-enabled yes\nappendonly yes\n"
CONFIG = "redis-config"


def redis_config(shards: int = 3, replicas: int = 1, conf: str = REDIS_CONF) -> dict[str, Any]:
    """Members are redis-<zone letter>-<shard>: shard s's master in zone a, its replicas in zones b, c..."""
    zones = "abc"
    lines = ["# shard role hostname"] + [
        f"{shard} {'master' if member == 0 else 'replica'} redis-{zones[member]}-{shard}.redis.{NS}.svc"
        for shard in range(shards) for member in range(replicas + 1)]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG, "namespace": NS},
            "data": {"redis.conf": conf, "topology.txt": "\n".join(lines) + "\n"}}


def redis_set(zone: str, shards: int = 3, zone_values: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One StatefulSet per zone, pinned there, its password from a Secret and its data on a PVC."""
    secret = {"valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}}}
    labels = {"app.kubernetes.io/name": "redis"}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": f"redis-{zone}", "namespace": NS},
            "spec": {"replicas": shards, "selector": {"matchLabels": labels},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "resources": {"requests": {"storage": "10Gi"}}}}],
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "redis", "env": [{"name": "REDIS_PASSWORD", **secret}]}],
                         "volumes": [{"name": "run", "emptyDir": {}}, {"name": "config", "configMap": {"name": CONFIG}}],
                         "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                             "nodeSelectorTerms": [{"matchExpressions": [{
                                 "key": ZONE_KEY, "operator": "In",
                                 "values": list(zone_values or (f"us-east-1{zone}",))}]}]}}}}}}}


def redis(config: dict[str, Any] | None = None, sets: Objects | None = None) -> Objects:
    return [config or redis_config(), *(sets if sets is not None else [redis_set("a"), redis_set("b")])]


def literal_password(sts: dict[str, Any]) -> None:
    sts["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "REDIS_PASSWORD", "value": "x"}]


def second_container_without_secret(sts: dict[str, Any]) -> None:
    sts["spec"]["template"]["spec"]["containers"].append(
        {"name": "exporter", "env": [{"name": "REDIS_PASSWORD", "value": "x"}]})


C = f"{NS}/{CONFIG}"
REDIS_CASES: list[tuple[str, Objects, list[str]]] = [
    ("3 shards, 1 replica each, 2 zones", redis(), []),
    ("2 shards", redis(redis_config(shards=2)),
     [f"{C}: 2 masters; a Redis Cluster needs at least 3 to keep a failover quorum."]),
    ("no replicas", redis(redis_config(replicas=0), [redis_set("a")]), [
        f"{C}: shard 0 has 0 replicas; the tier needs 1.", f"{C}: shard 1 has 0 replicas; the tier needs 1.",
        f"{C}: shard 2 has 0 replicas; the tier needs 1."]),
    ("AOF off", redis(redis_config(conf="cluster-enabled yes\nappendonly no\n")),
     [f"{C}: appendonly is off, so a restart loses every write since the last snapshot."]),
    ("AOF commented out", redis(redis_config(conf="cluster-enabled yes\n# appendonly yes\n")),
     [f"{C}: appendonly is off, so a restart loses every write since the last snapshot."]),
    ("not a cluster", redis(redis_config(shards=1, replicas=0, conf="appendonly no\n")), []),
    ("no PVC", redis(sets=[changed(redis_set("a"), lambda s: s["spec"].pop("volumeClaimTemplates")),
                           redis_set("b")]),
     [f"{NS}/redis-a: Redis data is not on a PersistentVolumeClaim."]),
    ("literal password", redis(sets=[redis_set("a"), changed(redis_set("b"), literal_password)]),
     [f"{NS}/redis-b: Redis auth must come from a Secret (REDIS_PASSWORD via secretKeyRef in every container)."]),
    ("one container without the Secret", redis(sets=[changed(redis_set("a"), second_container_without_secret),
                                                     redis_set("b")]),
     [f"{NS}/redis-a: Redis auth must come from a Secret (REDIS_PASSWORD via secretKeyRef in every container)."]),
    ("password from a ConfigMap", redis(sets=[changed(redis_set("a"), lambda s: s["spec"]["template"]["spec"][
        "containers"][0].update(env=[{"name": "REDIS_PASSWORD", "valueFrom": {"configMapKeyRef": {
            "name": "redis", "key": "password"}}}])), redis_set("b")]),
     [f"{NS}/redis-a: Redis auth must come from a Secret (REDIS_PASSWORD via secretKeyRef in every container)."]),
    ("no password at all", redis(sets=[changed(redis_set("a"), lambda s: s["spec"]["template"]["spec"][
        "containers"][0].update(env=[])), redis_set("b")]),
     [f"{NS}/redis-a: Redis auth must come from a Secret (REDIS_PASSWORD via secretKeyRef in every container)."]),
    ("a StatefulSet of another ConfigMap is not checked",
     redis(sets=[redis_set("a"), redis_set("b"), changed(redis_set("c"), lambda s: [
         s["spec"].pop("volumeClaimTemplates"),
         s["spec"]["template"]["spec"].update(volumes=[{"name": "run", "emptyDir": {}}])])]), []),
    ("both zones the same", redis(sets=[redis_set("a"), redis_set("b", zone_values=("us-east-1a",))]), [
        f"{C}: members of shard 0 share a zone (redis-a-0, redis-b-0).",
        f"{C}: members of shard 1 share a zone (redis-a-1, redis-b-1).",
        f"{C}: members of shard 2 share a zone (redis-a-2, redis-b-2)."]),
    ("only the first two ordinals pinned apart", redis(sets=[redis_set("a"), redis_set("b", shards=2)]), []),
]


@pytest.mark.parametrize(("case", "objects", "expected"), REDIS_CASES, ids=[c[0] for c in REDIS_CASES])
def test_redis_cluster_ha(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "redis-cluster-ha", objects) == expected


def test_redis_replica_floor_is_a_tier_setting(pack: Any) -> None:
    no_replicas = redis(redis_config(replicas=0), [redis_set("a")])
    assert findings(pack, "redis-cluster-ha", no_replicas, {"redis-cluster-ha": {"minReplicasPerShard": 0}}) == []
    assert findings(pack, "redis-cluster-ha", redis(), {"redis-cluster-ha": {"minReplicasPerShard": 2}}) == [
        f"{C}: shard {s} has 1 replicas; the tier needs 2." for s in range(3)]


CLIENT = {"ha-ai-stack/redis-client": "true"}
REDIS_PODS = {"matchLabels": {"app.kubernetes.io/name": "redis"}}


def redis_client() -> dict[str, Any]:
    manifest = deployment()
    manifest["spec"]["template"]["metadata"]["labels"].update(CLIENT)
    pod_of(manifest)["containers"][0]["env"] = [{"name": "REDIS_CLUSTER_NODES", "value": "redis:6379"}]
    return manifest


def reach(client_egress: list[dict[str, Any]], redis_ingress: list[dict[str, Any]],
          client: dict[str, Any] | None = None) -> Objects:
    """A client and a Redis Cluster in NS, each with one policy holding the given rules."""
    return [client or redis_client(), *redis(),
            network_policy("web", selector={"matchLabels": {"app.kubernetes.io/name": "web"}}, egress=client_egress),
            network_policy("redis", selector=REDIS_PODS, ingress=redis_ingress)]


TO_REDIS = {"to": [{"podSelector": REDIS_PODS}], "ports": [{"port": 6379, "protocol": "TCP"}]}
FROM_CLIENTS = {"from": [{"podSelector": {"matchLabels": CLIENT}}], "ports": [{"port": 6379, "protocol": "TCP"}]}
NO_EGRESS = f"{WHO}: its NetworkPolicies block egress to Redis on 6379 (an outage)."
NO_INGRESS = f"{WHO}: Redis' NetworkPolicies block ingress from it on 6379 (an outage)."
THIS_NAMESPACE = {"matchLabels": {"kubernetes.io/metadata.name": NS}}
REACH_CASES: list[tuple[str, Objects, list[str]]] = [
    ("both directions open", reach([TO_REDIS], [FROM_CLIENTS]), []),
    ("no egress rule", reach([], [FROM_CLIENTS]), [NO_EGRESS]),
    ("no ingress rule", reach([TO_REDIS], []), [NO_INGRESS]),
    ("egress to another port", reach([{**TO_REDIS, "ports": [{"port": 6380}]}], [FROM_CLIENTS]), [NO_EGRESS]),
    ("egress on a named port only", reach([{**TO_REDIS, "ports": [{"port": "redis"}]}], [FROM_CLIENTS]), [NO_EGRESS]),
    ("egress on every port", reach([{"to": TO_REDIS["to"]}], [FROM_CLIENTS]), []),
    ("egress on every TCP port", reach([{**TO_REDIS, "ports": [{"protocol": "TCP"}]}], [FROM_CLIENTS]), []),
    ("egress to everyone on 6379", reach([{"ports": TO_REDIS["ports"]}], [FROM_CLIENTS]), []),
    ("egress to an IP block only", reach([{**TO_REDIS, "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
                                         [FROM_CLIENTS]), [NO_EGRESS]),
    ("egress to other pods", reach([{**TO_REDIS, "to": [{"podSelector": {"matchLabels": {"a": "b"}}}]}],
                                   [FROM_CLIENTS]), [NO_EGRESS]),
    ("egress to Redis by this namespace's selector",
     reach([{**TO_REDIS, "to": [{"podSelector": REDIS_PODS, "namespaceSelector": THIS_NAMESPACE}]}], [FROM_CLIENTS]),
     []),
    ("egress to Redis in another namespace's selector",
     reach([{**TO_REDIS, "to": [{"podSelector": REDIS_PODS, "namespaceSelector": {"matchLabels": {
         "kubernetes.io/metadata.name": "other"}}}]}], [FROM_CLIENTS]), [NO_EGRESS]),
    ("ingress from clients lacking the label",
     reach([TO_REDIS], [FROM_CLIENTS], client=changed(redis_client(), lambda d: d["spec"]["template"]["metadata"][
         "labels"].pop("ha-ai-stack/redis-client"))), [NO_INGRESS]),
]


@pytest.mark.parametrize(("case", "objects", "expected"), REACH_CASES, ids=[c[0] for c in REACH_CASES])
def test_inference_reaches_redis(pack: Any, case: str, objects: Objects, expected: list[str]) -> None:
    assert findings(pack, "inference-reaches-redis", objects) == expected


def test_unselected_pods_are_open_and_policy_types_count(pack: Any) -> None:
    client, cluster = redis_client(), redis()
    assert findings(pack, "inference-reaches-redis", [client, *cluster]) == []  # no policy selects either side
    ingress_only = network_policy("web", selector={"matchLabels": {"app.kubernetes.io/name": "web"}},
                                  types=("Ingress",))
    assert findings(pack, "inference-reaches-redis", [client, *cluster, ingress_only]) == []
    elsewhere = network_policy("web", namespace="other", egress=[])
    assert findings(pack, "inference-reaches-redis", [client, *cluster, elsewhere]) == []


def test_a_redis_client_without_a_cluster(pack: Any) -> None:
    other = changed(redis_client(), lambda d: d["metadata"].update(name="api"))
    assert findings(pack, "inference-reaches-redis", [redis_client(), other]) == [
        f"{WHO} is configured for Redis but no Redis Cluster runs in {NS}.",
        f"{NS}/api is configured for Redis but no Redis Cluster runs in {NS}."]
    assert findings(pack, "inference-reaches-redis", [deployment()]) == []  # not a Redis client


def test_what_the_pack_tells_the_engine_about_each_policy() -> None:
    """The analyzer info the CLI shows and validates --policy-pack-config against: mandatory by default, the
    remediation, the equivalents as tags, and each setting's schema. A new pack, so that building it is this
    test's own work."""
    with policy_pack() as stub:
        info = {p.name: p for p in stub.GetAnalyzerInfo(empty_pb2.Empty()).policies}
    assert {p.enforcementLevel for p in info.values()} == {1}  # ADVISORY=0, MANDATORY=1 in analyzer.proto
    restricted = info["pod-security-restricted"]
    assert restricted.remediation_steps == ("set the restricted securityContext; list a justified system DaemonSet "
                                            "in allowedWorkloads.")
    assert list(restricted.tags) == ["Kyverno pod-security restricted",
                                     "Polaris runAsRootAllowed, privilegeEscalationAllowed", "checkov CKV_K8S_20/23/28"]
    assert list(info["gpu-scheduling"].tags) == []  # "none": no equivalent elsewhere
    schema = json_format.MessageToDict(info["workload-min-replicas"].configSchema.properties)
    assert json.loads(json.dumps(schema)) == {"minReplicas": {"type": "integer", "minimum": 1, "default": 3}}
    assert not info["probes"].HasField("configSchema")


def prerequisites(namespace: str, *declared: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ha-ai-stack-prerequisites",
                                                                "namespace": namespace},
            "data": {"prerequisites.json": json.dumps(list(declared))}}


def reads_secret(name: str) -> dict[str, Any]:
    return changed(deployment(), lambda d: pod_of(d)["containers"][0].update(env=[{"name": "DB_PASSWORD", "valueFrom": {
        "secretKeyRef": {"name": name, "key": "password"}}}]))


def test_references_resolve_against_the_declared_prerequisites(pack: Any) -> None:
    db = {"kind": "Secret", "name": "db", "keys": ["password"], "reason": "the platform team's database"}
    assert findings(pack, "references-resolve", [prerequisites(NS, db), reads_secret("db")]) == []
    # Another ConfigMap elsewhere does not move where prerequisites without a namespace live.
    elsewhere = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "other"},
                 "data": {}}
    assert findings(pack, "references-resolve", [prerequisites(NS, db), elsewhere, reads_secret("db")]) == []
    assert findings(pack, "references-resolve", [prerequisites(NS, db), reads_secret("cache")]) == [
        f"Deployment {WHO}: spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef names Secret {NS}/cache, "
        "key password, which the stack does not create and no prerequisite declares."]


def test_a_custom_resource_needs_its_crd(pack: Any) -> None:
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "web", "namespace": NS}, "spec": {"endpoints": [{"port": "metrics"}]}}
    crd = {"kind": "CustomResourceDefinition", "name": "servicemonitors.monitoring.coreos.com", "reason": "prometheus"}
    assert findings(pack, "references-resolve", [monitor]) == [
        f"ServiceMonitor {WHO}: apiVersion names CustomResourceDefinition servicemonitors.monitoring.coreos.com, which "
        "the stack does not create and no prerequisite declares."]
    assert findings(pack, "references-resolve", [monitor, prerequisites(NS, crd)]) == []
