"""Every shipped stack: builds through the real config path, passes strict schemas, renders deterministically."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ha_ai_stack_tools.capture import SECRET_MASK, capture_stack
from ha_ai_stack_tools.render import manifests, summary, write_manifests

from .schemas import validate_object

from .conftest import PROJECT_ROOT, RENDERS, STACKS, haai, project_copy, render_capture, stack_capture


@pytest.mark.parametrize("stack", STACKS)
def test_stack_builds_in_update_and_preview(stack: str, preview: bool) -> None:
    capture = stack_capture(stack, preview)
    kinds = {m["kind"] for m in manifests(capture)}
    assert {"Namespace", "NetworkPolicy", "Deployment", "Service", "PodDisruptionBudget", "ServiceAccount"} <= kinds
    assert capture.exports["tier"] == stack
    assert capture.exports["redis"]["password_secret"] == "redis-auth"
    assert capture.exports["redis"]["seed_nodes"].count(":6379") == {"dev": 3, "staging": 6, "prod": 6}[stack]
    assert capture.exports["endpoints"] == {
        name: f"http://{name}.{capture.exports['namespace']}.svc.cluster.local:{port}"
        for name, port in _service_ports(capture).items()
    }


def _service_ports(capture) -> dict[str, int]:
    return {m["metadata"]["name"]: m["spec"]["ports"][0]["port"] for m in manifests(capture)
            if m["kind"] == "Service" and m["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"}


@pytest.mark.parametrize("stack", STACKS)
def test_preview_renders_the_same_objects_as_update(stack: str) -> None:
    """Only the generated Redis password is computed by the engine; every other field is known in a preview."""
    preview, update = manifests(stack_capture(stack, True)), manifests(stack_capture(stack, False))
    secrets = [(p, u) for p, u in zip(preview, update) if u["kind"] == "Secret"]
    assert [(p["stringData"], u["stringData"]) for p, u in secrets] == [(SECRET_MASK, {"password": SECRET_MASK})]
    without_secret_data = [{k: v for k, v in m.items() if k != "stringData"} for m in preview]
    assert without_secret_data == [{k: v for k, v in m.items() if k != "stringData"} for m in update]


@pytest.mark.parametrize("render", RENDERS)
def test_every_object_passes_strict_schema(render: str) -> None:
    stack = render if render in STACKS else "prod"
    version = yaml.safe_load((PROJECT_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"][
        "haai:kubernetes_version"]
    objects = manifests(render_capture(render))
    assert objects
    for manifest in objects:
        validate_object(manifest, version)


@pytest.mark.parametrize("render", RENDERS)
def test_every_resource_hangs_under_the_stack_component(render: str) -> None:
    """A resource registered without its parent sits at the stack's root: its URN changes when it is moved back,
    and the engine replaces it; consumers also lose the component's options (providers, protect, depends_on)."""
    capture = render_capture(render)
    by_urn = {r.urn: r for r in capture.resources}
    roots = sorted(f"{r.type_token} {r.name}" for r in capture.resources if r.parent not in by_urn)
    stack = render if render in STACKS else "prod"
    assert roots == [f"haai:index:HaAiStack {stack}", f"pulumi:providers:kubernetes {stack}-kubernetes"]


PROD_COMPONENTS = {"namespace": {"prod"}, "inference": {"ai-inference-service", "triton", "vllm-chat"},
                   "redis": {"redis"}, "gpu-metrics": {"dcgm-exporter"}, "device-plugin": {"nvidia-device-plugin"},
                   "monitoring": {"prod"}}


@pytest.mark.parametrize(("render", "components"), [
    ("dev", {"namespace": {"dev"}, "inference": {"ai-inference-service", "triton"}, "redis": {"redis"},
             "device-plugin": {"nvidia-device-plugin"}}),
    ("staging", {"namespace": {"staging"}, "inference": {"ai-inference-service", "triton"}, "redis": {"redis"},
                 "gpu-metrics": {"dcgm-exporter"}, "device-plugin": {"nvidia-device-plugin"},
                 "gpu-node-pool": {"gpu-a10g"}, "monitoring": {"staging"}}),
    ("prod", PROD_COMPONENTS), ("prod-variant", PROD_COMPONENTS)])
def test_every_object_carries_the_recommended_labels_of_what_made_it(render: str, components: dict[str, set[str]]) -> None:
    """`kubectl get all -l app.kubernetes.io/component=gpu-metrics` (and dashboards, cost reports) find an
    object by these labels: part of ha-ai-stack, managed by Pulumi, and the component and name that made it."""
    found: dict[str, set[str]] = {}
    for manifest in manifests(render_capture(render)):
        labels = manifest["metadata"].get("labels", {})
        assert (labels.get("app.kubernetes.io/part-of"), labels.get("app.kubernetes.io/managed-by")) == (
            "ha-ai-stack", "pulumi"), f"{manifest['kind']} {manifest['metadata']['name']}"
        found.setdefault(labels["app.kubernetes.io/component"], set()).add(labels["app.kubernetes.io/name"])
    assert found == components


def test_prod_meets_the_ha_rules() -> None:
    objects = manifests(stack_capture("prod"))
    deployments = [m for m in objects if m["kind"] == "Deployment"]
    pdbs = {m["metadata"]["name"] for m in objects if m["kind"] == "PodDisruptionBudget"}
    for deployment in deployments:
        spec = deployment["spec"]
        assert spec["replicas"] >= 3
        assert deployment["metadata"]["name"] in pdbs
        pod = spec["template"]["spec"]
        assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
        assert pod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    namespace = next(m for m in objects if m["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deny = next(m for m in objects if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("stack", STACKS)
def test_namespaced_objects_wait_for_the_namespace(stack: str) -> None:
    capture = stack_capture(stack)
    [namespace] = capture.of_type("kubernetes:core/v1:Namespace")
    own = namespace.inputs["metadata"]["name"]
    namespaced = [r for r in capture.resources
                  if r.custom and r.inputs.get("metadata", {}).get("namespace") == own]
    assert namespaced
    for resource in namespaced:
        assert namespace.urn in resource.dependencies, resource.name


def test_dev_uses_its_tier_defaults() -> None:
    deployments = [m for m in manifests(stack_capture("dev")) if m["kind"] == "Deployment"]
    assert {d["spec"]["replicas"] for d in deployments} == {1}  # dev's default


def test_summary_names_ha_features() -> None:
    rows = {(row.kind, row.name): row for row in summary(manifests(stack_capture("prod")))}
    triton = rows["Deployment", "ai-serving/triton"]
    assert triton.replicas == "3"
    for feature in ("anti-affinity:hard", "zone-spread:hard", "probes:startup/readiness/liveness",
                    "rollout:surge=3,unavailable=0", "gpu:1", "hpa:3-12", "pdb:maxUnavailable=1"):
        assert feature in triton.features


@pytest.mark.parametrize("stack", STACKS)
def test_rendering_twice_is_byte_identical(stack: str, tmp_path: Path) -> None:
    first = write_manifests(manifests(capture_stack(stack, project_root=PROJECT_ROOT)), tmp_path / "a")
    second = write_manifests(manifests(capture_stack(stack, project_root=PROJECT_ROOT)), tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()


def test_secret_outputs_are_masked_in_the_capture() -> None:
    """A Pulumi secret reaching a resource input is replaced before anything can print or write it."""
    import pulumi
    import pulumi_kubernetes as k8s

    from .conftest import run_components

    def program() -> None:
        k8s.core.v1.Secret("s", metadata={"name": "s", "namespace": "n"},
                           string_data={"password": pulumi.Output.secret("hunter2")})

    capture = run_components(program)
    [secret] = capture.resources
    assert secret.inputs["stringData"] == {"password": SECRET_MASK}
    assert "hunter2" not in repr(capture)


def test_cli_render_writes_valid_manifests(tmp_path: Path) -> None:
    result = haai("render", "--stack", "prod", "--out", str(tmp_path), cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    assert "stack prod:" in result.stdout and "hpa:3-12" in result.stdout
    files = sorted(tmp_path.glob("*.yaml"))
    assert len(files) == len(manifests(stack_capture("prod")))
    for path in files:
        validate_object(yaml.safe_load(path.read_text()), "1.33")


def test_cli_render_removes_objects_that_no_longer_exist(tmp_path: Path) -> None:
    stale = tmp_path / "ai-serving.deployment.gone.yaml"
    stale.write_text("# Rendered by haai from the Pulumi program under mocks. Secrets are masked.\n")
    keep = tmp_path / "notes.yaml"
    keep.write_text("mine: true\n")
    assert haai("render", "--stack", "dev", "--out", str(tmp_path), cwd=PROJECT_ROOT).returncode == 0
    assert not stale.exists() and keep.exists()


def test_cli_missing_stack_exits_2() -> None:
    result = haai("render", "--stack", "qa", cwd=PROJECT_ROOT)
    assert result.returncode == 2
    assert "stack 'qa' not found" in result.stderr and "(stacks: dev, prod, staging)" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_config_exits_2_with_the_config_error(tmp_path: Path) -> None:
    def break_two_keys(config: dict) -> None:
        config["haai:inference"][0]["replicas"] = 0
        config["haai:inference"][1]["image"] = "nvcr.io/nvidia/tritonserver:latest"

    project = project_copy(tmp_path, "prod", break_two_keys)
    result = haai("render", "--stack", "prod", "--out", str(tmp_path / "out"), cwd=project)
    assert result.returncode == 2
    assert "invalid stack config (2 problems)" in result.stderr
    assert "haai:inference[0].replicas: must be >= 1 (got 0)" in result.stderr
    assert "haai:inference[1].image: image 'nvcr.io/nvidia/tritonserver:latest' uses the 'latest' tag" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_generated_password_is_unknown_in_preview_and_masked_in_update() -> None:
    import pulumi_kubernetes as k8s
    import pulumi_random as random


    from .conftest import run_components

    def program() -> None:
        password = random.RandomPassword("pw", length=32, special=False)
        k8s.core.v1.Secret("s", metadata={"name": "s", "namespace": "n"}, string_data={"password": password.result})

    def secret_data(preview: bool) -> object:
        capture = run_components(program, preview=preview)
        [secret] = capture.of_type("kubernetes:core/v1:Secret")
        return secret.inputs["stringData"]

    # Secret-ness wins over unknown-ness: a preview never shows that a secret exists but not its value.
    assert secret_data(preview=False) == {"password": SECRET_MASK}
    assert secret_data(preview=True) == SECRET_MASK  # unknown as a whole in a preview, and still masked
    assert "mock-" not in repr(run_components(program).resources)


def test_engine_computed_values_are_unknown_in_preview() -> None:
    import pulumi_kubernetes as k8s
    import pulumi_random as random

    from ha_ai_stack_tools.capture import UNKNOWN

    from .conftest import run_components

    def program() -> None:
        suffix = random.RandomString("suffix", length=8, special=False)
        k8s.core.v1.ConfigMap("c", metadata={"name": "c", "namespace": "n"}, data={"suffix": suffix.result})

    [config_map] = run_components(program, preview=True).of_type("kubernetes:core/v1:ConfigMap")
    assert config_map.inputs["data"] == {"suffix": UNKNOWN}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_kubernetes_object_goes_through_the_stacks_own_cluster_provider(stack: str) -> None:
    capture = stack_capture(stack)
    [provider] = capture.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["context"] == f"acme-{stack}"
    objects = [r for r in capture.resources if r.custom and r.type_token.startswith("kubernetes:")]
    assert objects and all(r.provider.startswith(provider.urn + "::") for r in objects), \
        [r.name for r in objects if not r.provider.startswith(provider.urn)]


def test_without_a_cluster_target_there_is_no_explicit_provider() -> None:
    from .conftest import run_stack_config

    capture = run_stack_config({"tier": "dev", "namespace": "team-a"})
    assert capture.of_type("pulumi:providers:kubernetes") == []


def test_a_service_may_not_take_a_name_the_stack_uses() -> None:
    from ha_ai_stack import ConfigError

    from .conftest import run_stack_config

    with pytest.raises(ConfigError) as raised:
        run_stack_config({"tier": "dev", "redis": {"enabled": True, "replicas_per_shard": 0},
                          "inference": [{"name": "redis", "image": "a/b:1"}, {"name": "default-deny", "image": "a/b:1"}]})
    assert raised.value.problems == [
        "haai:inference[0].name: 'redis' is taken by the Redis Cluster's Service, PDB and NetworkPolicy: choose "
        "another name",
        "haai:inference[1].name: 'default-deny' is taken by the namespace's default-deny NetworkPolicy: choose "
        "another name"]
    run_stack_config({"tier": "dev", "inference": [{"name": "redis", "image": "a/b:1"}]})  # no Redis: free


def test_prod_resource_tree_keeps_its_identities() -> None:
    """The engine knows a resource by its type, logical name and parent. A change to any of them deletes the old
    object and creates a new one (a Redis StatefulSet, the shared device plugin) unless an alias carries it over,
    so the tree is written out here: changing it must be a deliberate, aliased change."""
    capture = stack_capture("prod")
    by_urn = {r.urn: r.name for r in capture.resources}
    tree: dict[str | None, set[str]] = {}
    for resource in capture.resources:
        tree.setdefault(by_urn.get(resource.parent), set()).add(f"{resource.type_token.split(':')[-1]} {resource.name}")

    def workload(name: str, *extra: str) -> set[str]:
        return {f"Deployment {name}-deployment", f"NetworkPolicy {name}-netpol", f"PodDisruptionBudget {name}-pdb",
                f"Service {name}-service", f"ServiceAccount {name}-sa", *extra}

    assert tree == {
        None: {"HaAiStack prod", "kubernetes prod-kubernetes"},
        "prod": {
            "Addon prod-acme-prod-ebs-csi-driver", "ConfigMap prod-prerequisites", "GpuMetrics gpu-metrics",
            "GpuNodePool gpu-a10g", "InferenceService ai-inference-service", "InferenceService triton",
            "InferenceService vllm-chat", "Namespace prod-namespace", "NetworkPolicy prod-default-deny",
            "NvidiaDevicePlugin nvidia-device-plugin", "PodMonitor prod-redis-podmonitor",
            "PodMonitor prod-triton-podmonitor", "PodMonitor prod-vllm-chat-podmonitor",
            "PriorityClassPatch prod-priority-class-inference-critical", "PrometheusRule prod-ha-ai-stack-prometheusrule",
            "RedisCluster redis", "Role prod-acme-prod-ebs-csi-role", "Role prod-redis-backup-role",
            "Role prod-triton-role", "Role prod-vllm-chat-role", "RolePolicy prod-redis-backup-role-policy",
            "RolePolicy prod-triton-role-policy", "RolePolicy prod-vllm-chat-role-policy",
            "RolePolicyAttachment prod-acme-prod-ebs-csi-role-policy", "StorageClassPatch prod-redis-storage-class"},
        "ai-inference-service": workload("ai-inference-service"),
        "triton": workload("triton", "HorizontalPodAutoscaler triton-hpa"),
        "vllm-chat": workload("vllm-chat", "ConfigMap vllm-chat-model-fetch"),
        "gpu-a10g": {"LaunchTemplate gpu-a10g-launch-template", "NodeGroup gpu-a10g-node-group",
                     "Role gpu-a10g-node-role", "RolePolicyAttachment gpu-a10g-AmazonEC2ContainerRegistryReadOnly",
                     "RolePolicyAttachment gpu-a10g-AmazonEKSWorkerNodePolicy",
                     "RolePolicyAttachment gpu-a10g-AmazonEKS_CNI_Policy"},
        "gpu-metrics": {"ConfigMap gpu-metrics-adapter-rules", "DaemonSetPatch gpu-metrics-exporter",
                        "ServiceMonitor gpu-metrics-service-monitor", "ServicePatch gpu-metrics-service"},
        "nvidia-device-plugin": {"DaemonSetPatch nvidia-device-plugin-daemonset"},
        "redis": {"ConfigMap redis-config", "CronJob redis-backup-schedule", "CronJob redis-balance-schedule",
                  "Job redis-balance", "Job redis-bootstrap", "NetworkPolicy redis-bootstrap-netpol",
                  "NetworkPolicy redis-netpol", "NetworkPolicy redis-s3-netpol", "PodDisruptionBudget redis-pdb",
                  "RandomPassword redis-password", "Secret redis-secret", "Service redis-client",
                  "Service redis-headless", "ServiceAccount redis-backup-sa", "StatefulSet redis-us-east-1a-sts",
                  "StatefulSet redis-us-east-1b-sts", "StatefulSet redis-us-east-1c-sts"},
    }
