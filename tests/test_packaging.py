"""The library as a consumer installs it: a light wheel, a collision-free import name, one component shape."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

import pulumi
import pytest

import ha_ai_stack.provider
from ha_ai_stack import (
    ArgsError,
    GpuMetrics,
    GpuNodePool,
    GpuNodePoolArgs,
    HaAiStack,
    InferenceService,
    InferenceServiceArgs,
    NvidiaDevicePlugin,
    RedisCluster,
    RedisClusterArgs,
)
from ha_ai_stack_tools.codegen import generated_files

from .conftest import PROJECT_ROOT, run_components

IMAGE = "ghcr.io/acme/model:1.0.0"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(PROJECT_ROOT)], check=True, capture_output=True, cwd=out)
    [built] = out.glob("ha_ai_stack-*.whl")
    return built


@pytest.mark.own_process
def test_bare_install_needs_only_the_four_runtime_packages(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = Parser().parsestr(metadata).get_all("Requires-Dist")
    base = sorted(r.split(">")[0].split("<")[0].strip() for r in requires if "extra ==" not in r)
    assert base == ["pulumi", "pulumi-kubernetes", "pulumi-random", "pydantic"]
    extras = {r.split("extra ==")[1].strip().strip('"') for r in requires if "extra ==" in r}
    assert {"aws", "cli", "test"} <= extras
    assert any(r.startswith("pulumi-aws") and 'extra == "aws"' in r for r in requires)
    assert any(r.startswith("typer") and 'extra == "cli"' in r for r in requires)
    # Both import names ship, and the Redis scripts ship with the library; nothing imports as `components`.
    assert "ha_ai_stack/redis_cluster/scripts/start.sh" in names
    assert "ha_ai_stack_tools/cli.py" in names
    assert not any(n.startswith("components/") for n in names)


@pytest.mark.own_process
def test_consumer_with_its_own_components_package_builds_a_stack(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv with the wheel installed (its dependencies borrowed from this venv through a .pth file,
    as no registry is needed for them), next to a project whose own `components/` package is imported too."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Dependencies only: this venv's site-packages, whose .pth files (our editable finder) are NOT run from here.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    project = tmp_path / "consumer"
    (project / "components").mkdir(parents=True)
    (project / "components" / "__init__.py").write_text("TEAM = 'search'\n")
    (project / "program.py").write_text(textwrap.dedent(f"""
        import pulumi
        import ha_ai_stack
        from components import TEAM
        from ha_ai_stack import InferenceService, InferenceServiceArgs, RedisCluster

        class Mocks(pulumi.runtime.Mocks):
            def new_resource(self, args):
                return args.name + "-id", args.inputs
            def call(self, args):
                return {{}}, None

        pulumi.runtime.set_mocks(Mocks(), preview=False)
        registered = []
        class Record(pulumi.runtime.mocks.MockMonitor):
            def RegisterResource(self, request):
                registered.append(request.type)
                return super().RegisterResource(request)

        @pulumi.runtime.test
        def build():
            redis = RedisCluster("cache", {{"namespace": "ml"}})
            svc = InferenceService(TEAM, InferenceServiceArgs(image="{IMAGE}", namespace="ml",
                                                              redis=redis.connection))
            return svc.endpoint.apply(lambda e: print("ENDPOINT", e, ha_ai_stack.__file__))

        build()
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    result = subprocess.run([str(python), "program.py"], cwd=project, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    endpoint, library_file = result.stdout.split("ENDPOINT ", 1)[1].split()
    assert endpoint == "http://search.ml.svc.cluster.local:8080"
    assert Path(library_file).is_relative_to(site), library_file  # the wheel's copy, not this checkout


def test_generated_provider_types_and_api_reference_are_current() -> None:
    stale = [str(path.relative_to(PROJECT_ROOT)) for path, text in generated_files(PROJECT_ROOT).items()
             if not path.is_file() or path.read_text() != text]
    assert stale == [], "run: python -m ha_ai_stack_tools.codegen --write"


def test_api_reference_lists_args_defaults_and_outputs() -> None:
    api = (PROJECT_ROOT / "docs" / "api.md").read_text()
    for component in ("InferenceService", "RedisCluster", "GpuNodePool", "NvidiaDevicePlugin", "GpuMetrics",
                      "HaAiStack"):
        assert f"## {component}\n" in api
    assert "| `replicas` | int | `3` |" in api
    assert "| `shards` | int | `3` |" in api
    assert "- `endpoint`: Output" not in api or "- `endpoint`" in api
    assert "- `contract`: [GpuSchedulingContract](#gpuschedulingcontract)" in api


# --- one shape per component -------------------------------------------------------------------------

POOL = {"name": "gpu", "zones": ["a", "b", "c"], "gpus_per_node": 4}
KARPENTER_POOL = {**POOL, "backend": "karpenter", "instance_types": ["g5.12xlarge"],
                  "karpenter": {"cluster_name": "ml", "node_role": "KarpenterNodeRole-ml"}}
EKS_POOL = {**POOL, "backend": "eks", "instance_types": ["g5.12xlarge"],
            "eks": {"cluster_name": "ml", "subnet_ids": ["subnet-a", "subnet-b", "subnet-c"]}}
SHAPES: dict[str, tuple[Any, dict[str, Any]]] = {
    "InferenceService": (InferenceService, {"image": IMAGE, "namespace": "ml"}),
    "RedisCluster": (RedisCluster, {"namespace": "ml"}),
    "GpuNodePool": (GpuNodePool, KARPENTER_POOL),
    "NvidiaDevicePlugin": (NvidiaDevicePlugin, {}),
    "GpuMetrics": (GpuMetrics, {"namespace": "ml", "metrics": ["DCGM_FI_DEV_GPU_UTIL"]}),
    "HaAiStack": (HaAiStack, {"tier": "dev", "namespace": "ml"}),
}
# Written here, not read from the code: the outputs each component registers (schema names).
REGISTERED_OUTPUTS = {
    "InferenceService": {"deployment", "service", "podDisruptionBudget", "serviceAccount", "networkPolicy",
                         "serviceName", "endpoint"},
    "RedisCluster": {"password", "secret", "configMap", "headlessService", "clientService", "statefulSets",
                     "podDisruptionBudget", "networkPolicies", "bootstrapJob", "balanceJob", "balanceCronJob",
                     "connection"},
    "GpuNodePool": {"contract"},
    "NvidiaDevicePlugin": {"daemonSet"},
    "GpuMetrics": {"exporter", "service", "adapterRules"},
    "HaAiStack": {"namespace", "defaultDeny", "endpoints", "prerequisites"},
}


# Each backend of a component that has several builds its own children (an eks pool makes AWS resources).
BACKEND_SHAPES = {**SHAPES, "GpuNodePool/eks": (GpuNodePool, EKS_POOL)}


@pytest.mark.parametrize("served", [False, True], ids=["library", "provider"])
@pytest.mark.parametrize("shape", sorted(BACKEND_SHAPES))
def test_every_component_takes_a_dict_hands_down_depends_on_and_registers_its_outputs(
    shape: str, served: bool, preview: bool
) -> None:
    """The same for the classes the component provider serves (ha_ai_stack.provider), which wrap the library's."""
    cls, args = BACKEND_SHAPES[shape]
    component = shape.split("/")[0]
    if served:
        cls = getattr(ha_ai_stack.provider, component)
    registered: dict[str, dict[str, Any]] = {}
    original = pulumi.ComponentResource.register_outputs

    def record(self: pulumi.ComponentResource, outputs: Any) -> None:
        registered[type(self).__name__] = dict(outputs)
        original(self, outputs)

    def program() -> None:
        gate = pulumi.CustomResource("test:index:Gate", "gate", {})
        cls("it", args, opts=pulumi.ResourceOptions(depends_on=[gate]))

    pulumi.ComponentResource.register_outputs = record  # type: ignore[method-assign]
    try:
        capture = run_components(program, preview=preview)
    finally:
        pulumi.ComponentResource.register_outputs = original  # type: ignore[method-assign]
    assert set(registered[component]) == REGISTERED_OUTPUTS[component]
    [gate] = [r for r in capture.resources if r.type_token == "test:index:Gate"]
    custom = [r for r in capture.resources if r.custom and r.type_token != "test:index:Gate"]
    assert custom and all(gate.urn in r.dependencies for r in custom), [r.name for r in custom
                                                                       if gate.urn not in r.dependencies]


@pytest.mark.parametrize("component", sorted(SHAPES))
def test_every_component_refuses_bad_args_with_path_and_reason(component: str) -> None:
    cls, args = SHAPES[component]
    key = {"HaAiStack": "tier", "NvidiaDevicePlugin": "imagee", "GpuNodePool": "zone",
           "GpuMetrics": "metric"}.get(component, "namespacee")
    with pytest.raises(pulumi.RunError if component == "HaAiStack" else ArgsError) as raised:
        run_components(lambda: cls("it", {**args, key: "x"}))
    message = str(raised.value)
    assert "Traceback" not in message
    if component == "HaAiStack":
        assert "haai:tier: must be 'dev', 'staging' or 'prod'" in message
    elif component == "NvidiaDevicePlugin":
        assert "imagee: unknown key (did you mean 'image'?)" in message
    elif component == "GpuNodePool":
        assert "zone: unknown key (did you mean 'zones'?)" in message
    elif component == "GpuMetrics":
        assert "metric: unknown key (did you mean 'metrics'?)" in message
    else:
        assert "namespacee: unknown key (did you mean 'namespace'?)" in message


def test_args_objects_raise_args_error_not_a_raw_validation_error() -> None:
    with pytest.raises(ArgsError) as raised:
        InferenceServiceArgs(image="ghcr.io/acme/model", replicas=0)
    assert str(raised.value) == (
        "invalid arguments for InferenceServiceArgs (2 problems):\n"
        "  image: image 'ghcr.io/acme/model' has no tag: pin a version (e.g. ghcr.io/acme/model:1.2.3) or a digest\n"
        "  replicas: must be >= 1 (got 0)")
    assert isinstance(raised.value, pulumi.InputPropertiesError)
    assert raised.value.errors == [
        {"property_path": "image", "reason": "image 'ghcr.io/acme/model' has no tag: pin a version "
                                             "(e.g. ghcr.io/acme/model:1.2.3) or a digest"},
        {"property_path": "replicas", "reason": "must be >= 1 (got 0)"}]
    with pytest.raises(ArgsError, match=r"shards: must be >= 3 \(got 2\)"):
        RedisClusterArgs(shards=2)


def test_passing_a_component_where_its_contract_is_wanted_gets_a_hint() -> None:
    def program() -> None:
        pool = GpuNodePool("gpu", GpuNodePoolArgs(**POOL))
        InferenceServiceArgs(image=IMAGE, node_pool=pool)  # type: ignore[arg-type]

    with pytest.raises(ArgsError, match=r"node_pool: .*pass the pool's scheduling contract \(`pool.contract`\)"):
        run_components(program)

    def redis_program() -> None:
        redis = RedisCluster("redis", {"namespace": "ml"})
        InferenceService("svc", {"image": IMAGE, "namespace": "ml", "redis": redis})

    with pytest.raises(ArgsError, match=r"redis: .*pass the cluster's connection contract \(`redis.connection`\)"):
        run_components(redis_program)


def test_args_of_the_wrong_type_say_what_is_expected() -> None:
    with pytest.raises(ArgsError, match=r"args: must be InferenceServiceArgs or a dict of its fields \(got list\)"):
        run_components(lambda: InferenceService("svc", [IMAGE]))  # type: ignore[arg-type]


def test_redis_client_in_another_namespace_is_refused() -> None:
    def program() -> None:
        redis = RedisCluster("redis", {"namespace": "data"})
        InferenceService("svc", {"image": IMAGE, "namespace": "ml", "redis": redis.connection})

    with pytest.raises(ArgsError, match="redis is in namespace 'data' but the service is in 'ml'"):
        run_components(program)


def test_eks_backend_without_the_aws_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pulumi_aws", None)  # as if pulumi-aws were not installed
    spec = {"name": "gpu", "backend": "eks", "instance_types": ["g5.xlarge"], "zones": ["a", "b"],
            "eks": {"cluster_name": "c", "subnet_ids": ["s1", "s2"]}}
    with pytest.raises(ArgsError, match=r"backend: eks needs the AWS provider: pip install 'ha-ai-stack\[aws\]'"):
        run_components(lambda: GpuNodePool("gpu", spec))
