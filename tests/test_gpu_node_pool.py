"""GpuNodePool backends and the NVIDIA device plugin under mocks, in update and preview mode."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
from ha_ai_stack import ArgsError

from ha_ai_stack import (
    EksPoolSpec,
    GpuNodePool,
    GpuNodePoolArgs,
    InferenceService,
    InferenceServiceArgs,
    KarpenterPoolSpec,
    NvidiaDevicePlugin,
    ResourceSpec,
)
from ha_ai_stack_tools.capture import UNKNOWN, Capture
from ha_ai_stack_tools.render import manifests

from .conftest import run_components, stack_capture
from .schemas import validate_object

ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
EKS = EksPoolSpec(cluster_name="prod", subnet_ids=["subnet-1", "subnet-2", "subnet-3"], min_size=2, max_size=6)
KARPENTER = KarpenterPoolSpec(cluster_name="staging", node_role="KarpenterNodeRole", ami_alias="al2023@v20250505",
                              business_hours_freeze=True)


def build(preview: bool, spec: GpuNodePoolArgs) -> Capture:
    return run_components(lambda: GpuNodePool(spec.name, spec), preview=preview)


def only_type(capture: Capture, token: str) -> dict[str, Any]:
    [resource] = capture.of_type(token)
    return resource.inputs


def test_eks_backend(preview: bool) -> None:
    spec = GpuNodePoolArgs(name="gpu", backend="eks", instance_types=["g5.12xlarge"], zones=ZONES, eks=EKS)
    capture = build(preview, spec)
    assert len(capture.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")) == 3
    policies = {r.inputs["policyArn"].rsplit("/", 1)[1]
                for r in capture.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert policies == {"AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"}
    template = only_type(capture, "aws:ec2/launchTemplate:LaunchTemplate")
    assert template["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required",
                                           "httpPutResponseHopLimit": 2}
    ebs = template["blockDeviceMappings"][0]["ebs"]
    assert (ebs["encrypted"], ebs["volumeType"], ebs["volumeSize"]) == ("true", "gp3", 100)
    [group_resource] = capture.of_type("aws:eks/nodeGroup:NodeGroup")
    group = group_resource.inputs
    assert group["amiType"] == "AL2023_x86_64_NVIDIA" and group["capacityType"] == "ON_DEMAND"
    assert group["scalingConfig"] == {"minSize": 2, "maxSize": 6, "desiredSize": 2}
    assert group["updateConfig"] == {"maxUnavailable": 1}
    assert group["labels"] == {"nvidia.com/gpu.present": "true", "ha-ai-stack/gpu-pool": "gpu"}
    assert group["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert group_resource.ignore_changes == ("scalingConfig.desiredSize",)
    # Nodes join only once their role carries the worker, CNI and registry policies: the group waits for all three.
    attachments = {r.urn for r in capture.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert attachments <= set(group_resource.dependencies)
    assert group["launchTemplate"]["version"] == (UNKNOWN if preview else "1")
    assert group["nodeRoleArn"] == (UNKNOWN if preview else "arn:aws:iam::123456789012:role/gpu-node-role")


def test_bottlerocket_root_volume_is_its_data_device(preview: bool) -> None:
    eks = EKS.model_copy(update={"ami_type": "BOTTLEROCKET_x86_64_NVIDIA"})
    spec = GpuNodePoolArgs(name="gpu", backend="eks", instance_types=["g5.xlarge"], zones=ZONES, eks=eks)
    template = only_type(build(preview, spec), "aws:ec2/launchTemplate:LaunchTemplate")
    assert template["blockDeviceMappings"][0]["deviceName"] == "/dev/xvdb"


def test_karpenter_backend_matches_the_crd_schemas(preview: bool) -> None:
    spec = GpuNodePoolArgs(name="gpu", backend="karpenter", instance_types=["g5.xlarge", "g5.2xlarge"], zones=ZONES,
                       capacity_type="spot", karpenter=KARPENTER)
    objects = {m["kind"]: m for m in manifests(build(preview, spec))}
    assert set(objects) == {"NodePool", "EC2NodeClass"}
    for manifest in objects.values():
        validate_object(manifest, "1.33")
    pool = objects["NodePool"]["spec"]
    assert pool["template"]["spec"]["requirements"] == [
        {"key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"]},
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g5.xlarge", "g5.2xlarge"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ZONES},
    ]
    assert pool["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert pool["limits"] == {"nvidia.com/gpu": "16", "cpu": "256", "memory": "1024Gi"}
    assert pool["disruption"]["budgets"] == [
        {"nodes": "1"}, {"nodes": "0", "schedule": "0 8 * * mon-fri", "duration": "10h"}]
    node_class = objects["EC2NodeClass"]["spec"]
    assert node_class["amiSelectorTerms"] == [{"alias": "al2023@v20250505"}]
    assert node_class["metadataOptions"]["httpTokens"] == "required"
    assert node_class["blockDeviceMappings"][0]["ebs"]["encrypted"] is True
    assert node_class["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "staging"}}]


def test_a_karpenter_pool_by_instance_family_waits_for_its_node_class(preview: bool) -> None:
    spec = GpuNodePoolArgs(name="gpu", backend="karpenter", zones=ZONES,
                           karpenter=KARPENTER.model_copy(update={"instance_families": ["g5", "g6"]}))
    capture = build(preview, spec)
    [pool] = capture.of_type("kubernetes:karpenter.sh/v1:NodePool")
    [node_class] = capture.of_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
    for manifest in manifests(capture):
        validate_object(manifest, "1.33")
    assert pool.inputs["spec"]["template"]["spec"]["requirements"][1] == {
        "key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g5", "g6"]}
    # Karpenter refuses to launch for a NodePool whose nodeClassRef does not resolve yet.
    assert node_class.urn in pool.dependencies


@pytest.mark.parametrize(("path", "value"), [
    (["spec", "disruption", "consolidationPolicy"], "Always"),
    (["spec", "template", "spec", "taints", 0, "effect"], "NO_SCHEDULE"),
    (["spec", "template", "spec", "requirment"], []),
])
def test_crd_validation_rejects_bad_node_pools(path: list[Any], value: Any) -> None:
    spec = GpuNodePoolArgs(name="gpu", backend="karpenter", instance_types=["g5.xlarge"], zones=ZONES, karpenter=KARPENTER)
    [pool] = [m for m in manifests(build(False, spec)) if m["kind"] == "NodePool"]
    broken = copy.deepcopy(pool)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate_object(broken, "1.33")


def test_existing_backend_only_produces_the_contract(preview: bool) -> None:
    pools: list[GpuNodePool] = []
    spec = GpuNodePoolArgs(name="gpu", gpus_per_node=2, gpu_model="T4", zones=["z1"])
    capture = run_components(lambda: pools.append(GpuNodePool("gpu", spec)), preview=preview)
    assert [r.type_token for r in capture.resources] == ["haai:index:GpuNodePool"]
    assert pools[0].contract.gpus_per_node == 2 and pools[0].contract.zones == ["z1"]


def test_instance_table_fills_the_contract_and_guards_gpu_requests() -> None:
    spec = GpuNodePoolArgs(name="gpu", backend="eks", instance_types=["g5.12xlarge", "g5.48xlarge"], zones=ZONES, eks=EKS)
    contract = spec.contract()
    assert (contract.gpus_per_node, contract.gpu_model) == (4, "A10G")
    with pytest.raises(ArgsError, match="asks for 8 GPUs but a node of pool 'gpu' has 4"):
        InferenceServiceArgs(image="nvcr.io/nvidia/tritonserver:24.08-py3", node_pool=contract,
                             resources=ResourceSpec(gpus=8))


def test_inference_service_consumes_the_pool_contract(preview: bool) -> None:
    spec = GpuNodePoolArgs(name="gpu", backend="karpenter", instance_types=["g5.xlarge"], zones=ZONES, karpenter=KARPENTER,
                           node_labels={"team": "ml"})

    def program() -> None:
        pool = GpuNodePool("gpu", spec)
        InferenceService("svc", InferenceServiceArgs(image="nvcr.io/nvidia/tritonserver:24.08-py3", node_pool=pool.contract,
                                                     resources=ResourceSpec(gpus=1)))

    objects = manifests(run_components(program, preview=preview))
    [deployment] = [m for m in objects if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    # The pool's own labels too: the pods select exactly the labels its nodes are given.
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "ha-ai-stack/gpu-pool": "gpu", "team": "ml"}
    [node_pool] = [m for m in objects if m["kind"] == "NodePool"]
    assert pod["nodeSelector"].items() <= node_pool["spec"]["template"]["metadata"]["labels"].items()
    assert pod["topologySpreadConstraints"][0]["minDomains"] == 3


def test_device_plugin(preview: bool) -> None:
    [daemon_set] = manifests(run_components(lambda: NvidiaDevicePlugin("dp"), preview=preview))
    validate_object(daemon_set, "1.33")
    pod = daemon_set["spec"]["template"]["spec"]
    assert daemon_set["metadata"]["namespace"] == "kube-system"
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]
    assert [v["hostPath"]["path"] for v in pod["volumes"]] == ["/var/lib/kubelet/device-plugins"]
    assert pod["containers"][0]["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"
    assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
    # Nodes without a working driver yet (a node joining, a driver upgrade) keep the plugin running, not crashing.
    assert pod["containers"][0]["env"] == [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                 "limits": {"cpu": "100m", "memory": "128Mi"}}


@pytest.mark.parametrize(("fields", "message"), [
    ({"backend": "eks", "instance_types": ["g5.xlarge"], "zones": ZONES}, "backend eks needs its `eks` section"),
    ({"backend": "eks", "instance_types": ["g5.xlarge"], "zones": ["us-east-1a"], "eks": EKS},
     "backend eks needs at least 2 zones (got 1)"),
    ({"backend": "eks", "zones": ZONES, "eks": EKS}, "backend eks needs instance_types"),
    ({"backend": "karpenter", "zones": ZONES, "karpenter": KARPENTER}, "needs instance_types or karpenter.instance_families"),
    ({"zones": ZONES, "eks": EKS}, "`eks` section given but backend is existing"),
])
def test_bad_pool_specs(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GpuNodePoolArgs(name="gpu", **fields)


def test_the_device_plugin_is_shared_by_stacks_on_one_cluster() -> None:
    """Applied server-side, with nothing stack-specific in it: a second stack co-owns the same object."""
    plugins = {}
    for stack in ("staging", "prod"):
        [plugin] = [r for r in stack_capture(stack).resources if r.name == "nvidia-device-plugin-daemonset"]
        plugins[stack] = plugin
    assert {p.type_token for p in plugins.values()} == {"kubernetes:apps/v1:DaemonSetPatch"}
    assert plugins["staging"].inputs == plugins["prod"].inputs
