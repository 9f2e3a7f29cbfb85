"""GpuMetrics: a GPU metrics path that really drives the autoscaler.

- dcgm-exporter on every GPU node (kube-system, applied server-side so stacks on one cluster share
  it), with the kubelet's pod-resources socket mounted and Kubernetes pod mapping on, so each GPU's
  series carries the namespace and pod that use it.
- A ServiceMonitor that scrapes it with ``honorLabels: true``: the exporter's own ``namespace`` and
  ``pod`` labels (the GPU's pod) win over the target's (the exporter's own pod). Without it
  Prometheus renames them ``exported_namespace``/``exported_pod``, and an adapter that maps
  ``namespace``/``pod`` to resources finds the exporter instead of the workload: the usual reason a
  GPU HPA never scales.
- prometheus-adapter rules (its ``config.yaml``) that serve each GPU metric per pod as the HPA's Pods
  metric. The adapter is the default engine: the stack keeps its HPA (which the policies check),
  and one API service serves every metric. ``autoscaling.engine: keda`` renders a KEDA ScaledObject
  with a Prometheus trigger instead (see the inference build).
"""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import ConfigDict, Field, field_validator

from . import names
from .errors import ArgsModel, validate_args
from .images import require_pinned_image
from .labels import selector_labels, standard_labels
from .options import child_options, register_public_outputs
from .prerequisites import SERVES_PODS_METRICS
from .scheduling import gpu_node_daemon_set_spec

NAME = "dcgm-exporter"
NAMESPACE = "kube-system"
DEFAULT_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04"
METRICS_PORT = 9400
POD_RESOURCES = "/var/lib/kubelet/pod-resources"
ADAPTER_RULES_CONFIG_MAP = "ha-ai-stack-adapter-rules"
GPU_METRIC_PREFIX = "DCGM_"


class GpuMetricsArgs(ArgsModel):
    """Args of ``GpuMetrics``."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(default="default", description="Namespace of the prometheus-adapter rules.")
    metrics: list[str] = Field(default_factory=list, description="GPU metrics the HPAs read, served per pod.")
    image: str = Field(default=DEFAULT_IMAGE, description="dcgm-exporter image, pinned.")
    prometheus_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels your Prometheus selects monitors by (e.g. release: "
                                          "kube-prometheus-stack).")

    _check_namespace = field_validator("namespace")(names.dns_label)
    _check_image = field_validator("image")(require_pinned_image)
    _check_labels = field_validator("prometheus_labels")(names.labels)


def exporter_spec(image: str) -> dict[str, Any]:
    container = {
        "name": NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"},
                {"name": "DCGM_EXPORTER_LISTEN", "value": f":{METRICS_PORT}"}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        # DCGM's profiling metrics need SYS_ADMIN; everything else is dropped.
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "readinessProbe": {"httpGet": {"path": "/health", "port": "metrics"}, "periodSeconds": 10,
                           "timeoutSeconds": 5, "failureThreshold": 3, "successThreshold": 1},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "metrics"}, "periodSeconds": 20,
                          "timeoutSeconds": 5, "failureThreshold": 6, "successThreshold": 1},
        "volumeMounts": [{"name": "pod-resources", "mountPath": POD_RESOURCES, "readOnly": True}],
    }
    return gpu_node_daemon_set_spec(
        selector_labels(NAME, NAME), standard_labels(NAME, NAME, "gpu-metrics"), container,
        [{"name": "pod-resources", "hostPath": {"path": POD_RESOURCES, "type": "Directory"}}])


def service_monitor_spec() -> dict[str, Any]:
    return {
        "selector": {"matchLabels": selector_labels(NAME, NAME)},
        "namespaceSelector": {"matchNames": [NAMESPACE]},
        # The exporter's namespace/pod labels name the GPU's pod: keep them (see the module docstring).
        "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s", "honorLabels": True}],
    }


def adapter_rules(metrics: list[str]) -> str:
    """prometheus-adapter's config.yaml: each GPU metric, averaged per pod, as a Pods metric of that pod."""
    rules = []
    for metric in sorted(set(metrics)):
        rules.append(
            f"  - seriesQuery: '{metric}{{namespace!=\"\",pod!=\"\"}}'\n"
            f"    resources:\n      overrides:\n        namespace: {{resource: namespace}}\n"
            f"        pod: {{resource: pod}}\n"
            f"    name:\n      matches: \"^{metric}$\"\n      as: \"{metric}\"\n"
            f"    metricsQuery: 'avg by (<<.GroupBy>>) (<<.Series>>{{<<.LabelMatchers>>}})'\n")
    return "rules:\n" + "".join(rules)


class GpuMetrics(pulumi.ComponentResource):
    """dcgm-exporter, its ServiceMonitor, and the prometheus-adapter rules for the GPU metrics HPAs read."""

    exporter: k8s.apps.v1.DaemonSetPatch
    """dcgm-exporter on every GPU node (kube-system; shared by stacks on one cluster)."""
    service: k8s.core.v1.ServicePatch
    """The exporter's Service, which the ServiceMonitor selects."""
    adapter_rules: k8s.core.v1.ConfigMap | None
    """prometheus-adapter rules for the metrics the HPAs read (the adapter's rules config)."""

    def __init__(
        self, name: str, args: GpuMetricsArgs | dict[str, Any] | None = None, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args = validate_args(GpuMetricsArgs, args if args is not None else {}, f"GpuMetrics {name!r}")
        super().__init__("haai:index:GpuMetrics", name, None, opts)
        child = child_options(self, opts)
        labels = standard_labels(NAME, NAME, "gpu-metrics")
        metadata = {"name": NAME, "namespace": NAMESPACE, "labels": labels}
        # Shared by every stack on the cluster, like the device plugin: applied server-side.
        self.exporter = k8s.apps.v1.DaemonSetPatch(f"{name}-exporter", metadata=metadata,
                                                   spec=exporter_spec(args.image), opts=child)
        self.service = k8s.core.v1.ServicePatch(
            f"{name}-service", metadata=metadata,
            spec={"type": "ClusterIP", "selector": selector_labels(NAME, NAME),
                  "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]},
            opts=child)
        # Python-only escape hatch: a custom resource has no schema type for the provider.
        self.service_monitor = k8s.apiextensions.CustomResource(
            f"{name}-service-monitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata={**metadata, "labels": {**labels, **args.prometheus_labels}}, spec=service_monitor_spec(),
            opts=child)
        self.adapter_rules = (
            k8s.core.v1.ConfigMap(
                f"{name}-adapter-rules",
                metadata={"name": ADAPTER_RULES_CONFIG_MAP, "namespace": args.namespace, "labels": labels,
                          "annotations": {SERVES_PODS_METRICS: ",".join(sorted(set(args.metrics)))}},
                data={"config.yaml": adapter_rules(args.metrics)}, opts=child)
            if args.metrics else None)
        register_public_outputs(self)
