"""The policy pack, driven as the engine drives it: a separate process, over the gRPC analyzer protocol.

Every policy has a case that makes it fire and a close case that must not, each built from a real
rendered object of the prod stack changed in one field.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import analyzer_pb2_grpc

from ha_ai_stack_tools.capture import UNKNOWN, CapturedResource
from ha_ai_stack_tools.policy_check import Finding, analyze, configure, running_plugin, tier_config

from .conftest import policy_pack, PROJECT_ROOT, STACKS, haai, project_copy, stack_capture

PACK = PROJECT_ROOT / "policies"
Mutation = Callable[[list[CapturedResource]], None]


@pytest.fixture(scope="module")
def pack() -> Iterator[Any]:
    """One pack process for the module; stopped when the module ends, pass or fail."""
    with policy_pack(PACK) as stub:
        yield stub


def find(resources: list[CapturedResource], kind: str, name: str) -> dict[str, Any]:
    """The inputs of the resource of ``kind`` whose metadata.name is ``name`` (to change in place)."""
    for resource in resources:
        if resource.inputs.get("kind") == kind and resource.inputs.get("metadata", {}).get("name") == name:
            return resource.inputs
    raise KeyError(f"{kind} {name}")


def redis_config(resources: list[CapturedResource]) -> dict[str, Any]:
    """The data of the Redis ConfigMap (content-named, so found by what it holds)."""
    return next(r.inputs["data"] for r in resources
                if r.inputs.get("kind") == "ConfigMap" and "redis.conf" in r.inputs.get("data", {}))


def pod(resources: list[CapturedResource], kind: str, name: str) -> dict[str, Any]:
    return find(resources, kind, name)["spec"]["template"]["spec"]


def container(resources: list[CapturedResource], name: str) -> dict[str, Any]:
    return pod(resources, "Deployment", name)["containers"][0]


def findings_after(pack: Any, mutate: Mutation, tier: str = "prod", stack: str = "prod") -> list[Finding]:
    resources = copy.deepcopy(stack_capture(stack).resources)
    mutate(resources)
    configure(pack, tier_config(PACK, tier))
    return analyze(pack, resources)


def drop_egress(resources: list[CapturedResource], policy: str, which: Callable[[dict[str, Any]], bool]) -> None:
    """Remove the one egress rule of NetworkPolicy ``policy`` that ``which`` picks (by what it allows)."""
    egress = find(resources, "NetworkPolicy", policy)["spec"]["egress"]
    [rule] = [r for r in egress if which(r)]
    egress.remove(rule)


def set_in(path: list[str | int], value: Any, kind: str, name: str) -> Mutation:
    """Change one field of the object ``kind``/``name``; ``kind`` may be a Pulumi type token (AWS resources)."""
    def mutate(resources: list[CapturedResource]) -> None:
        target = (next(r.inputs for r in resources if r.type_token == kind) if ":" in kind
                  else find(resources, kind, name))
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return mutate


DELETE = object()
POD = ["spec", "template", "spec"]
SERVER = [*POD, "containers", 0]
D, STS = "Deployment", "StatefulSet"

LT, NG = "aws:ec2/launchTemplate:LaunchTemplate", "aws:eks/nodeGroup:NodeGroup"
CASES: list[tuple[str, str, Mutation, bool]] = [
    ("references-resolve", "unknown PriorityClass", set_in([*POD, "priorityClassName"], "batch-low", D, "triton"), True),
    ("references-resolve", "system PriorityClass",
     set_in([*POD, "priorityClassName"], "system-node-critical", D, "triton"), False),
    ("workload-min-replicas", "2 replicas", set_in(["spec", "replicas"], 2, D, "ai-inference-service"), True),
    ("workload-min-replicas", "4 replicas", set_in(["spec", "replicas"], 4, D, "ai-inference-service"), False),
    ("pdb-coverage", "PDB selects other pods",
     set_in(["spec", "selector", "matchLabels", "app.kubernetes.io/name"], "other", "PodDisruptionBudget", "triton"),
     True),
    ("pdb-coverage", "PDB allows no disruption",
     set_in(["spec", "maxUnavailable"], 0, "PodDisruptionBudget", "triton"), True),
    ("pdb-coverage", "PDB allows two", set_in(["spec", "maxUnavailable"], 2, "PodDisruptionBudget", "triton"), False),
    ("pod-spread", "no anti-affinity", set_in([*POD, "affinity"], {}, D, "triton"), True),
    ("pod-spread", "no zone spread", set_in([*POD, "topologySpreadConstraints"], [], D, "triton"), True),
    ("pod-spread", "soft anti-affinity",
     set_in([*POD, "affinity", "podAntiAffinity"], {"preferredDuringSchedulingIgnoredDuringExecution": [
         {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {}}}]},
         D, "triton"), False),
    ("hpa-bounds", "HPA floor 2", set_in(["spec", "minReplicas"], 2, "HorizontalPodAutoscaler", "triton"), True),
    ("hpa-bounds", "HPA max below min", set_in(["spec", "maxReplicas"], 2, "HorizontalPodAutoscaler", "triton"), True),
    ("hpa-bounds", "HPA max equals min", set_in(["spec", "maxReplicas"], 3, "HorizontalPodAutoscaler", "triton"),
     False),
    ("probes", "no readiness probe", set_in([*SERVER, "readinessProbe"], DELETE, D, "ai-inference-service"), True),
    ("probes", "GPU server without startup probe", set_in([*SERVER, "startupProbe"], DELETE, D, "triton"), True),
    ("probes", "CPU server without startup probe",
     set_in([*SERVER, "startupProbe"], DELETE, D, "ai-inference-service"), False),
    ("resources-set", "no memory limit",
     set_in([*SERVER, "resources", "limits", "memory"], DELETE, D, "ai-inference-service"), True),
    ("resources-set", "another CPU limit",
     set_in([*SERVER, "resources", "limits", "cpu"], "6", D, "ai-inference-service"), False),
    ("gpu-scheduling", "GPU request differs from limit",
     set_in([*SERVER, "resources", "requests", "nvidia.com/gpu"], "2", D, "triton"), True),
    ("gpu-scheduling", "no GPU toleration", set_in([*POD, "tolerations"], [], D, "triton"), True),
    ("gpu-scheduling", "tolerates every taint",
     set_in([*POD, "tolerations"], [{"operator": "Exists"}], D, "triton"), False),
    ("image-pinned", "latest tag", set_in([*SERVER, "image"], "vllm/vllm-openai:latest", D, "vllm-chat"), True),
    ("image-pinned", "digest", set_in([*SERVER, "image"], "vllm/vllm-openai@sha256:" + "c" * 64, D, "vllm-chat"),
     False),
    ("pod-security-restricted", "privilege escalation allowed",
     set_in([*SERVER, "securityContext", "allowPrivilegeEscalation"], True, D, "vllm-chat"), True),
    ("pod-security-restricted", "hostPath volume",
     set_in([*POD, "volumes", 0], {"name": "tmp", "hostPath": {"path": "/tmp"}}, D, "vllm-chat"), True),
    ("pod-security-restricted", "read-only root off (allowed by restricted)",
     set_in([*SERVER, "securityContext", "readOnlyRootFilesystem"], False, D, "vllm-chat"), False),
    ("no-literal-secret-env", "literal token",
     set_in([*SERVER, "env", 2], {"name": "HF_TOKEN", "value": "hf_abc"}, D, "vllm-chat"), True),
    ("no-literal-secret-env", "literal non-secret",
     set_in([*SERVER, "env", 2], {"name": "HF_REVISION", "value": "main"}, D, "vllm-chat"), False),
    ("namespace-default-deny", "default deny allows all ingress",
     set_in(["spec", "ingress"], [{}], "NetworkPolicy", "default-deny"), True),
    ("namespace-default-deny", "default deny with a label",
     set_in(["metadata", "labels", "team"], "ml", "NetworkPolicy", "default-deny"), False),
    ("redis-cluster-ha", "AOF off",
     lambda rs: redis_config(rs).update({"redis.conf": redis_config(rs)["redis.conf"].replace(
         "appendonly yes", "appendonly no")}), True),
    ("redis-cluster-ha", "no PVC", set_in(["spec", "volumeClaimTemplates"], [], STS, "redis-us-east-1b"), True),
    ("redis-cluster-ha", "password as a literal",
     set_in([*SERVER, "env", 3], {"name": "REDIS_PASSWORD", "value": "x"}, STS, "redis-us-east-1a"), True),
    ("redis-cluster-ha", "shard 0's replica pinned to its master's zone",
     set_in([*POD, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms",
             0, "matchExpressions", 0, "values"], ["us-east-1a"], STS, "redis-us-east-1b"), True),
    ("redis-cluster-ha", "another storage size",
     set_in(["spec", "volumeClaimTemplates", 0, "spec", "resources", "requests", "storage"], "80Gi", STS,
            "redis-us-east-1b"), False),
    ("inference-reaches-redis", "egress rule to Redis removed",
     lambda rs: drop_egress(rs, "ai-inference-service", lambda rule: {"port": 6379, "protocol": "TCP"} in
                            rule.get("ports", [])), True),
    ("inference-reaches-redis", "client label removed",
     set_in(["spec", "template", "metadata", "labels", "ha-ai-stack/redis-client"], DELETE, D,
            "ai-inference-service"), True),
    ("gpu-pool-ha", "IMDSv1 allowed", set_in(["metadataOptions", "httpTokens"], "optional", LT, ""), True),
    ("gpu-pool-ha", "root volume not encrypted",
     set_in(["blockDeviceMappings", 0, "ebs", "encrypted"], "false", LT, ""), True),
    ("gpu-pool-ha", "one subnet", set_in(["subnetIds"], ["subnet-0a1b2c3d4e5f60001"], NG, ""), True),
    ("gpu-pool-ha", "bigger root volume", set_in(["blockDeviceMappings", 0, "ebs", "volumeSize"], 400, LT, ""),
     False),
    ("inference-reaches-redis", "HTTPS egress removed",
     lambda rs: drop_egress(rs, "ai-inference-service", lambda rule: {"port": 443, "protocol": "TCP"} in
                            rule.get("ports", [])), False),
]


# What each firing case must report: the resource and the message (``*`` stands for a content hash).
EXPECTED: dict[str, tuple[str, str]] = {
    'unknown PriorityClass': ('triton-deployment', 'Deployment ai-serving/triton: spec.template.spec.priorityClassName names PriorityClass batch-low, which the stack does not create and no prerequisite declares.'),
    '2 replicas': ('(stack)', 'ai-serving/ai-inference-service runs 2 replicas; the tier needs at least 3.'),
    'PDB selects other pods': ('triton-deployment', 'ai-serving/triton has 3 replicas and no PodDisruptionBudget selects its pods.'),
    'PDB allows no disruption': ('triton-deployment', 'ai-serving/triton: its PodDisruptionBudget allows no disruption, so node drains block forever.'),
    'no anti-affinity': ('triton-deployment', 'ai-serving/triton: no hostname anti-affinity or spread, so replicas can share a node.'),
    'no zone spread': ('triton-deployment', 'ai-serving/triton: no zone spread, so one zone outage can take every replica.'),
    'HPA floor 2': ('triton-hpa', 'ai-serving/triton: minReplicas 2 is below the tier minimum 3.'),
    'HPA max below min': ('triton-hpa', 'ai-serving/triton: maxReplicas 2 is below minReplicas 3.'),
    'no readiness probe': ('ai-inference-service-deployment', 'ai-serving/ai-inference-service container server serves traffic but has no readinessProbe.'),
    'GPU server without startup probe': ('triton-deployment', 'ai-serving/triton container server uses GPUs but has no startupProbe: liveness can kill it while the model loads.'),
    'no memory limit': ('ai-inference-service-deployment', 'ai-serving/ai-inference-service container server has no limits.memory.'),
    'GPU request differs from limit': ('triton-deployment', 'ai-serving/triton container server: nvidia.com/gpu request 2 differs from limit 1.'),
    'no GPU toleration': ('triton-deployment', 'ai-serving/triton asks for GPUs but does not tolerate the nvidia.com/gpu NoSchedule taint.'),
    'latest tag': ('vllm-chat-deployment', "ai-serving/vllm-chat container server: image 'vllm/vllm-openai:latest' uses the 'latest' tag: pin a version or a digest."),
    'privilege escalation allowed': ('vllm-chat-deployment', 'ai-serving/vllm-chat: container server allows privilege escalation.'),
    'hostPath volume': ('vllm-chat-deployment', 'ai-serving/vllm-chat: volume tmp is a hostPath.'),
    'literal token': ('vllm-chat-deployment', 'ai-serving/vllm-chat container server: env HF_TOKEN carries a literal value; read it from a Secret (valueFrom.secretKeyRef).'),
    'default deny allows all ingress': ('(stack)', 'namespace ai-serving runs workloads but has no default-deny NetworkPolicy.'),
    'AOF off': ('redis-config', 'ai-serving/redis-config-*: appendonly is off, so a restart loses every write since the last snapshot.'),
    'no PVC': ('redis-us-east-1b-sts', 'ai-serving/redis-us-east-1b: Redis data is not on a PersistentVolumeClaim.'),
    'password as a literal': ('redis-us-east-1a-sts', 'ai-serving/redis-us-east-1a: Redis auth must come from a Secret (REDIS_PASSWORD via secretKeyRef in every container).'),
    "shard 0's replica pinned to its master's zone": ('redis-config', 'ai-serving/redis-config-*: members of shard 0 share a zone (redis-us-east-1a-0, redis-us-east-1b-0).'),
    'egress rule to Redis removed': ('ai-inference-service-deployment', 'ai-serving/ai-inference-service: its NetworkPolicies block egress to Redis on 6379 (an outage).'),
    'client label removed': ('ai-inference-service-deployment', "ai-serving/ai-inference-service: Redis' NetworkPolicies block ingress from it on 6379 (an outage)."),
    'IMDSv1 allowed': ('gpu-a10g-launch-template', "gpu-a10g-launch-template: IMDSv2 is not required (httpTokens 'optional')."),
    'root volume not encrypted': ('gpu-a10g-launch-template', 'gpu-a10g-launch-template: a root volume is not encrypted.'),
    'one subnet': ('gpu-a10g-node-group', 'gpu-a10g-node-group: 1 subnets (preflight resolves their zones); GPU pools need at least 2.'),
}


@pytest.mark.parametrize(("policy", "case", "mutate", "fires"), CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_policy_case(pack: Any, policy: str, case: str, mutate: Mutation, fires: bool) -> None:
    hits = [f for f in findings_after(pack, mutate) if f.policy == policy]
    if fires:
        resource, message = EXPECTED[case]
        assert [(f.resource, f.level) for f in hits] == [(resource, "mandatory")], f"{policy}: {case}: {hits}"
        assert fnmatch.fnmatchcase(hits[0].message, message), hits[0].message
    else:
        assert hits == [], f"{policy} fired for: {case}: {hits}"


def test_every_firing_case_names_its_finding() -> None:
    assert {c[1] for c in CASES if c[3]} == set(EXPECTED)


def test_every_policy_has_a_firing_and_a_quiet_case(pack: Any) -> None:
    names = {p.name for p in pack.GetAnalyzerInfo(empty_pb2.Empty()).policies}
    assert {c[0] for c in CASES if c[3]} == names
    assert {c[0] for c in CASES if not c[3]} == names


def test_analyzer_info_documents_every_policy(pack: Any) -> None:
    info = pack.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "ha-ai-stack" and len(info.policies) == 15
    for policy in info.policies:
        assert policy.description and policy.remediation_steps, policy.name


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stacks_have_no_mandatory_violations(pack: Any, stack: str) -> None:
    configure(pack, tier_config(PACK, stack))
    findings = analyze(pack, stack_capture(stack).resources)
    assert [f for f in findings if f.level == "mandatory"] == []


@pytest.mark.parametrize(("tier", "level"), [("dev", "advisory"), ("staging", "mandatory"), ("prod", "mandatory")])
def test_enforcement_levels_per_tier(pack: Any, tier: str, level: str) -> None:
    assert set(configure(pack, tier_config(PACK, tier)).values()) == {level}
    findings = findings_after(pack, set_in(["spec", "replicas"], 0, D, "ai-inference-service"), tier)
    assert {f.level for f in findings if f.policy == "workload-min-replicas"} == {level}


def test_tier_thresholds_come_from_the_config(pack: Any) -> None:
    two = set_in(["spec", "replicas"], 2, D, "ai-inference-service")
    assert [f for f in findings_after(pack, two, "staging") if f.policy == "workload-min-replicas"] == []
    assert [f for f in findings_after(pack, two, "prod") if f.policy == "workload-min-replicas"]


@pytest.mark.parametrize(("field", "value", "fires"), [
    (["spec", "metadataOptions", "httpTokens"], "optional", True),
    (["spec", "blockDeviceMappings", 0, "ebs", "encrypted"], False, True),
    (["spec", "amiSelectorTerms", 0, "alias"], "al2023@v20250601", False),
])
def test_gpu_pool_rule_on_karpenter_node_classes(pack: Any, field: list[Any], value: Any, fires: bool) -> None:
    hits = [f for f in findings_after(pack, set_in(field, value, "EC2NodeClass", "gpu-a10g"), "staging", "staging")
            if f.policy == "gpu-pool-ha"]
    assert bool(hits) == fires, hits


def test_karpenter_pool_zone_count(pack: Any) -> None:
    one_zone = set_in(["spec", "template", "spec", "requirements", 3, "values"], ["us-east-1a"], "NodePool", "gpu-a10g")
    hits = [f for f in findings_after(pack, one_zone, "staging", "staging") if f.policy == "gpu-pool-ha"]
    assert [f.message for f in hits] == ["gpu-a10g-node-pool: 1 zones; GPU pools need at least 2."]


def test_digest_option(pack: Any) -> None:
    configure(pack, {"all": "mandatory", "image-pinned": {"requireDigest": True}})
    findings = analyze(pack, stack_capture("prod").resources)
    assert any(f.policy == "image-pinned" and "requires a digest" in f.message for f in findings)


def test_device_plugin_is_exempt_only_through_the_allow_list(pack: Any) -> None:
    configure(pack, {"all": "mandatory", "pod-security-restricted": {"allowedWorkloads": []}})
    findings = [f for f in analyze(pack, stack_capture("prod").resources) if f.policy == "pod-security-restricted"]
    # The two system DaemonSets that cannot meet "restricted": the device plugin and dcgm-exporter.
    assert {f.resource for f in findings} == {"nvidia-device-plugin-daemonset", "gpu-metrics-exporter"}
    assert any("kube-system/dcgm-exporter: volume pod-resources is a hostPath" in f.message for f in findings)
    assert any("kube-system/nvidia-device-plugin" in f.message and "hostPath" in f.message for f in findings)


def test_system_namespaces_are_exempt_from_default_deny_only_through_config(pack: Any) -> None:
    configure(pack, {"all": "mandatory", "namespace-default-deny": {"exemptNamespaces": []}})
    findings = [f for f in analyze(pack, stack_capture("prod").resources) if f.policy == "namespace-default-deny"]
    assert [f.message for f in findings] == [
        "namespace kube-system runs workloads but has no default-deny NetworkPolicy."]


def test_allow_list_exempts_a_named_workload(pack: Any) -> None:
    resources = copy.deepcopy(stack_capture("prod").resources)
    set_in([*POD, "volumes", 0], {"name": "tmp", "hostPath": {"path": "/tmp"}}, D, "vllm-chat")(resources)
    configure(pack, {"all": "mandatory", "pod-security-restricted": {"allowedWorkloads": [
        "ai-serving/vllm-chat", "kube-system/nvidia-device-plugin", "kube-system/dcgm-exporter"]}})
    assert [f for f in analyze(pack, resources) if f.policy == "pod-security-restricted"] == []


def test_unknown_values_in_preview_are_reported_not_passed(pack: Any) -> None:
    resources = copy.deepcopy(stack_capture("prod").resources)
    index = next(i for i, r in enumerate(resources) if r.inputs.get("kind") == "HorizontalPodAutoscaler")
    resources[index] = replace(resources[index], inputs={**resources[index].inputs, "spec": {
        **resources[index].inputs["spec"], "minReplicas": UNKNOWN}})
    configure(pack, tier_config(PACK, "prod"))
    findings = [f for f in analyze(pack, resources) if f.policy == "hpa-bounds"]
    assert len(findings) == 1 and "during preview" in findings[0].message


@pytest.mark.own_process
def test_haai_check_passes_prod() -> None:
    result = haai("check", "--stack", "prod", cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stack prod: 0 policy findings" in result.stdout


@pytest.mark.own_process
def test_haai_check_fails_a_stack_that_breaks_a_rule(tmp_path: Path) -> None:
    def too_few(config: dict[str, Any]) -> None:
        config["haai:inference"][0]["replicas"] = 2

    project = project_copy(tmp_path, "prod", too_few)
    result = haai("check", "--stack", "prod", "--format", "markdown", cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "### Policy check: stack `prod`"
    assert "1 findings, 1 mandatory." in lines
    assert "| policy | resource | level | message |" in lines
    assert "| `workload-min-replicas` | `(stack)` | mandatory | ai-serving/ai-inference-service runs 2 replicas; " \
           "the tier needs at least 3. |" in lines


@pytest.mark.own_process
def test_the_pack_runs_from_its_own_environment_as_the_cli_runs_it(tmp_path: Path) -> None:
    """The pack copied alone (as `pulumi policy publish` takes it), its venv built by install.sh from its own
    requirements (no path outside the folder), then started as the CLI starts it: venv/bin/python __main__.py."""
    pack_dir = tmp_path / "pack"
    shutil.copytree(PACK, pack_dir, ignore=shutil.ignore_patterns("venv", "__pycache__"))
    assert "-e" not in (pack_dir / "requirements.txt").read_text() and ".." not in (
        pack_dir / "requirements.txt").read_text()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(["sh", str(pack_dir / "install.sh")], check=True, capture_output=True, env=env, timeout=600)
    python = pack_dir / "venv" / "bin" / "python"
    isolated = subprocess.run([str(python), "-c", "import ha_ai_stack"], capture_output=True, env=env)
    assert isolated.returncode != 0, "the pack's environment must not see the library"
    with running_plugin([str(python), "-u", str(pack_dir / "__main__.py")], pack_dir) as channel:
        stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        assert len(stub.GetAnalyzerInfo(empty_pb2.Empty()).policies) == 15
        configure(stub, tier_config(pack_dir, "prod"))
        assert analyze(stub, stack_capture("prod").resources) == []
        broken = copy.deepcopy(stack_capture("prod").resources)
        set_in([*POD, "priorityClassName"], "batch-low", D, "triton")(broken)
        assert [f.policy for f in analyze(stub, broken)] == ["references-resolve"]
