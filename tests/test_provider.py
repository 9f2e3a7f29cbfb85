"""The component provider, driven over gRPC as the engine drives it: GetSchema, then Construct.

The provider runs as its own process (``provider/__main__.py``, the plugin's entry point). A small
recording resource monitor and engine stand in for the Pulumi engine on loopback, so no CLI is needed.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import (
    engine_pb2,
    engine_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
    resource_pb2,
    resource_pb2_grpc,
)

from ha_ai_stack_tools.policy_check import running_plugin

from .conftest import PROJECT_ROOT

PROVIDER_DIR = PROJECT_ROOT / "provider"


@dataclass
class Registration:
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]


@dataclass
class Recorder(resource_pb2_grpc.ResourceMonitorServicer, engine_pb2_grpc.EngineServicer):
    """Resource monitor and engine in one: records registrations, echoes inputs as outputs."""

    registrations: list[Registration] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def SupportsFeature(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC names)
        return resource_pb2.SupportsFeatureResponse(hasSupport=request.id in {"secrets", "resourceReferences"})

    def RegisterResource(self, request: Any, context: Any) -> Any:  # noqa: N802
        urn = f"urn:pulumi:test::consumer::{request.type}::{request.name}"
        with self.lock:
            self.registrations.append(Registration(request.type, request.name, request.parent, request.custom,
                                                   json_format.MessageToDict(request.object)))
        return resource_pb2.RegisterResourceResponse(urn=urn, id=f"{request.name}-id" if request.custom else "",
                                                     object=request.object)

    def RegisterResourceOutputs(self, request: Any, context: Any) -> Any:  # noqa: N802
        with self.lock:
            self.outputs[request.urn] = json_format.MessageToDict(request.outputs)
        return empty_pb2.Empty()

    def Log(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.logs.append(request.message)
        return empty_pb2.Empty()

    def GetRootResource(self, request: Any, context: Any) -> Any:  # noqa: N802
        return engine_pb2.GetRootResourceResponse(urn="")

    def SetRootResource(self, request: Any, context: Any) -> Any:  # noqa: N802
        return engine_pb2.SetRootResourceResponse()


@pytest.fixture
def engine() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    resource_pb2_grpc.add_ResourceMonitorServicer_to_server(recorder, server)
    engine_pb2_grpc.add_EngineServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield recorder, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture
def provider(engine: tuple[Recorder, str]) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    with running_plugin([sys.executable, "-u", str(PROVIDER_DIR / "__main__.py"), engine[1]], PROVIDER_DIR) as channel:
        yield provider_pb2_grpc.ResourceProviderStub(channel)


def schema_of(stub: provider_pb2_grpc.ResourceProviderStub) -> dict[str, Any]:
    return json.loads(stub.GetSchema(provider_pb2.GetSchemaRequest(version=0)).schema)


def construct(stub: provider_pb2_grpc.ResourceProviderStub, monitor: str, component: str, name: str,
              inputs: dict[str, Any], dry_run: bool) -> Any:
    struct = struct_pb2.Struct()
    struct.update(inputs)
    return stub.Construct(provider_pb2.ConstructRequest(
        project="consumer", stack="test", dryRun=dry_run, monitorEndpoint=monitor, type=f"haai:index:{component}",
        name=name, inputs=struct, organization="organization"), timeout=60)


# Written here, not read from the code: every component and the inputs a user must see documented.
EXPECTED_INPUTS = {
    "InferenceService": {"image", "server", "replicas", "autoscaling", "resources", "modelLoadSeconds", "namespace",
                         "nodePool", "redis", "secretEnv", "disruption", "zoneSpread", "antiAffinity"},
    "RedisCluster": {"shards", "replicasPerShard", "zones", "storageSize", "storageClass", "nodeTimeoutMs",
                     "namespace", "image"},
    "GpuNodePool": {"name", "backend", "instanceTypes", "zones", "eks", "karpenter", "gpusPerNode"},
    "NvidiaDevicePlugin": {"image"},
    "GpuMetrics": {"namespace", "metrics", "image", "prometheusLabels"},
    "HaAiStack": {"tier", "namespace", "inference", "gpuPools", "redis", "kubernetesVersion", "metrics"},
}
EXPECTED_OUTPUTS = {
    "InferenceService": {"deployment", "service", "podDisruptionBudget", "serviceAccount", "networkPolicy",
                         "autoscaler", "serviceName", "endpoint"},
    "RedisCluster": {"password", "secret", "configMap", "statefulSets", "podDisruptionBudget", "bootstrapJob",
                     "connection"},
    "GpuNodePool": {"contract"},
    "NvidiaDevicePlugin": {"daemonSet"},
    "GpuMetrics": {"exporter", "service", "adapterRules"},
    "HaAiStack": {"namespace", "defaultDeny", "endpoints", "prerequisites"},
}


def test_schema_has_every_component_and_every_described_field(provider: provider_pb2_grpc.ResourceProviderStub) -> None:
    schema = schema_of(provider)
    assert schema["name"] == "haai"
    resources = schema["resources"]
    assert set(resources) == {f"haai:index:{name}" for name in EXPECTED_INPUTS}
    for name, wanted in EXPECTED_INPUTS.items():
        resource = resources[f"haai:index:{name}"]
        assert resource["isComponent"] is True and resource["description"]
        assert wanted <= set(resource["inputProperties"]), name
        assert EXPECTED_OUTPUTS[name] <= set(resource["properties"]), name
        undocumented = [key for key, prop in resource["inputProperties"].items() if not prop.get("description")]
        assert undocumented == [], f"{name}: {undocumented}"
    for type_name, type_def in schema["types"].items():
        undocumented = [key for key, prop in type_def["properties"].items() if not prop.get("description")]
        assert undocumented == [], f"{type_name}: {undocumented}"
    # Required exactly where the Args have no default.
    assert resources["haai:index:InferenceService"]["requiredInputs"] == ["image"]
    assert resources["haai:index:HaAiStack"]["requiredInputs"] == ["tier"]
    pool_contract = schema["types"]["haai:index:GpuSchedulingContract"]["properties"]
    assert {"poolName", "nodeSelector", "tolerations", "gpusPerNode", "zones"} <= set(pool_contract)
    assert "Default: 3." in resources["haai:index:InferenceService"]["inputProperties"]["replicas"]["description"]
    assert "One of: triton, vllm, custom." in (
        resources["haai:index:InferenceService"]["inputProperties"]["server"]["description"])


YAML_STYLE_SERVICE = {  # as Pulumi YAML sends it: camelCase keys, every number a float
    "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
    "server": "triton",
    "replicas": 3.0,
    "namespace": "ml",
    "resources": {"cpu": "4", "memory": "16Gi", "gpus": 1.0},
    "autoscaling": {"maxReplicas": 6.0, "targetCpuUtilization": 60.0},
    "disruption": {"maxUnavailable": "1"},
    "nodePool": {"poolName": "gpu-a10g", "nodeSelector": {"nvidia.com/gpu.present": "true",
                                                          "ha-ai-stack/gpu-pool": "gpu-a10g"},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                 "gpusPerNode": 4.0, "zones": ["us-east-1a", "us-east-1b", "us-east-1c"]},
}


@pytest.mark.parametrize("dry_run", [True, False], ids=["preview", "update"])
def test_construct_inference_service_from_yaml_style_inputs(
    provider: provider_pb2_grpc.ResourceProviderStub, engine: tuple[Recorder, str], dry_run: bool
) -> None:
    recorder, monitor = engine
    response = construct(provider, monitor, "InferenceService", "ranker", YAML_STYLE_SERVICE, dry_run)
    assert response.urn == "urn:pulumi:test::consumer::haai:index:InferenceService::ranker"
    by_type = {r.type: r for r in recorder.registrations}
    component = by_type["haai:index:InferenceService"]
    assert (component.name, component.custom) == ("ranker", False)
    children = {r.type: r for r in recorder.registrations if r.parent == response.urn}
    assert set(children) == {
        "kubernetes:apps/v1:Deployment", "kubernetes:core/v1:Service", "kubernetes:core/v1:ServiceAccount",
        "kubernetes:policy/v1:PodDisruptionBudget", "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"}
    deployment = children["kubernetes:apps/v1:Deployment"].inputs
    assert deployment["metadata"] == {"name": "ranker", "namespace": "ml", "labels": deployment["metadata"]["labels"]}
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "ha-ai-stack/gpu-pool": "gpu-a10g"}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert children["kubernetes:policy/v1:PodDisruptionBudget"].inputs["spec"]["maxUnavailable"] == 1
    assert children["kubernetes:autoscaling/v2:HorizontalPodAutoscaler"].inputs["spec"]["maxReplicas"] == 6
    state = json_format.MessageToDict(response.state)
    if not dry_run:
        assert state["endpoint"] == "http://ranker.ml.svc.cluster.local:8000"
    assert set(recorder.outputs[response.urn]) == EXPECTED_OUTPUTS["InferenceService"]


def test_construct_reports_every_bad_input_as_a_property_error(
    provider: provider_pb2_grpc.ResourceProviderStub, engine: tuple[Recorder, str]
) -> None:
    recorder, monitor = engine
    bad = {**YAML_STYLE_SERVICE, "replicas": 0.0, "image": "nvcr.io/nvidia/tritonserver:latest",
           "resources": {"gpus": 8.0}}
    with pytest.raises(grpc.RpcError) as raised:
        construct(provider, monitor, "InferenceService", "ranker", bad, True)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = raised.value.details()
    assert "replicas: must be >= 1 (got 0)" in details
    assert "image: image 'nvcr.io/nvidia/tritonserver:latest' uses the 'latest' tag" in details
    assert "Traceback" not in details
    assert recorder.registrations == []  # nothing registered


def test_yaml_consumer_example_matches_the_schema(provider: provider_pb2_grpc.ResourceProviderStub) -> None:
    """examples/yaml-consumer: every component it uses exists, and every property it sets is an input."""
    schema = schema_of(provider)
    program = yaml.safe_load((PROJECT_ROOT / "examples" / "yaml-consumer" / "Pulumi.yaml").read_text())
    assert program["packages"]["haai"] == "../../provider"
    used = {name: resource for name, resource in program["resources"].items() if resource["type"].startswith("haai:")}
    assert {r["type"] for r in used.values()} == {"haai:index:GpuNodePool", "haai:index:InferenceService"}
    for name, resource in used.items():
        resource_schema = schema["resources"][resource["type"]]
        unknown = set(resource["properties"]) - set(resource_schema["inputProperties"])
        assert unknown == set(), f"{name}: {unknown}"
        missing = set(resource_schema.get("requiredInputs", [])) - set(resource["properties"])
        assert missing == set(), f"{name}: {missing}"
    service = used["ranker"]["properties"]
    assert service["nodePool"] == "${gpu.contract}"
    assert "contract" in schema["resources"]["haai:index:GpuNodePool"]["properties"]


def test_plugin_folder_is_self_describing() -> None:
    plugin = yaml.safe_load((PROVIDER_DIR / "PulumiPlugin.yaml").read_text())
    assert plugin["runtime"]["name"] == "python"
    assert (PROVIDER_DIR / "requirements.txt").read_text().count("ha-ai-stack") == 1
    assert Path(PROVIDER_DIR / "__main__.py").is_file()
