"""``haai preflight`` against a live-cluster stand-in: a small Kubernetes API on loopback.

The stand-in serves only the endpoints preflight calls, with objects shaped like the real API's: every
object it serves is first validated strictly against the official schemas (kubernetes-validate), except
the custom-metrics MetricValueList, which those schemas do not cover. Each check has a passing and a
failing case.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from ha_ai_stack.config import validate_stack_config
from ha_ai_stack_tools.cluster_preflight import cluster_preflight

from .conftest import PROJECT_ROOT, haai
from .schemas import validate_object

NS = "ai-serving"
KUBERNETES_VERSION = "1.33"


def meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, **({"namespace": namespace} if namespace else {}), **extra}


def secret(name: str, keys: list[str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta(name, NS), "type": "Opaque",
            "data": {key: "dmFsdWU=" for key in keys}}


def storage_class(name: str, binding: str, default: bool = False) -> dict[str, Any]:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta(name, annotations=annotations),
            "provisioner": "ebs.csi.aws.com", "volumeBindingMode": binding, "reclaimPolicy": "Delete"}


def api_service(name: str, available: bool) -> dict[str, Any]:
    group, version = name.split(".", 1)[1], name.split(".", 1)[0]
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": meta(name),
            "spec": {"group": group, "version": version, "groupPriorityMinimum": 100, "versionPriority": 100,
                     "service": {"name": "adapter", "namespace": "monitoring"}},
            "status": {"conditions": [{"type": "Available", "status": "True" if available else "False",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z",
                                       "reason": "Passed" if available else "FailedDiscoveryCheck",
                                       "message": "all checks passed" if available else "no endpoints"}]}}


def crd(name: str) -> dict[str, Any]:
    plural, group = name.split(".", 1)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": meta(name),
            "spec": {"group": group, "scope": "Cluster", "names": {"plural": plural, "kind": plural.title()},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object"}}}]},
            "status": {"conditions": [{"type": "Established", "status": "True",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "InitialNamesAccepted",
                                       "message": "the initial names have been accepted"}],
                       "acceptedNames": {"plural": plural, "kind": plural.title()}, "storedVersions": ["v1"]}}


def node(name: str, labels: dict[str, str], tainted: bool) -> dict[str, Any]:
    taints = [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}] if tainted else []
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta(name, labels=labels), "spec": {"taints": taints}}


class FakeCluster:
    """Objects by API path; the handler serves them, lists filtered by labelSelector."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.nodes: list[dict[str, Any]] = []
        self.storage_classes: list[dict[str, Any]] = []
        self.metrics: dict[str, dict[str, Any]] = {}
        self.forbidden: set[str] = set()  # paths answered 403, as RBAC would
        self.token: str | None = None  # when set, requests without it are answered 401, as the API server does

    def put(self, path: str, body: dict[str, Any]) -> None:
        validate_object(body, KUBERNETES_VERSION)  # honest shapes: the official schema, strictly
        self.objects[path] = body

    def add_node(self, body: dict[str, Any]) -> None:
        validate_object(body, KUBERNETES_VERSION)
        self.nodes.append(body)

    def add_storage_class(self, body: dict[str, Any]) -> None:
        validate_object(body, KUBERNETES_VERSION)
        self.storage_classes.append(body)
        self.objects[f"/apis/storage.k8s.io/v1/storageclasses/{body['metadata']['name']}"] = body

    def answer(self, raw_path: str, authorization: str | None = None) -> tuple[int, dict[str, Any]]:
        url = urlparse(raw_path)
        if self.token and authorization != f"Bearer {self.token}":
            return 401, {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                         "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
        if url.path.rstrip("/") == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "abc", "gitTreeState": "clean",
                         "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
                         "platform": "linux/amd64"}
        if url.path == "/api/v1/nodes":
            wanted = dict(part.split("=", 1) for part in parse_qs(url.query).get("labelSelector", [""])[0].split(",")
                          if "=" in part)
            items = [n for n in self.nodes if wanted.items() <= n["metadata"].get("labels", {}).items()]
            return 200, {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items}
        if url.path == "/apis/storage.k8s.io/v1/storageclasses":
            return 200, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClassList", "metadata": {},
                         "items": self.storage_classes}
        if url.path in self.forbidden:
            return 403, {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                         "message": f"{url.path} is forbidden", "reason": "Forbidden", "code": 403}
        body = self.objects.get(url.path) or self.metrics.get(url.path)
        if body is None:
            return 404, {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                         "message": f"{url.path} not found", "reason": "NotFound", "code": 404}
        return 200, body


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, str]]:
    fake = FakeCluster()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            status, body = fake.answer(self.path, self.headers.get("Authorization"))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def api(host: str, token: str | None = None) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = host
    if token:  # as a kubeconfig user token arrives: the BearerToken auth setting
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def config_with(prerequisites: list[dict[str, Any]], pools: list[dict[str, Any]] | None = None) -> Any:
    return validate_stack_config({"tier": "dev", "namespace": NS, "prerequisites": prerequisites,
                                  "gpu_pools": pools or []})


def statuses(checks: list[Any]) -> dict[tuple[str, str], str]:
    return {(c.subject, c.check): c.status for c in checks}


def test_unreachable_cluster_is_one_line() -> None:
    checks = cluster_preflight(config_with([{"kind": "Secret", "name": "hf", "reason": "r"}]), api("http://127.0.0.1:9"))
    assert [(c.subject, c.check, c.status) for c in checks] == [("cluster", "reachable", "unknown")]
    assert checks[0].detail.startswith("cannot reach the cluster: ") and "port=9" in checks[0].detail


@pytest.mark.parametrize(("error", "detail"), [
    (TimeoutError(), "TimeoutError"),  # no message: the error's type says what happened
    (ConnectionResetError("reset by peer\nsecond line"), "reset by peer"),
    (OSError("x" * 250), "x" * 200),
])
def test_an_unreachable_cluster_is_said_in_one_short_line(monkeypatch: pytest.MonkeyPatch, error: OSError,
                                                          detail: str) -> None:
    def refuse(self: Any) -> None:
        raise error

    monkeypatch.setattr(client.VersionApi, "get_code", refuse)
    [check] = cluster_preflight(config_with([]), api("http://127.0.0.1:9"))
    assert check.detail == f"cannot reach the cluster: {detail}"


def test_secret_exists_and_has_its_keys(cluster: tuple[FakeCluster, str]) -> None:
    fake, host = cluster
    fake.put(f"/api/v1/namespaces/{NS}/secrets/huggingface", secret("huggingface", ["token"]))
    fake.put(f"/api/v1/namespaces/{NS}/secrets/other", secret("other", ["password"]))
    checks = statuses(cluster_preflight(config_with([
        {"kind": "Secret", "name": "huggingface", "keys": ["token"], "reason": "hf"},
        {"kind": "Secret", "name": "other", "keys": ["token"], "reason": "o"},
        {"kind": "Secret", "name": "absent", "reason": "a"}]), api(host)))
    assert checks[("cluster", "reachable")] == "pass"
    assert checks[(f"Secret {NS}/huggingface", "exists")] == "pass"
    assert checks[(f"Secret {NS}/huggingface", "keys")] == "pass"
    assert checks[(f"Secret {NS}/other", "keys")] == "fail"
    assert checks[(f"Secret {NS}/absent", "exists")] == "fail"


def test_storage_classes_binding_mode_and_default(cluster: tuple[FakeCluster, str]) -> None:
    fake, host = cluster
    fake.add_storage_class(storage_class("gp3", "WaitForFirstConsumer"))
    fake.add_storage_class(storage_class("fast", "Immediate"))
    checks = statuses(cluster_preflight(config_with([
        {"kind": "StorageClass", "name": "gp3", "reason": "r"}, {"kind": "StorageClass", "name": "fast", "reason": "r"},
        {"kind": "DefaultStorageClass", "reason": "r"}]), api(host)))
    assert checks[("StorageClass gp3", "binding mode")] == "pass"
    assert checks[("StorageClass fast", "binding mode")] == "fail"
    assert checks[("DefaultStorageClass", "exists")] == "fail"  # none marked default
    fake.add_storage_class(storage_class("standard", "WaitForFirstConsumer", default=True))
    checks = statuses(cluster_preflight(config_with([{"kind": "DefaultStorageClass", "reason": "r"}]), api(host)))
    assert checks[("DefaultStorageClass", "exists")] == "pass"
    assert checks[("DefaultStorageClass", "binding mode")] == "pass"


def test_crds_and_metrics_apis(cluster: tuple[FakeCluster, str]) -> None:
    fake, host = cluster
    fake.put("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nodepools.karpenter.sh", crd("nodepools.karpenter.sh"))
    fake.put("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io",
             api_service("v1beta1.metrics.k8s.io", available=True))
    prerequisites = [
        {"kind": "CustomResourceDefinition", "name": "nodepools.karpenter.sh", "reason": "karpenter"},
        {"kind": "CustomResourceDefinition", "name": "ec2nodeclasses.karpenter.k8s.aws", "reason": "karpenter"},
        {"kind": "APIService", "name": "v1beta1.metrics.k8s.io", "reason": "metrics-server"},
        {"kind": "PodsMetric", "name": "DCGM_FI_DEV_GPU_UTIL", "reason": "adapter"}]
    checks = statuses(cluster_preflight(config_with(prerequisites), api(host)))
    assert checks[("CustomResourceDefinition nodepools.karpenter.sh", "established")] == "pass"
    assert checks[("CustomResourceDefinition ec2nodeclasses.karpenter.k8s.aws", "exists")] == "fail"
    assert checks[("APIService v1beta1.metrics.k8s.io", "available")] == "pass"
    assert checks[("PodsMetric DCGM_FI_DEV_GPU_UTIL", "served")] == "fail"  # no custom metrics API at all

    fake.put("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.custom.metrics.k8s.io",
             api_service("v1beta1.custom.metrics.k8s.io", available=False))
    checks = statuses(cluster_preflight(config_with(prerequisites), api(host)))
    assert checks[("APIService v1beta1.custom.metrics.k8s.io", "available")] == "fail"
    assert checks[("PodsMetric DCGM_FI_DEV_GPU_UTIL", "served")] == "fail"  # registered, but nothing serves it

    fake.put("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.custom.metrics.k8s.io",
             api_service("v1beta1.custom.metrics.k8s.io", available=True))
    fake.metrics[f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NS}/pods/*/DCGM_FI_DEV_GPU_UTIL"] = {
        "kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta1", "metadata": {},
        "items": [{"describedObject": {"kind": "Pod", "namespace": NS, "name": "triton-0", "apiVersion": "/v1"},
                   "metric": {"name": "DCGM_FI_DEV_GPU_UTIL"}, "timestamp": "2026-01-01T00:00:00Z", "value": "42"}]}
    checks = statuses(cluster_preflight(config_with(prerequisites), api(host)))
    assert checks[("PodsMetric DCGM_FI_DEV_GPU_UTIL", "served")] == "pass"


POOL_LABELS = {"nvidia.com/gpu.present": "true", "ha-ai-stack/gpu-pool": "gpu"}
EXISTING_POOL = [{"name": "gpu", "gpus_per_node": 1}]
KARPENTER_POOL = [{"name": "gpu", "backend": "karpenter", "instance_types": ["g5.xlarge"], "zones": ["a", "b"],
                   "karpenter": {"cluster_name": "c", "node_role": "r"}}]


def test_gpu_pool_nodes(cluster: tuple[FakeCluster, str]) -> None:
    fake, host = cluster
    labels, existing, karpenter = POOL_LABELS, EXISTING_POOL, KARPENTER_POOL
    assert statuses(cluster_preflight(config_with([], existing), api(host)))[("pool gpu", "nodes")] == "fail"
    assert statuses(cluster_preflight(config_with([], karpenter), api(host)))[("pool gpu", "nodes")] == "pass"
    fake.add_node(node("n1", labels, tainted=False))
    assert statuses(cluster_preflight(config_with([], existing), api(host)))[("pool gpu", "nodes")] == "fail"
    fake.add_node(node("n2", labels, tainted=True))
    assert statuses(cluster_preflight(config_with([], existing), api(host)))[("pool gpu", "nodes")] == "pass"


def test_cli_checks_the_cluster_through_the_kubeconfig(cluster: tuple[FakeCluster, str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake, host = cluster
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": host}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "me"}}],
        "users": [{"name": "me", "user": {"token": "t"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    result = haai("preflight", "--stack", "dev", "--no-aws", cwd=PROJECT_ROOT)
    assert result.returncode == 1, result.stdout + result.stderr  # no default class, no GPU node yet
    assert "DefaultStorageClass" in result.stdout and "fail" in result.stdout
    fake.add_storage_class(storage_class("standard", "WaitForFirstConsumer", default=True))
    fake.add_node(node("n1", {"nvidia.com/gpu.present": "true", "ha-ai-stack/gpu-pool": "gpu-dev"}, tainted=True))
    result = haai("preflight", "--stack", "dev", "--no-aws", cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    result = haai("preflight", "--stack", "dev", "--no-aws", cwd=PROJECT_ROOT)
    assert result.returncode == 0 and "no usable kubeconfig" in result.stdout and "Traceback" not in result.stderr


# -- every check's exact wording, and the API errors that are neither found nor missing ----------------------------

def details(checks: list[Any]) -> dict[tuple[str, str], tuple[str, str]]:
    return {(c.subject, c.check): (c.status, c.detail) for c in checks}


def test_each_check_says_what_it_found(cluster: tuple[FakeCluster, str]) -> None:
    fake, host = cluster
    fake.put(f"/api/v1/namespaces/{NS}/secrets/hf", secret("hf", ["token"]))
    fake.put(f"/api/v1/namespaces/{NS}/configmaps/settings", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("settings", NS), "binaryData": {"model.bin": "AA=="}})
    fake.put("/api/v1/namespaces/shared/secrets/db", secret("db", ["password"]))
    fake.add_storage_class(storage_class("fast", "Immediate"))
    fake.add_storage_class(storage_class("gp3", "WaitForFirstConsumer", default=True))
    fake.put("/apis/scheduling.k8s.io/v1/priorityclasses/gpu-high", {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": meta("gpu-high"), "value": 1000})
    fake.put("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.external.metrics.k8s.io",
             api_service("v1beta1.external.metrics.k8s.io", available=False))
    legacy = storage_class("legacy", "Immediate")
    del legacy["volumeBindingMode"]  # the API server defaults it to Immediate; an old object may lack it
    fake.add_storage_class(legacy)
    starting = api_service("v1beta1.metrics.k8s.io", available=False)
    del starting["status"]
    fake.put("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io", starting)
    checks = details(cluster_preflight(config_with([
        {"kind": "Secret", "name": "hf", "keys": ["token", "org", "team"], "reason": "hf"},
        {"kind": "ConfigMap", "name": "settings", "keys": ["model.bin"], "reason": "binary data counts"},
        {"kind": "Secret", "name": "db", "namespace": "shared", "reason": "in its own namespace"},
        {"kind": "StorageClass", "name": "fast", "reason": "sc"},
        {"kind": "DefaultStorageClass", "reason": "default"},
        {"kind": "PriorityClass", "name": "gpu-high", "reason": "pc"},
        {"kind": "ServiceAccount", "name": "runner", "reason": "the platform's"},
        {"kind": "ExternalMetric", "name": "queue_depth", "reason": "KEDA"},
        {"kind": "PersistentVolumeClaim", "name": "models", "reason": "the model cache"},
        {"kind": "IngressClass", "name": "nginx", "reason": "ingress"},
        {"kind": "StorageClass", "name": "legacy", "reason": "no binding mode"},
        {"kind": "APIService", "name": "v1beta1.metrics.k8s.io", "reason": "metrics-server"}]), api(host)))
    assert checks[("cluster", "reachable")] == ("pass", "Kubernetes v1.33.1")
    assert checks[(f"Secret {NS}/hf", "exists")] == ("pass", "hf")
    assert checks[(f"Secret {NS}/hf", "keys")] == ("fail", "missing key(s) org, team")
    assert checks[(f"ConfigMap {NS}/settings", "keys")] == ("pass", "has model.bin")
    assert checks[("Secret shared/db", "exists")] == ("pass", "in its own namespace")
    assert ("Secret shared/db", "keys") not in checks  # no keys declared, none checked
    assert checks[("StorageClass fast", "binding mode")] == (
        "fail", "Immediate: zone-pinned pods need WaitForFirstConsumer, or a volume lands in another zone")
    assert checks[("StorageClass fast", "provisioner")] == ("pass", "ebs.csi.aws.com")
    assert checks[("DefaultStorageClass", "exists")] == ("pass", "gp3 (ebs.csi.aws.com)")
    assert checks[("DefaultStorageClass", "binding mode")] == ("pass", "WaitForFirstConsumer")
    assert checks[("PriorityClass gpu-high", "exists")] == ("pass", "pc")
    assert checks[(f"ServiceAccount {NS}/runner", "exists")] == ("fail", "not found: the platform's")
    assert checks[("APIService v1beta1.external.metrics.k8s.io", "available")] == (
        "fail", "not Available: no endpoints")
    assert checks[(f"PersistentVolumeClaim {NS}/models", "exists")] == ("fail", "not found: the model cache")
    assert checks[("IngressClass nginx", "exists")] == ("fail", "not found: ingress")
    assert checks[("StorageClass legacy", "binding mode")] == (
        "fail", "Immediate: zone-pinned pods need WaitForFirstConsumer, or a volume lands in another zone")
    assert checks[("APIService v1beta1.metrics.k8s.io", "available")] == ("fail", "not Available: no condition")
    assert checks[("ExternalMetric queue_depth", "served")] == (
        "fail", f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/queue_depth answered 404: KEDA")


def test_a_forbidden_read_is_unknown(cluster: tuple[FakeCluster, str]) -> None:
    fake, host = cluster
    fake.forbidden.add(f"/api/v1/namespaces/{NS}/secrets/hf")
    checks = details(cluster_preflight(config_with([{"kind": "Secret", "name": "hf", "reason": "hf"}]), api(host)))
    assert checks[(f"Secret {NS}/hf", "exists")] == ("unknown", "the API answered 403 Forbidden")


def test_metrics_api_messages(cluster: tuple[FakeCluster, str]) -> None:
    fake, host = cluster
    pods_metric = [{"kind": "PodsMetric", "name": "DCGM_FI_DEV_GPU_UTIL", "reason": "adapter"}]
    assert details(cluster_preflight(config_with(pods_metric), api(host)))[("PodsMetric DCGM_FI_DEV_GPU_UTIL", "served")] \
        == ("fail", "no metrics API v1beta1.custom.metrics.k8s.io is registered: adapter")
    fake.put("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.custom.metrics.k8s.io",
             api_service("v1beta1.custom.metrics.k8s.io", available=True))
    path = f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NS}/pods/*/DCGM_FI_DEV_GPU_UTIL"
    fake.metrics[path] = {"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta1", "metadata": {},
                          "items": []}
    checks = details(cluster_preflight(config_with(pods_metric), api(host)))
    assert checks[("APIService v1beta1.custom.metrics.k8s.io", "available")] == ("pass", "Available")
    assert checks[("PodsMetric DCGM_FI_DEV_GPU_UTIL", "served")] == ("pass", f"{path} answers")
    fake.token = "t0ken"  # every call, the metric's raw GET too, carries the kubeconfig's token
    checks = details(cluster_preflight(config_with(pods_metric), api(host, "t0ken")))
    assert checks[("PodsMetric DCGM_FI_DEV_GPU_UTIL", "served")] == ("pass", f"{path} answers")
    fake.forbidden.add(path)
    checks = details(cluster_preflight(config_with(pods_metric), api(host, "t0ken")))
    assert checks[("PodsMetric DCGM_FI_DEV_GPU_UTIL", "served")] == ("unknown", f"{path} answered 403: adapter")


def test_crd_established_or_not(cluster: tuple[FakeCluster, str]) -> None:
    fake, host = cluster
    fake.put("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nodepools.karpenter.sh", crd("nodepools.karpenter.sh"))
    checks = details(cluster_preflight(config_with([
        {"kind": "CustomResourceDefinition", "name": "nodepools.karpenter.sh", "reason": "karpenter"}]), api(host)))
    assert checks[("CustomResourceDefinition nodepools.karpenter.sh", "established")] == ("pass", "served")
    pending = crd("nodepools.karpenter.sh")
    pending["status"]["conditions"][0].update(status="False", reason="NotAccepted")
    fake.put("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nodepools.karpenter.sh", pending)
    checks = details(cluster_preflight(config_with([
        {"kind": "CustomResourceDefinition", "name": "nodepools.karpenter.sh", "reason": "karpenter"}]), api(host)))
    assert checks[("CustomResourceDefinition nodepools.karpenter.sh", "established")] == (
        "fail", "the CRD is not Established")


def test_gpu_pool_node_messages(cluster: tuple[FakeCluster, str]) -> None:
    fake, host = cluster
    labels, existing, karpenter = POOL_LABELS, EXISTING_POOL, KARPENTER_POOL
    nodes = ("pool gpu", "nodes")
    assert details(cluster_preflight(config_with([], existing), api(host)))[nodes] == (
        "fail", "no node has ha-ai-stack/gpu-pool=gpu,nvidia.com/gpu.present=true (backend existing: label and taint "
                "the GPU nodes)")
    assert details(cluster_preflight(config_with([], karpenter), api(host)))[nodes] == (
        "pass", "no node yet; the karpenter backend makes them on demand")
    fake.add_node(node("n1", labels, tainted=False))
    fake.add_node(node("n2", {**labels, "other": "x"}, tainted=False))
    assert details(cluster_preflight(config_with([], existing), api(host)))[nodes] == (
        "fail", "2 node(s) carry the labels but not the nvidia.com/gpu=true:NoSchedule taint")
    other_taint = node("n3", labels, tainted=True)
    other_taint["spec"]["taints"] = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                                     {"key": "nvidia.com/gpu", "value": "true", "effect": "NoExecute"}]
    fake.add_node(other_taint)
    assert details(cluster_preflight(config_with([], existing), api(host)))[nodes][0] == "fail"
    fake.add_node(node("n4", labels, tainted=True))
    assert details(cluster_preflight(config_with([], existing), api(host)))[nodes] == (
        "pass", "1 node(s) with the pool's labels and GPU taint")


def test_an_eks_pool_without_nodes_yet(cluster: tuple[FakeCluster, str]) -> None:
    _, host = cluster
    eks = [{"name": "gpu", "backend": "eks", "instance_types": ["g5.xlarge"], "zones": ["a", "b"],
            "eks": {"cluster_name": "c", "subnet_ids": ["subnet-1", "subnet-2"]}}]
    assert details(cluster_preflight(config_with([], eks), api(host)))[("pool gpu", "nodes")] == (
        "pass", "no node yet; the eks backend makes them on demand")
