"""InferenceService under Pulumi's mock runtime, in update and preview mode."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from ha_ai_stack import ArgsError

from ha_ai_stack import (
    AutoscalingSpec,
    DisruptionSpec,
    GpuSchedulingContract,
    InferenceService,
    InferenceServiceArgs,
    MetricSpec,
    RedisConnection,
    ResourceSpec,
    SecretKeyRef,
)
from ha_ai_stack_tools.capture import Capture
from ha_ai_stack.probes import STARTUP_PERIOD_SECONDS

from .conftest import PROJECT_ROOT, objects_of, only, record_custom_timeouts, run_components

IMAGE = "ghcr.io/acme/ai-model:1.4.2"
POOL = GpuSchedulingContract.for_pool("gpu-a10g", gpus_per_node=4, gpu_model="A10G",
                                      zones=["us-east-1a", "us-east-1b", "us-east-1c"])


def build(preview: bool, **fields: Any) -> Capture:
    args = InferenceServiceArgs(**{"image": IMAGE, **fields})
    return run_components(lambda: InferenceService("svc", args), preview=preview)


def pod_spec(capture: Capture) -> dict[str, Any]:
    return only(capture, "Deployment")["spec"]["template"]["spec"]


def container(capture: Capture) -> dict[str, Any]:
    return pod_spec(capture)["containers"][0]


def test_seed_article_example(preview: bool) -> None:
    capture = run_components(
        lambda: InferenceService("ai-inference-service", InferenceServiceArgs(
            image=IMAGE, replicas=3, port=8080,
            resources=ResourceSpec(cpu="2", memory="8Gi", cpu_limit="4", memory_limit="8Gi"))),
        preview=preview,
    )
    deployment = only(capture, "Deployment")
    assert deployment["metadata"]["name"] == "ai-inference-service"
    assert deployment["spec"]["replicas"] == 3
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert server["ports"][0] == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    assert server["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}
    assert only(capture, "Service")["spec"]["ports"][0]["port"] == 8080


def test_children_are_parented_named_and_typed(preview: bool) -> None:
    capture = build(preview, autoscaling=AutoscalingSpec())
    [component] = capture.of_type("haai:index:InferenceService")
    children = {r.name: r.type_token for r in capture.children_of(component.urn)}
    assert children == {
        "svc-sa": "kubernetes:core/v1:ServiceAccount",
        "svc-deployment": "kubernetes:apps/v1:Deployment",
        "svc-service": "kubernetes:core/v1:Service",
        "svc-pdb": "kubernetes:policy/v1:PodDisruptionBudget",
        "svc-netpol": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "svc-hpa": "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
    }
    labels = only(capture, "Deployment")["metadata"]["labels"]
    assert {k.split("/")[1] for k in labels} == {"name", "instance", "component", "part-of", "managed-by"}
    assert only(capture, "Deployment")["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "svc", "app.kubernetes.io/instance": "svc"}


def test_hpa_metrics_behavior_and_replicas_ownership(preview: bool) -> None:
    scaling = AutoscalingSpec(min_replicas=4, max_replicas=12, target_cpu_utilization=60,
                              metric=MetricSpec(type="pods", name="DCGM_FI_DEV_GPU_UTIL", target_average_value="70"))
    capture = build(preview, autoscaling=scaling)
    hpa = only(capture, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (4, 12)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "svc"}
    assert hpa["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
        {"type": "Pods", "pods": {"metric": {"name": "DCGM_FI_DEV_GPU_UTIL"},
                                  "target": {"type": "AverageValue", "averageValue": "70"}}},
    ]
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    [deployment] = [r for r in capture.resources if r.type_token == "kubernetes:apps/v1:Deployment"]
    assert deployment.inputs["spec"]["replicas"] == 4
    assert deployment.ignore_changes == ("spec.replicas",)


def test_external_metric_and_no_hpa_without_autoscaling(preview: bool) -> None:
    metric = MetricSpec(type="external", name="queue_time_ms", target_average_value="250", selector={"q": "chat"})
    capture = build(preview, autoscaling=AutoscalingSpec(target_cpu_utilization=None, metric=metric))
    assert only(capture, "HorizontalPodAutoscaler")["spec"]["metrics"] == [
        {"type": "External", "external": {"metric": {"name": "queue_time_ms", "selector": {"matchLabels": {"q": "chat"}}},
                                          "target": {"type": "AverageValue", "averageValue": "250"}}}]
    plain = build(preview)
    assert objects_of(plain, "HorizontalPodAutoscaler") == []
    [deployment] = [r for r in plain.resources if r.type_token == "kubernetes:apps/v1:Deployment"]
    assert deployment.ignore_changes == ()


def test_pdb_max_unavailable_or_min_available(preview: bool) -> None:
    pdb = only(build(preview), "PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                   "selector": {"matchLabels": {"app.kubernetes.io/name": "svc", "app.kubernetes.io/instance": "svc"}}}
    pdb = only(build(preview, disruption=DisruptionSpec(max_unavailable=None, min_available="50%")),
               "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == "50%" and "maxUnavailable" not in pdb


@pytest.mark.parametrize("placement", ["required", "preferred"])
def test_placement_strength(preview: bool, placement: str) -> None:
    spec = pod_spec(build(preview, anti_affinity=placement, zone_spread=placement, node_pool=POOL))
    anti = spec["affinity"]["podAntiAffinity"]
    [spread] = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone" and spread["maxSkew"] == 1
    assert spread["nodeTaintsPolicy"] == "Honor" and spread["matchLabelKeys"] == ["pod-template-hash"]
    if placement == "required":
        assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"
        assert spread["whenUnsatisfiable"] == "DoNotSchedule" and spread["minDomains"] == 3
    else:
        assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == \
            "kubernetes.io/hostname"
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and "minDomains" not in spread


@pytest.mark.parametrize(("zones", "min_domains"), [(1, None), (2, 2), (3, 3)])
def test_min_domains_waits_for_every_zone_of_a_multi_zone_pool(zones: int, min_domains: int | None) -> None:
    pool = GpuSchedulingContract.for_pool("gpu", gpus_per_node=4, gpu_model="A10G",
                                          zones=[f"us-east-1{z}" for z in "abc"[:zones]])
    [spread] = pod_spec(build(False, node_pool=pool))["topologySpreadConstraints"]
    assert spread.get("minDomains") == min_domains  # one zone: nothing to wait for


def test_gpu_requests_equal_limits_and_pool_contract(preview: bool) -> None:
    capture = build(preview, node_pool=POOL, resources=ResourceSpec(gpus=2))
    resources = container(capture)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"
    spec = pod_spec(capture)
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true", "ha-ai-stack/gpu-pool": "gpu-a10g"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_gpu_request_over_node_capacity_names_both_numbers() -> None:
    with pytest.raises(ArgsError, match="asks for 8 GPUs but a node of pool 'gpu-a10g' has 4"):
        InferenceServiceArgs(image=IMAGE, node_pool=POOL, resources=ResourceSpec(gpus=8))
    with pytest.raises(ArgsError, match="needs node_pool"):
        InferenceServiceArgs(image=IMAGE, resources=ResourceSpec(gpus=1))


@pytest.mark.parametrize(
    ("server", "port", "ready", "live"),
    [("triton", 8000, "/v2/health/ready", "/v2/health/live"),
     ("vllm", 8000, "/health", "/health"),
     ("custom", 8080, "/healthz", "/healthz")],
)
def test_probe_presets(preview: bool, server: str, port: int, ready: str, live: str) -> None:
    server_container = container(build(preview, server=server, model_load_seconds=1200))
    assert server_container["ports"][0]["containerPort"] == port
    assert server_container["readinessProbe"]["httpGet"] == {"path": ready, "port": "http"}
    assert server_container["livenessProbe"]["httpGet"] == {"path": live, "port": "http"}
    startup = server_container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1200
    assert startup["failureThreshold"] == 1200 // STARTUP_PERIOD_SECONDS


def test_triton_exposes_metrics_and_custom_paths_override(preview: bool) -> None:
    capture = build(preview, server="triton")
    assert container(capture)["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"},
                                           {"name": "metrics", "containerPort": 8002, "protocol": "TCP"}]
    assert only(capture, "Service")["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 8002, "targetPort": "metrics", "protocol": "TCP"}]
    same_port = build(preview, server="custom", port=9000, metrics_port=9000)  # one port serves both
    assert [p["name"] for p in container(same_port)["ports"]] == ["http"]
    assert [p["name"] for p in only(same_port, "Service")["spec"]["ports"]] == ["http"]
    custom = container(build(preview, readiness_path="/ready", liveness_path="/live", port=9000))
    assert custom["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert custom["livenessProbe"]["httpGet"]["path"] == "/live"
    assert custom["ports"][0]["containerPort"] == 9000


def test_zero_downtime_rollout(preview: bool) -> None:
    capture = build(preview, termination_grace_period_seconds=300, pre_stop_sleep_seconds=20, model_load_seconds=900)
    spec = only(capture, "Deployment")["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert spec["progressDeadlineSeconds"] > 900
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 300
    assert container(capture)["lifecycle"] == {"preStop": {"sleep": {"seconds": 20}}}
    # No sleep, no hook at all: API servers before 1.33 refuse a zero sleep.
    assert "lifecycle" not in container(build(preview, pre_stop_sleep_seconds=0))


def test_restricted_security_and_writable_scratch(preview: bool) -> None:
    capture = build(preview, shm_size="4Gi", model_cache_size="200Gi")
    spec = pod_spec(capture)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    context = container(capture)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v["emptyDir"] for v in spec["volumes"]}
    assert volumes == {"tmp": {"sizeLimit": "1Gi"}, "model-cache": {"sizeLimit": "200Gi"},
                       "dshm": {"medium": "Memory", "sizeLimit": "4Gi"}}
    mounts = {m["mountPath"] for m in container(capture)["volumeMounts"]}
    assert mounts == {"/tmp", "/models", "/dev/shm"}


@pytest.mark.parametrize(
    ("image", "reason"),
    [("ghcr.io/acme/model:latest", "uses the 'latest' tag"),
     ("ghcr.io/acme/model", "has no tag"),
     ("registry.local:5000/acme/model", "has no tag"),
     ("ghcr.io/acme/model@sha256:abc", "malformed digest"),
     ("ghcr.io/acme/model:1.0:latest", "uses the 'latest' tag")],  # the tag is after the last ':'
)
def test_unpinned_images_are_rejected(image: str, reason: str) -> None:
    with pytest.raises(ArgsError, match=reason):
        InferenceServiceArgs(image=image)


def test_pinned_images_are_accepted() -> None:
    digest = "ghcr.io/acme/model@sha256:" + "a" * 64
    for image in (digest, "registry.local:5000/acme/model:2.0", "nvcr.io/nvidia/tritonserver:24.08-py3"):
        assert InferenceServiceArgs(image=image).image == image


def test_env_secrets_and_priority_class(preview: bool) -> None:
    capture = build(
        preview,
        env={"HF_HOME": "/models"},
        secret_env={"HF_TOKEN": SecretKeyRef(secret="huggingface", key="token")},
        env_from_secrets=["model-registry"],
        priority_class_name="inference-critical",
    )
    server = container(capture)
    assert server["env"] == [
        {"name": "HF_HOME", "value": "/models"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "huggingface", "key": "token"}}},
    ]
    assert server["envFrom"] == [{"secretRef": {"name": "model-registry"}}]
    assert pod_spec(capture)["priorityClassName"] == "inference-critical"


def test_redis_connection_uses_secret_ref_and_opens_egress(preview: bool) -> None:
    redis = RedisConnection(
        seed_hosts=["redis-0.redis-headless.ns.svc.cluster.local", "redis-1.redis-headless.ns.svc.cluster.local"],
        password_secret_name="redis-auth",
        member_selector={"app.kubernetes.io/name": "redis"},
        client_labels={"redis-client": "true"},
        namespace="default",
    )
    capture = build(preview, redis=redis, env={"MODE": "serve"},
                    secret_env={"HF_TOKEN": SecretKeyRef(secret="huggingface", key="token")})
    assert container(capture)["env"] == [  # the service's own env first, then Redis'
        {"name": "MODE", "value": "serve"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "huggingface", "key": "token"}}},
        {"name": "REDIS_CLUSTER_NODES",
         "value": "redis-0.redis-headless.ns.svc.cluster.local:6379,redis-1.redis-headless.ns.svc.cluster.local:6379"},
        {"name": "REDIS_PORT", "value": "6379"},
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}}]
    env = {e["name"]: e for e in container(capture)["env"]}
    # The password reaches the pod only through the Secret: no env var carries a literal value for it.
    assert [e["name"] for e in env.values() if "PASSWORD" in e["name"] and "value" in e] == []
    labels = only(capture, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["redis-client"] == "true"
    egress = only(capture, "NetworkPolicy")["spec"]["egress"]
    assert {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}}}],
            "ports": [{"port": 6379, "protocol": "TCP"}]} in egress


def test_network_policy_allows_own_namespace_and_listed_ones(preview: bool) -> None:
    policy = only(build(preview, allow_from_namespaces=["ingress-nginx"], egress_https=False), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    ]
    assert policy["egress"] == [{  # cluster DNS only: no HTTPS, no Redis
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]


def test_endpoint_output(preview: bool) -> None:
    endpoints: list[str] = []

    def program() -> None:
        InferenceService("svc", InferenceServiceArgs(image=IMAGE, namespace="ml")).endpoint.apply(endpoints.append)

    run_components(program, preview=preview)
    assert endpoints == ["http://svc.ml.svc.cluster.local:8080"]


def test_service_account_annotations_and_no_token(preview: bool) -> None:
    role = "arn:aws:iam::123456789012:role/model-reader"
    capture = build(preview, service_account_annotations={"eks.amazonaws.com/role-arn": role})
    account = only(capture, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role}
    assert account["automountServiceAccountToken"] is False
    assert "annotations" not in only(capture, "Deployment")["metadata"]


@pytest.mark.parametrize(("fields", "create", "update"), [
    # 3 replicas, one at a time: 3 x (1800 + 600) + 300; a new Deployment loads every pod at once.
    ({}, "2700s", "7500s"),
    # a surge of 3 rolls all three in one step
    ({"max_surge": 3}, "2700s", "2700s"),
    # a surge of 2: two steps (ceil(3 / 2))
    ({"max_surge": 2}, "2700s", "5100s"),
    # with an HPA, as many replicas as its ceiling may be running: 12 x (2400 + 600) + 300
    ({"model_load_seconds": 2400, "autoscaling": {"max_replicas": 12}}, "3300s", "36300s"),
])
def test_awaits_follow_the_rollout_arithmetic(monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any],
                                              create: str, update: str) -> None:
    seen = record_custom_timeouts(monkeypatch)
    capture = build(False, **fields)
    assert seen["svc-deployment"] == (create, update)
    strategy = only(capture, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": fields.get("max_surge", 1)}
    assert only(capture, "Deployment")["spec"]["progressDeadlineSeconds"] == fields.get("model_load_seconds", 1800) + 600


def test_the_model_fetch_is_told_its_source_cache_and_how_long_a_partial_download_may_be_anothers(
        preview: bool) -> None:
    shared = pod_spec(build(preview, server="vllm", model={
        "source": "s3://models/llama", "manifest": "s3://models/llama.manifest.json", "path": "/models/llama",
        "cache": "pvc", "cache_claim": "shared-efs", "concurrency": 4}))
    python_env = [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    assert shared["initContainers"][0]["env"] == [
        {"name": "MODEL_SOURCE", "value": "s3://models/llama"}, {"name": "MODEL_PATH", "value": "/models/llama"},
        {"name": "MODEL_MANIFEST", "value": "s3://models/llama.manifest.json"},
        {"name": "MODEL_CONCURRENCY", "value": "4"},
        {"name": "MODEL_STALE_SECONDS", "value": "3600"},  # a shared claim: another replica may be downloading
        *python_env]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "shared-efs"}} in shared["volumes"]
    own = pod_spec(build(preview, server="vllm", model_cache_size="300Gi", model={
        "source": "s3://models/llama", "cache": "ephemeral", "cache_storage_class": "gp3"}))
    assert own["initContainers"][0]["env"] == [
        {"name": "MODEL_SOURCE", "value": "s3://models/llama"}, {"name": "MODEL_PATH", "value": "/models/model"},
        {"name": "MODEL_CONCURRENCY", "value": "8"},
        {"name": "MODEL_STALE_SECONDS", "value": "0"},  # the pod's own volume: nobody else writes there
        *python_env]
    assert {"name": "model-cache", "ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "300Gi"}}}}}
            } in own["volumes"]


def test_the_fetch_script_ships_in_a_config_map_named_by_its_content(preview: bool) -> None:
    """A changed script is a new ConfigMap and so a new pod template (a rollout), never an in-place swap."""
    capture = build(preview, server="vllm", model={"source": "s3://models/llama"})
    script = (PROJECT_ROOT / "components" / "inference" / "scripts" / "fetch_model.py").read_text()
    [config_map] = objects_of(capture, "ConfigMap")
    assert config_map["metadata"]["name"] == f"svc-fetch-{hashlib.sha256(script.encode()).hexdigest()[:10]}"
    assert config_map["data"] == {"fetch_model.py": script}
    assert {"name": "model-fetch", "configMap": {"name": config_map["metadata"]["name"], "defaultMode": 0o444}} in \
        pod_spec(capture)["volumes"]
