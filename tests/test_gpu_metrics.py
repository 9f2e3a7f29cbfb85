"""The GPU metrics path and the monitoring objects: what they render, what validates, what parses."""

from __future__ import annotations

import copy
from typing import Any

import promql_parser
import pytest

from ha_ai_stack import ConfigError
from ha_ai_stack_tools.render import manifests

from .conftest import objects_of, run_stack_config, stack_capture
from .schemas import validate_object

IMAGE = "nvcr.io/nvidia/tritonserver:24.08-py3"
GPU_HPA = {"max_replicas": 6, "metric": {"type": "pods", "name": "DCGM_FI_DEV_GPU_UTIL", "target_average_value": "70"}}


def base(**changes: Any) -> dict[str, Any]:
    config = {"tier": "dev", "namespace": "ml", "gpu_pools": [{"name": "gpu", "gpus_per_node": 1}],
              "inference": [{"name": "triton", "image": IMAGE, "server": "triton", "resources": {"gpus": 1},
                             "autoscaling": GPU_HPA}],
              "prerequisites": [{"kind": "APIService", "name": "v1beta1.metrics.k8s.io", "reason": "r"}]}
    config.update(changes)
    return config


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_the_exporter_maps_gpus_to_pods_and_is_scraped_with_its_own_labels() -> None:
    objects = manifests(stack_capture("prod"))
    [exporter] = [d for d in by_kind(objects, "DaemonSet") if d["metadata"]["name"] == "dcgm-exporter"]
    assert exporter["metadata"]["namespace"] == "kube-system"
    pod = exporter["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"} in container["env"]
    assert {"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources", "readOnly": True} in \
        container["volumeMounts"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    [monitor] = by_kind(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True  # namespace/pod stay the GPU pod's
    [rules] = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "ha-ai-stack-adapter-rules"]
    config = rules["data"]["config.yaml"]
    assert "seriesQuery: 'DCGM_FI_DEV_GPU_UTIL{namespace!=\"\",pod!=\"\"}'" in config
    assert "namespace: {resource: namespace}" in config and "pod: {resource: pod}" in config
    assert rules["metadata"]["annotations"] == {"ha-ai-stack/serves-pods-metrics": "DCGM_FI_DEV_GPU_UTIL"}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_every_monitoring_object_validates_against_its_crd(stack: str) -> None:
    objects = manifests(stack_capture(stack))
    monitoring = [o for o in objects if o["apiVersion"] == "monitoring.coreos.com/v1"]
    assert {o["kind"] for o in monitoring} == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    for obj in monitoring:
        validate_object(obj, "1.33")
    broken = copy.deepcopy(next(o for o in monitoring if o["kind"] == "PodMonitor"))
    broken["spec"]["podMetricsEndpoint"] = broken["spec"].pop("podMetricsEndpoints")
    with pytest.raises(Exception, match="podMetricsEndpoint"):
        validate_object(broken, "1.33")


def queries(objects: list[dict[str, Any]]) -> list[str]:
    rules = [r["expr"] for o in by_kind(objects, "PrometheusRule") for g in o["spec"]["groups"] for r in g["rules"]]
    adapter = [line.split("metricsQuery: ", 1)[1].strip("'") for o in by_kind(objects, "ConfigMap")
               for line in o.get("data", {}).get("config.yaml", "").splitlines() if "metricsQuery:" in line]
    # The adapter's template, filled as the adapter fills it for one pod.
    return rules + [q.replace("<<.GroupBy>>", "pod").replace("<<.Series>>", "DCGM_FI_DEV_GPU_UTIL")
                    .replace("<<.LabelMatchers>>", 'namespace="ml",pod="triton-0"') for q in adapter]


def test_every_promql_expression_parses() -> None:
    found = queries(manifests(stack_capture("prod")))
    assert len(found) >= 10
    for expression in found:
        promql_parser.parse(expression)
    with pytest.raises(ValueError):
        promql_parser.parse(found[0].replace(")", "", 1))  # the parser does refuse a broken one


def test_the_alerts_that_matter() -> None:
    [rule] = by_kind(manifests(stack_capture("prod")), "PrometheusRule")
    alerts = [(g["name"], r["alert"], r["labels"], r["for"]) for g in rule["spec"]["groups"] for r in g["rules"]]
    critical, warning = {"severity": "critical"}, {"severity": "warning"}
    assert alerts == [
        ("redis", "RedisClusterStateNotOk", critical, "1m"), ("redis", "RedisMastersNotOnePerZone", warning, "30m"),
        ("redis", "RedisBalanceJobFailed", warning, "5m"), ("redis", "RedisBackupFailed", critical, "5m"),
        ("redis", "RedisBackupMissing", critical, "15m"), ("redis", "RedisMasterWithoutReplica", critical, "5m"),
        ("redis", "RedisReplicationLag", warning, "5m"),
        ("inference-ai-inference-service", "InferenceNoReadyReplicas",
         {**critical, "service": "ai-inference-service"}, "5m"),
        ("inference-triton", "InferenceNoReadyReplicas", {**critical, "service": "triton"}, "5m"),
        ("inference-triton", "InferenceAutoscalerAtMax", {**warning, "service": "triton"}, "15m"),
        ("inference-triton", "InferenceGpuSaturated", {**warning, "service": "triton"}, "15m"),
        ("inference-vllm-chat", "InferenceNoReadyReplicas", {**critical, "service": "vllm-chat"}, "5m"),
        ("inference-vllm-chat", "InferenceGpuSaturated", {**warning, "service": "vllm-chat"}, "15m")]
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert [name for name, r in rules.items() if set(r["annotations"]) != {"summary"}] == []
    # What the person on call reads first: the subject, what it means, and what to do where there is a step.
    summaries = {(g["name"], r["alert"]): r["annotations"]["summary"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert summaries == {
        ("redis", "RedisClusterStateNotOk"): "A Redis member sees cluster_state other than ok: some slots are not served.",
        ("redis", "RedisMastersNotOnePerZone"): "A zone holds more than one Redis master: losing it would take a "
        "majority. The balance CronJob should have moved them back; check its Jobs.",
        ("redis", "RedisBalanceJobFailed"): "A redis-balance Job failed: masters may stay bunched in a zone.",
        ("redis", "RedisBackupFailed"): "A Redis backup Job failed: its log says which shard or upload (backup.sh, "
        "backup_s3.py).",
        ("redis", "RedisBackupMissing"): "No Redis backup has completed for 25 hours.",
        ("redis", "RedisMasterWithoutReplica"): "A Redis master has no connected replica: its shard is lost with its "
        "node.",
        ("redis", "RedisReplicationLag"): "A Redis replica lags its master by more than 10 s: a failover would lose "
        "those writes.",
        ("inference-ai-inference-service", "InferenceNoReadyReplicas"): "ai-inference-service has no ready replica: "
        "it serves nothing.",
        ("inference-triton", "InferenceNoReadyReplicas"): "triton has no ready replica: it serves nothing.",
        ("inference-triton", "InferenceAutoscalerAtMax"): "triton has run at its autoscaler's ceiling for 15 minutes: "
        "raise max_replicas or the pool.",
        ("inference-triton", "InferenceGpuSaturated"): "triton's GPUs have been pinned at 100% for 15 minutes.",
        ("inference-vllm-chat", "InferenceNoReadyReplicas"): "vllm-chat has no ready replica: it serves nothing.",
        ("inference-vllm-chat", "InferenceGpuSaturated"): "vllm-chat's GPUs have been pinned at 100% for 15 minutes."}

    def redis_alert_names(config: dict[str, Any]) -> list[str]:
        [rule] = by_kind(manifests(run_stack_config(config)), "PrometheusRule")
        return [r["alert"] for g in rule["spec"]["groups"] if g["name"] == "redis" for r in g["rules"]]

    without_backups = ["RedisClusterStateNotOk", "RedisMastersNotOnePerZone", "RedisBalanceJobFailed"]
    assert redis_alert_names(base(redis={"enabled": True, "replicas_per_shard": 1})) == [
        *without_backups, "RedisMasterWithoutReplica", "RedisReplicationLag"]
    assert redis_alert_names(base(redis={"enabled": True, "replicas_per_shard": 0})) == without_backups
    per_zone = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "RedisMastersNotOnePerZone")
    [redis_monitor] = [m for m in by_kind(manifests(stack_capture("prod")), "PodMonitor")
                       if m["metadata"]["name"] == "redis"]
    assert redis_monitor["spec"]["podTargetLabels"] == ["ha-ai-stack/redis-group"]
    assert "count by (ha_ai_stack_redis_group)" in per_zone["expr"]  # the operator's sanitized label name
    missing = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "RedisBackupMissing")
    assert missing["expr"] == ('time() - kube_cronjob_status_last_successful_time{namespace="ai-serving", '
                               'cronjob="redis-backup"} > 90000')


def test_no_backup_alerts_without_backups() -> None:
    [rule] = by_kind(manifests(stack_capture("staging")), "PrometheusRule")
    assert not [r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"].startswith("RedisBackup")]


def test_monitors_follow_the_servers_metrics_ports() -> None:
    monitors = {m["metadata"]["name"]: m["spec"]["podMetricsEndpoints"][0]["port"]
                for m in by_kind(manifests(stack_capture("prod")), "PodMonitor")}
    assert monitors == {"triton": "metrics", "vllm-chat": "http", "redis": "metrics"}  # ai-inference-service: none
    assert by_kind(manifests(stack_capture("dev")), "PodMonitor") == []  # monitors: false in dev


def test_keda_engine_renders_a_scaled_object_instead_of_an_hpa() -> None:
    keda_hpa = {**GPU_HPA, "engine": "keda", "prometheus_url": "http://prometheus.monitoring:9090"}
    config = base(inference=[{"name": "triton", "image": IMAGE, "server": "triton", "resources": {"gpus": 1},
                              "autoscaling": keda_hpa}], metrics={"monitors": False},
                  prerequisites=[{"kind": "CustomResourceDefinition", "name": "scaledobjects.keda.sh", "reason": "r"}])
    objects = manifests(run_stack_config(config))
    assert by_kind(objects, "HorizontalPodAutoscaler") == []
    [scaled] = by_kind(objects, "ScaledObject")
    validate_object(scaled, "1.33")
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 6)
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["metadata"]["name"] == "triton"  # the target KEDA's HPA scales exists under that name
    [cpu, prometheus] = scaled["spec"]["triggers"]
    assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
    query = 'avg(avg by (pod) (DCGM_FI_DEV_GPU_UTIL{namespace="ml", pod=~"triton-.*"}))'
    assert prometheus == {"type": "prometheus", "metricType": "AverageValue", "metadata": {
        "serverAddress": "http://prometheus.monitoring:9090", "query": query, "threshold": "70"}}
    promql_parser.parse(query)


def test_an_hpa_metric_nothing_serves_is_refused() -> None:
    queue = {"max_replicas": 6, "metric": {"type": "pods", "name": "queue_time", "target_average_value": "1"}}
    with pytest.raises(ConfigError, match=r"haai:inference\[0\].autoscaling.metric: nothing serves the pods metric "
                                          r"'queue_time'"):
        run_stack_config(base(inference=[{"name": "api", "image": IMAGE, "autoscaling": queue}]))
    with pytest.raises(ConfigError, match="nothing serves the pods metric 'DCGM_FI_DEV_GPU_UTIL'"):
        run_stack_config(base(metrics={"gpu": False}))
    declared = base(metrics={"gpu": False}, prerequisites=[
        {"kind": "PodsMetric", "name": "DCGM_FI_DEV_GPU_UTIL", "reason": "the platform's adapter"}])
    assert objects_of(run_stack_config(declared), "ServiceMonitor") == []  # served elsewhere: no exporter here
    assert objects_of(run_stack_config(base()), "ServiceMonitor")  # on by default for a GPU metric
