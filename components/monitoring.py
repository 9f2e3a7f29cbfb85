"""Monitoring objects for what the stack runs: PodMonitors (Redis exporter, Triton, vLLM) and a PrometheusRule.

Pure builders: the stack config in, prometheus-operator specs out. Alert expressions use the metrics of
redis_exporter, kube-state-metrics and dcgm-exporter (the GPU metrics path), and every expression is
parsed in the tests.
"""

from __future__ import annotations

from typing import Any

from .labels import selector_labels

REDIS_GROUP_LABEL = "ha-ai-stack/redis-group"
# prometheus-operator turns a pod label into a metric label by replacing what is not [a-zA-Z0-9_] with "_".
REDIS_GROUP_METRIC_LABEL = "ha_ai_stack_redis_group"


def pod_monitor_spec(selector: dict[str, str], port: str, path: str = "/metrics",
                     pod_target_labels: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": dict(selector)},
                            "podMetricsEndpoints": [{"port": port, "path": path, "interval": "30s"}]}
    if pod_target_labels:
        spec["podTargetLabels"] = list(pod_target_labels)
    return spec


def service_metrics_port(server: str, http_port: int, metrics_port: int | None) -> str | None:
    """The named container port a service's metrics are on, or None when it has none we know of."""
    if metrics_port and metrics_port != http_port:
        return "metrics"
    if server == "vllm":
        return "http"  # vLLM serves /metrics on its API port
    return None


def _alert(name: str, expr: str, duration: str, severity: str, summary: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": duration, "labels": {"severity": severity},
            "annotations": {"summary": summary}}


BACKUP_MAX_AGE_HOURS = 25  # every backup schedule should run at least daily


def redis_alerts(namespace: str, replicas_per_shard: int, backups: bool = False) -> list[dict[str, Any]]:
    ns = f'namespace="{namespace}"'
    alerts = [
        _alert("RedisClusterStateNotOk", f"max by (pod) (redis_cluster_state{{{ns}}}) == 0", "1m", "critical",
               "A Redis member sees cluster_state other than ok: some slots are not served."),
        _alert("RedisMastersNotOnePerZone",
               f'count by ({REDIS_GROUP_METRIC_LABEL}) (redis_instance_info{{{ns}, role="master"}}) > 1', "30m",
               "warning", "A zone holds more than one Redis master: losing it would take a majority. The balance "
                          "CronJob should have moved them back; check its Jobs."),
        _alert("RedisBalanceJobFailed", f'kube_job_status_failed{{{ns}, job_name=~"redis-balance.*"}} > 0', "5m",
               "warning", "A redis-balance Job failed: masters may stay bunched in a zone."),
    ]
    if backups:
        alerts += [
            _alert("RedisBackupFailed", f'kube_job_status_failed{{{ns}, job_name=~"redis-backup-.*"}} > 0', "5m",
                   "critical", "A Redis backup Job failed: its log says which shard or upload (backup.sh, "
                               "backup_s3.py)."),
            _alert("RedisBackupMissing",
                   f'time() - kube_cronjob_status_last_successful_time{{{ns}, cronjob="redis-backup"}} > '
                   f"{BACKUP_MAX_AGE_HOURS * 3600}", "15m", "critical",
                   f"No Redis backup has completed for {BACKUP_MAX_AGE_HOURS} hours."),
        ]
    if replicas_per_shard:
        alerts += [
            _alert("RedisMasterWithoutReplica",
                   f'(redis_connected_slaves{{{ns}}} == 0) and on (pod) redis_instance_info{{{ns}, role="master"}}',
                   "5m", "critical", "A Redis master has no connected replica: its shard is lost with its node."),
            _alert("RedisReplicationLag", f"redis_connected_slave_lag_seconds{{{ns}}} > 10", "5m", "warning",
                   "A Redis replica lags its master by more than 10 s: a failover would lose those writes."),
        ]
    return alerts


def inference_alerts(namespace: str, service: str, gpu: bool, autoscaled: bool) -> list[dict[str, Any]]:
    ns = f'namespace="{namespace}"'
    alerts = [_alert("InferenceNoReadyReplicas",
                     f'kube_deployment_status_replicas_available{{{ns}, deployment="{service}"}} == 0', "5m",
                     "critical", f"{service} has no ready replica: it serves nothing.")]
    if autoscaled:
        hpa = f'{ns}, horizontalpodautoscaler="{service}"'
        alerts.append(_alert(
            "InferenceAutoscalerAtMax",
            f"kube_horizontalpodautoscaler_status_current_replicas{{{hpa}}} >= "
            f"kube_horizontalpodautoscaler_spec_max_replicas{{{hpa}}}", "15m", "warning",
            f"{service} has run at its autoscaler's ceiling for 15 minutes: raise max_replicas or the pool."))
    if gpu:
        alerts.append(_alert("InferenceGpuSaturated",
                             f'avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL{{{ns}, pod=~"{service}-.*"}}) >= 99',
                             "15m", "warning", f"{service}'s GPUs have been pinned at 100% for 15 minutes."))
    for alert in alerts:
        alert["labels"]["service"] = service
    return alerts


def prometheus_rule_spec(groups: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"groups": [{"name": name, "rules": rules} for name, rules in groups.items() if rules]}


def redis_pod_monitor(name: str) -> dict[str, Any]:
    """The Redis exporter sidecars, with each member's zone group as a metric label (for the per-zone alert)."""
    return pod_monitor_spec(selector_labels(name, name), "metrics", pod_target_labels=[REDIS_GROUP_LABEL])
