"""``haai preflight``, cluster side: does the live cluster have what the stack declares it needs?

Through the official ``kubernetes`` client and the kubeconfig context: every declared prerequisite
exists (a Secret or ConfigMap with its keys; a StorageClass with its provisioner and binding mode; the
default StorageClass), the CRDs are installed, each metrics API is registered, available and serves
the metric, and each GPU pool's labels and taint are on at least one node (or its autoscaler can make
one). Each check passes, fails, or is unknown with the reason; an unreachable cluster is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ha_ai_stack.config import StackConfig
from ha_ai_stack.prerequisites import NAMESPACED, Prerequisite
from ha_ai_stack.scheduling import GPU_RESOURCE

from .preflight import Check

CLUSTER = "cluster"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def api_client(context: str | None = None) -> Any:
    """An ApiClient for the kubeconfig context (or in-cluster config): the one place that reads kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_kube_config(context=context)
    except config.ConfigException:
        config.load_incluster_config()
    return client.ApiClient()


class ClusterPreflight:
    def __init__(self, config: StackConfig, api: Any) -> None:
        from kubernetes import client

        self.config, self.client = config, client
        self.core = client.CoreV1Api(api)
        self.api = api
        self.checks: list[Check] = []

    def add(self, subject: str, check: str, status: str, detail: str) -> None:
        self.checks.append(Check(subject, check, status, detail))  # type: ignore[arg-type]

    def run(self) -> list[Check]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            version = self.client.VersionApi(self.api).get_code()
        except (ApiException, HTTPError, OSError) as error:
            self.add(CLUSTER, "reachable", "unknown", f"cannot reach the cluster: {_short(error)}")
            return self.checks
        self.add(CLUSTER, "reachable", "pass", f"Kubernetes {version.git_version}")
        for item in self.config.prerequisites:
            self._check_prerequisite(item)
        for pool in self.config.gpu_pools:
            self._check_pool_nodes(pool)
        return self.checks

    # --- prerequisites -------------------------------------------------------------------------------
    def _read(self, item: Prerequisite) -> Callable[[], Any] | None:
        c, api, ns = self.client, self.api, item.namespace or self.config.namespace
        readers: dict[str, Callable[[], Any]] = {
            "PriorityClass": lambda: c.SchedulingV1Api(api).read_priority_class(item.name),
            "StorageClass": lambda: c.StorageV1Api(api).read_storage_class(item.name),
            "Secret": lambda: self.core.read_namespaced_secret(item.name, ns),
            "ConfigMap": lambda: self.core.read_namespaced_config_map(item.name, ns),
            "ServiceAccount": lambda: self.core.read_namespaced_service_account(item.name, ns),
            "PersistentVolumeClaim": lambda: self.core.read_namespaced_persistent_volume_claim(item.name, ns),
            "IngressClass": lambda: c.NetworkingV1Api(api).read_ingress_class(item.name),
            "CustomResourceDefinition": lambda: c.ApiextensionsV1Api(api).read_custom_resource_definition(item.name),
            "APIService": lambda: c.ApiregistrationV1Api(api).read_api_service(item.name),
        }
        return readers.get(item.kind)

    def _check_prerequisite(self, item: Prerequisite) -> None:
        from kubernetes.client.exceptions import ApiException

        where = f"{item.namespace or self.config.namespace}/" if item.kind in NAMESPACED else ""
        subject = f"{item.kind} {where}{item.name}".strip()
        try:
            if item.kind == "DefaultStorageClass":
                return self._check_default_storage_class()
            if item.kind in ("PodsMetric", "ExternalMetric"):
                return self._check_metric(item, subject)
            found = self._read(item)()  # type: ignore[misc]
        except ApiException as error:
            if error.status == 404:
                return self.add(subject, "exists", "fail", f"not found: {item.reason}")
            return self.add(subject, "exists", "unknown", f"the API answered {error.status} {error.reason}")
        self.add(subject, "exists", "pass", item.reason)
        if item.kind in ("Secret", "ConfigMap") and item.keys:
            present = set((found.data or {}).keys()) | set((getattr(found, "binary_data", None) or {}).keys())
            missing = [key for key in item.keys if key not in present]
            self.add(subject, "keys", "fail" if missing else "pass",
                     f"missing key(s) {', '.join(missing)}" if missing else f"has {', '.join(item.keys)}")
        if item.kind == "StorageClass":
            self._check_storage_class(subject, found)
        if item.kind == "APIService":
            self._check_available(subject, found)
        if item.kind == "CustomResourceDefinition":
            established = any(c.type == "Established" and c.status == "True"
                              for c in ((found.status.conditions if found.status else None) or []))
            self.add(subject, "established", "pass" if established else "fail",
                     "served" if established else "the CRD is not Established")

    def _check_storage_class(self, subject: str, found: Any) -> None:
        binding = found.volume_binding_mode or "Immediate"
        self.add(subject, "binding mode", "pass" if binding == "WaitForFirstConsumer" else "fail",
                 f"{binding}" + ("" if binding == "WaitForFirstConsumer" else ": zone-pinned pods need "
                                 "WaitForFirstConsumer, or a volume lands in another zone"))
        self.add(subject, "provisioner", "pass", found.provisioner)

    def _check_default_storage_class(self) -> None:
        classes = self.client.StorageV1Api(self.api).list_storage_class().items
        defaults = [c for c in classes if (c.metadata.annotations or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"]
        subject = "DefaultStorageClass"
        if not defaults:
            return self.add(subject, "exists", "fail", "no StorageClass is marked default (EKS marks none from 1.30)")
        self.add(subject, "exists", "pass", f"{defaults[0].metadata.name} ({defaults[0].provisioner})")
        self._check_storage_class(subject, defaults[0])

    def _check_available(self, subject: str, found: Any) -> None:
        conditions = (found.status.conditions if found.status else None) or []
        available = next((c for c in conditions if c.type == "Available"), None)
        ok = available is not None and available.status == "True"
        self.add(subject, "available", "pass" if ok else "fail",
                 "Available" if ok else f"not Available: {getattr(available, 'message', None) or 'no condition'}")

    def _check_metric(self, item: Prerequisite, subject: str) -> None:
        from kubernetes.client.exceptions import ApiException

        group = "custom.metrics.k8s.io" if item.kind == "PodsMetric" else "external.metrics.k8s.io"
        service = f"v1beta1.{group}"
        try:
            registered = self.client.ApiregistrationV1Api(self.api).read_api_service(service)
        except ApiException as error:
            if error.status == 404:
                return self.add(subject, "served", "fail", f"no metrics API {service} is registered: {item.reason}")
            raise
        self._check_available(f"APIService {service}", registered)
        path = (f"/apis/{group}/v1beta1/namespaces/{self.config.namespace}/pods/*/{item.name}"
                if item.kind == "PodsMetric" else f"/apis/{group}/v1beta1/namespaces/{self.config.namespace}/{item.name}")
        try:
            self.api.call_api(path, "GET", auth_settings=["BearerToken"])  # only whether it answers
        except ApiException as error:
            status = "fail" if error.status == 404 else "unknown"
            return self.add(subject, "served", status, f"{path} answered {error.status}: {item.reason}")
        self.add(subject, "served", "pass", f"{path} answers")

    # --- GPU pools -----------------------------------------------------------------------------------
    def _check_pool_nodes(self, pool: Any) -> None:
        contract = pool.contract()
        selector = ",".join(f"{k}={v}" for k, v in sorted(contract.node_selector.items()))
        nodes = self.core.list_node(label_selector=selector).items
        tainted = [n for n in nodes if any(t.key == GPU_RESOURCE and t.effect == "NoSchedule"
                                           for t in ((n.spec.taints if n.spec else None) or []))]
        subject = f"pool {pool.name}"
        if tainted:
            return self.add(subject, "nodes", "pass", f"{len(tainted)} node(s) with the pool's labels and GPU taint")
        if nodes:
            return self.add(subject, "nodes", "fail", f"{len(nodes)} node(s) carry the labels but not the "
                                                      f"{GPU_RESOURCE}=true:NoSchedule taint")
        if pool.backend in ("eks", "karpenter"):
            return self.add(subject, "nodes", "pass", f"no node yet; the {pool.backend} backend makes them on demand")
        self.add(subject, "nodes", "fail", f"no node has {selector} (backend existing: label and taint the GPU nodes)")


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def cluster_preflight(config: StackConfig, api: Any) -> list[Check]:
    return ClusterPreflight(config, api).run()
