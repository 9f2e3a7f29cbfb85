"""``haai preflight`` against moto: passing and failing GPU capacity checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.server import ThreadedMotoServer

from ha_ai_stack.config import StackConfig, validate_stack_config
from ha_ai_stack_tools.preflight import Check, preflight

from .conftest import haai, project_copy

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A moto account with one VPC, one subnet in each of four zones, and an EKS cluster named prod."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield make_account()


def make_account(client: Any = None) -> dict[str, Any]:
    ec2 = client("ec2") if client else boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = {}
    for index, zone in enumerate(["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"]):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{index}.0/24", AvailabilityZone=zone)["Subnet"]
        subnets[zone] = subnet["SubnetId"]
    subnets["us-east-1a-second"] = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.9.0/24",
                                                     AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    eks = client("eks") if client else boto3.client("eks", region_name=REGION)
    eks.create_cluster(name="prod", roleArn="arn:aws:iam::123456789012:role/eks",
                       resourcesVpcConfig={"subnetIds": list(subnets.values())[:2]})
    return subnets


def stack(subnets: list[str], *, instance_type: str = "g5.xlarge", cluster: str = "prod", gpus: int = 1,
          gpus_per_node: int | None = None, max_size: int = 4) -> StackConfig:
    pool: dict[str, Any] = {"name": "gpu", "backend": "eks", "instance_types": [instance_type],
                            "zones": ["us-east-1a", "us-east-1b"],
                            "eks": {"cluster_name": cluster, "subnet_ids": subnets, "max_size": max_size}}
    if gpus_per_node:
        pool["gpus_per_node"] = gpus_per_node
    return validate_stack_config({"tier": "prod", "gpu_pools": [pool], "inference": [
        {"name": "svc", "image": "nvcr.io/nvidia/tritonserver:24.08-py3", "resources": {"gpus": gpus}}]})


def by_check(checks: list[Check]) -> dict[str, Check]:
    return {c.check: c for c in checks}


def run(config: StackConfig) -> dict[str, Check]:
    return by_check(preflight(config, lambda service: boto3.client(service, region_name=REGION)))


def test_a_good_pool_passes_and_the_quota_is_unknown_not_guessed(aws: dict[str, str]) -> None:
    checks = run(stack([aws["us-east-1a"], aws["us-east-1b"], aws["us-east-1c"]]))
    assert checks["subnet zones"].status == "pass"
    assert checks["g5.xlarge offered"].status == "pass"
    assert checks["g5.xlarge GPUs"].status == "pass" and "1 x A10G" in checks["g5.xlarge GPUs"].detail
    assert checks["EKS cluster"].status == "pass"
    quota = checks["vCPU quota (G and VT, on-demand)"]
    assert quota.status == "unknown" and "L-DB2E81BA" in quota.detail


def test_instance_type_not_offered_in_one_zone_fails(aws: dict[str, str]) -> None:
    checks = run(stack([aws["us-east-1a"], aws["us-east-1e"]]))
    assert checks["g5.xlarge offered"].status == "fail"
    assert checks["g5.xlarge offered"].detail == "not offered in us-east-1e"


def test_single_zone_subnets_fail(aws: dict[str, str]) -> None:
    checks = run(stack([aws["us-east-1a"], aws["us-east-1a-second"]]))
    assert checks["subnet zones"].status == "fail"
    assert checks["subnet zones"].detail.startswith("2 subnets in 1 zones: us-east-1a; need at least 2")


def test_gpu_count_too_small_for_a_pod_fails(aws: dict[str, str]) -> None:
    checks = run(stack([aws["us-east-1a"], aws["us-east-1b"]], gpus=4, gpus_per_node=4))
    gpus = checks["g5.xlarge GPUs"]
    assert gpus.status == "fail"
    assert gpus.detail.startswith("1 x A10G") and "largest request 4" in gpus.detail


def test_missing_cluster_fails(aws: dict[str, str]) -> None:
    checks = run(stack([aws["us-east-1a"], aws["us-east-1b"]], cluster="nope"))
    assert checks["EKS cluster"].status == "fail" and "ResourceNotFoundException" in checks["EKS cluster"].detail


@pytest.mark.parametrize(("quota", "status"), [(64.0, "pass"), (8.0, "fail")])
def test_vcpu_quota_against_max_nodes(aws: dict[str, str], quota: float, status: str) -> None:
    quotas = boto3.client("service-quotas", region_name=REGION)
    stubber = Stubber(quotas)
    stubber.add_response("get_service_quota", {"Quota": {"Value": quota, "QuotaCode": "L-DB2E81BA"}},
                         {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    with stubber:
        checks = by_check(preflight(stack([aws["us-east-1a"], aws["us-east-1b"]], max_size=4),
                                    lambda s: quotas if s == "service-quotas" else boto3.client(s, region_name=REGION)))
    check = checks["vCPU quota (G and VT, on-demand)"]
    assert check.status == status
    assert check.detail == f"quota {quota:.0f} vCPUs, pool needs up to 16"  # 4 nodes x 4 vCPUs


def test_cli_preflight_exit_codes_against_a_moto_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        subnets = make_account(lambda service: boto3.client(service, region_name=REGION))

        def use(zones: list[str]) -> Any:
            def edit(config: dict[str, Any]) -> None:
                config["haai:gpu_pools"][0]["eks"].update({"cluster_name": "prod", "subnet_ids": [subnets[z] for z in zones]})
                config["haai:gpu_pools"][0]["instance_types"] = ["g5.12xlarge"]
            return edit

        good = project_copy(tmp_path / "good", "prod", use(["us-east-1a", "us-east-1b", "us-east-1c"]))
        result = haai("preflight", "--stack", "prod", "--no-cluster", cwd=good)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "g5.12xlarge offered" in result.stdout and "fail" not in result.stdout
        bad = project_copy(tmp_path / "bad", "prod", use(["us-east-1a", "us-east-1e"]))
        result = haai("preflight", "--stack", "prod", "--no-cluster", cwd=bad)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "not offered in us-east-1e" in result.stdout
    finally:
        server.stop()


# -- the Karpenter path, API errors, and both sides of each threshold ----------------------------------------------


def karpenter_stack(instance_types: list[str], *, tags: dict[str, str] | None = None,
                    limit_cpu: int = 64) -> StackConfig:
    section: dict[str, Any] = {"cluster_name": "prod", "node_role": "KarpenterNodeRole-prod", "limit_cpu": limit_cpu}
    if tags:
        section["subnet_selector_tags"] = tags
    pool = {"name": "gpu", "backend": "karpenter", "instance_types": instance_types,
            "zones": ["us-east-1a", "us-east-1b"], "karpenter": section}
    if not instance_types:
        section["instance_families"] = ["g5"]
    return validate_stack_config({"tier": "staging", "gpu_pools": [pool], "inference": [
        {"name": "svc", "image": "nvcr.io/nvidia/tritonserver:24.08-py3", "resources": {"gpus": 1}}]})


def tag(subnet_ids: list[str], key: str, value: str) -> None:
    boto3.client("ec2", region_name=REGION).create_tags(Resources=subnet_ids, Tags=[{"Key": key, "Value": value}])


def quota_client(values: dict[str, float]) -> Any:
    """A service-quotas client that answers get_service_quota for each code in order of ``values``."""
    quotas = boto3.client("service-quotas", region_name=REGION)
    stubber = Stubber(quotas)
    for code, value in values.items():
        stubber.add_response("get_service_quota", {"Quota": {"Value": value, "QuotaCode": code}},
                             {"ServiceCode": "ec2", "QuotaCode": code})
    stubber.activate()
    return quotas


def with_quotas(values: dict[str, float]) -> Any:
    quotas = quota_client(values)
    return lambda s: quotas if s == "service-quotas" else boto3.client(s, region_name=REGION)


def test_karpenter_finds_its_subnets_by_the_discovery_tag(aws: dict[str, str]) -> None:
    tag([aws["us-east-1a"], aws["us-east-1b"]], "karpenter.sh/discovery", "prod")
    tag([aws["us-east-1c"]], "karpenter.sh/discovery", "another-cluster")
    checks = by_check(preflight(karpenter_stack(["g5.xlarge"]), with_quotas({"L-DB2E81BA": 64.0})))
    assert checks["subnet zones"] == Check("gpu", "subnet zones", "pass", "2 subnets in 2 zones: us-east-1a, us-east-1b")
    assert checks["g5.xlarge offered"].detail == "offered in us-east-1a, us-east-1b"
    assert checks["EKS cluster"].status == "pass"
    # Karpenter's vCPU limit is the most the pool can launch: 64 needs a quota of 64, not less.
    assert checks["vCPU quota (G and VT, on-demand)"] == Check(
        "gpu", "vCPU quota (G and VT, on-demand)", "pass", "quota 64 vCPUs, pool needs up to 64")
    checks = by_check(preflight(karpenter_stack(["g5.xlarge"], limit_cpu=65), with_quotas({"L-DB2E81BA": 64.0})))
    assert checks["vCPU quota (G and VT, on-demand)"].status == "fail"


def test_karpenter_subnets_by_custom_tags_in_one_zone_fail(aws: dict[str, str]) -> None:
    tag([aws["us-east-1a"], aws["us-east-1a-second"]], "team", "ml")
    checks = by_check(preflight(karpenter_stack(["g5.xlarge"], tags={"team": "ml"}), with_quotas({"L-DB2E81BA": 64.0})))
    assert checks["subnet zones"] == Check("gpu", "subnet zones", "fail", "2 subnets in 1 zones: us-east-1a; need at "
                                                                         "least 2 so one zone outage leaves capacity")


def test_karpenter_without_subnets_checks_the_configured_zones(aws: dict[str, str]) -> None:
    checks = by_check(preflight(karpenter_stack(["g5.xlarge"]), with_quotas({"L-DB2E81BA": 64.0})))
    assert checks["subnet zones"].detail == "0 subnets in 0 zones: none; need at least 2 so one zone outage leaves " \
                                            "capacity"
    assert checks["g5.xlarge offered"].detail == "offered in us-east-1a, us-east-1b"  # the pool's own zones


def test_karpenter_by_family_quotas_every_family(aws: dict[str, str]) -> None:
    checks = preflight(karpenter_stack(["g5.xlarge", "p4d.24xlarge"]),
                       with_quotas({"L-DB2E81BA": 64.0, "L-417A185B": 10.0}))
    quotas = [c for c in checks if c.check.startswith("vCPU quota")]
    assert quotas == [Check("gpu", "vCPU quota (G and VT, on-demand)", "pass", "quota 64 vCPUs, pool needs up to 64"),
                      Check("gpu", "vCPU quota (P, on-demand)", "fail", "quota 10 vCPUs, pool needs up to 64")]


def test_karpenter_families_only_are_unknown_offerings(aws: dict[str, str]) -> None:
    checks = preflight(karpenter_stack([]), with_quotas({"L-DB2E81BA": 64.0}))
    assert Check("gpu", "offered in every zone", "unknown",
                 "no instance types listed (Karpenter picks from families)") in checks
    assert not [c for c in checks if c.check.endswith("GPUs")]  # nothing to compare
    assert [c.check for c in checks if c.check.startswith("vCPU")] == ["vCPU quota (G and VT, on-demand)"]


def failing(service: str, operation: str, code: str) -> Any:
    """A client factory whose ``service`` client fails ``operation`` with ``code`` (other calls go to moto)."""
    client = boto3.client(service, region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error(operation, service_error_code=code, service_message="told so")
    stubber.activate()
    return lambda s: client if s == service else boto3.client(s, region_name=REGION)


@pytest.mark.parametrize(("operation", "code", "check", "status", "detail"), [
    ("describe_subnets", "UnauthorizedOperation", "subnet zones", "unknown", "UnauthorizedOperation: told so"),
    ("describe_subnets", "InvalidSubnetID.NotFound", "subnet zones", "fail", "InvalidSubnetID.NotFound: told so"),
    ("describe_instance_types", "InvalidInstanceType", "GPUs per node", "fail", "InvalidInstanceType: told so"),
    ("describe_instance_types", "RequestLimitExceeded", "GPUs per node", "unknown",
     "RequestLimitExceeded: told so"),
])
def test_api_errors_are_unknown_unless_the_thing_is_missing(aws: dict[str, str], operation: str, code: str,
                                                            check: str, status: str, detail: str) -> None:
    checks = by_check(preflight(stack([aws["us-east-1a"], aws["us-east-1b"]]), failing("ec2", operation, code)))
    assert checks[check] == Check("gpu", check, status, detail)


def test_an_offerings_error_is_unknown_for_that_type(aws: dict[str, str]) -> None:
    client = boto3.client("ec2", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response("describe_subnets", {"Subnets": [{"AvailabilityZone": "us-east-1a"},
                                                          {"AvailabilityZone": "us-east-1b"}]})
    stubber.add_client_error("describe_instance_type_offerings", service_error_code="Throttling",
                             service_message="slow down")
    stubber.activate()
    checks = by_check(preflight(stack(["subnet-1", "subnet-2"]),
                                lambda s: client if s == "ec2" else boto3.client(s, region_name=REGION)))
    assert checks["g5.xlarge offered"] == Check("gpu", "g5.xlarge offered", "unknown", "Throttling: slow down")


def test_a_cluster_that_cannot_be_read_is_unknown(aws: dict[str, str]) -> None:
    checks = by_check(preflight(stack([aws["us-east-1a"], aws["us-east-1b"]]),
                                failing("eks", "describe_cluster", "AccessDeniedException")))
    assert checks["EKS cluster"] == Check("gpu", "EKS cluster", "unknown", "prod: AccessDeniedException: told so")


@pytest.mark.parametrize(("quota", "status"), [(16.0, "pass"), (15.0, "fail")])
def test_vcpu_quota_boundary(aws: dict[str, str], quota: float, status: str) -> None:
    checks = by_check(preflight(stack([aws["us-east-1a"], aws["us-east-1b"]], max_size=4),
                                with_quotas({"L-DB2E81BA": quota})))
    assert checks["vCPU quota (G and VT, on-demand)"].status == status  # 4 nodes x 4 vCPUs = 16


def test_eks_quota_takes_the_largest_type_of_each_family(aws: dict[str, str]) -> None:
    config = stack([aws["us-east-1a"], aws["us-east-1b"]], max_size=3)
    config.gpu_pools[0].instance_types.append("g5.2xlarge")
    checks = by_check(preflight(config, with_quotas({"L-DB2E81BA": 100.0})))
    assert checks["vCPU quota (G and VT, on-demand)"].detail == "quota 100 vCPUs, pool needs up to 24"  # 3 x 8


@pytest.mark.parametrize(("gpus", "gpus_per_node", "status"), [(1, None, "pass"), (1, 1, "pass"), (1, 2, "fail"),
                                                                 (2, 2, "fail")])
def test_gpu_fit_on_both_sides(aws: dict[str, str], gpus: int, gpus_per_node: int | None, status: str) -> None:
    """g5.xlarge has one A10G (moto reports 22 GiB of GPU memory): one GPU fits; a pool that declares 2 per node
    does not, whatever the pods ask for."""
    checks = run(stack([aws["us-east-1a"], aws["us-east-1b"]], gpus=gpus, gpus_per_node=gpus_per_node))
    check = checks["g5.xlarge GPUs"]
    assert check.status == status
    expected = f"1 x A10G (22 GiB GPU memory); largest request {gpus}"
    assert check.detail == (expected + f"; the pool declares gpus_per_node {gpus_per_node}"
                            if gpus_per_node == 2 else expected)


def test_an_existing_pool_has_nothing_to_check_in_aws() -> None:
    config = validate_stack_config({"tier": "dev", "gpu_pools": [{"name": "gpu"}], "inference": [
        {"name": "svc", "image": "nvcr.io/nvidia/tritonserver:24.08-py3", "resources": {"gpus": 1}}]})
    assert preflight(config, lambda s: pytest.fail(f"no AWS call expected ({s})")) == [
        Check("gpu", "backend", "unknown", "existing nodes: no AWS capacity to check")]


def ec2_with(stub: Callable[[Stubber], None]) -> Any:
    """An ec2 client whose describe_instance_types answers as ``stub`` sets up; its other calls go to moto."""
    ec2 = boto3.client("ec2", region_name=REGION)
    stubber = Stubber(ec2)
    stub(stubber)
    stubber.activate()
    moto_ec2 = boto3.client("ec2", region_name=REGION)
    for name in ("describe_subnets", "describe_instance_type_offerings"):
        setattr(ec2, name, getattr(moto_ec2, name))
    return ec2


def test_a_type_without_gpus_fails_and_its_vcpus_come_from_the_api(aws: dict[str, str]) -> None:
    ec2 = ec2_with(lambda stub: stub.add_response("describe_instance_types", {"InstanceTypes": [
        {"InstanceType": "g5.xlarge", "VCpuInfo": {"DefaultVCpus": 8}}]}))  # no GpuInfo at all
    quotas = quota_client({"L-DB2E81BA": 100.0})
    checks = by_check(preflight(stack([aws["us-east-1a"], aws["us-east-1b"]], max_size=3),
                                lambda s: {"ec2": ec2, "service-quotas": quotas}.get(s) or boto3.client(
                                    s, region_name=REGION)))
    assert checks["g5.xlarge GPUs"] == Check("gpu", "g5.xlarge GPUs", "fail",
                                             "0 x no GPU (0 GiB GPU memory); largest request 1")
    assert checks["vCPU quota (G and VT, on-demand)"].detail == "quota 100 vCPUs, pool needs up to 24"  # 3 x 8


def test_vcpus_fall_back_to_the_table_when_the_api_cannot_say(aws: dict[str, str]) -> None:
    ec2 = ec2_with(lambda stub: stub.add_client_error("describe_instance_types",
                                                      service_error_code="RequestLimitExceeded"))
    quotas = quota_client({"L-DB2E81BA": 100.0})
    checks = by_check(preflight(stack([aws["us-east-1a"], aws["us-east-1b"]], max_size=3),
                                lambda s: {"ec2": ec2, "service-quotas": quotas}.get(s) or boto3.client(
                                    s, region_name=REGION)))
    assert checks["vCPU quota (G and VT, on-demand)"].detail == "quota 100 vCPUs, pool needs up to 12"  # 3 x 4


def test_the_cluster_check_reports_version_and_status(aws: dict[str, str]) -> None:
    checks = run(stack([aws["us-east-1a"], aws["us-east-1b"]]))
    assert checks["EKS cluster"] == Check("gpu", "EKS cluster", "pass", "prod: version 1.19, ACTIVE")  # moto's cluster
    eks = boto3.client("eks", region_name=REGION)
    stubber = Stubber(eks)
    stubber.add_response("describe_cluster", {"cluster": {"name": "prod", "version": "1.33"}})
    stubber.activate()
    checks = by_check(preflight(stack([aws["us-east-1a"], aws["us-east-1b"]]),
                                lambda s: eks if s == "eks" else boto3.client(s, region_name=REGION)))
    assert checks["EKS cluster"].detail == "prod: version 1.33, status unknown"


def test_an_unreachable_endpoint_is_unknown(aws: dict[str, str]) -> None:
    from botocore.exceptions import EndpointConnectionError

    class Unreachable:
        def __getattr__(self, operation: str) -> Any:
            def call(**_: Any) -> Any:
                raise EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com/")
            return call

    checks = by_check(preflight(stack([aws["us-east-1a"], aws["us-east-1b"]]),
                                lambda s: Unreachable() if s == "ec2" else boto3.client(s, region_name=REGION)))
    assert checks["subnet zones"] == Check("gpu", "subnet zones", "unknown", 'EndpointConnectionError: Could not '
                                           'connect to the endpoint URL: "https://ec2.us-east-1.amazonaws.com/"')


def test_a_type_nobody_knows_leaves_the_quota_unknown(aws: dict[str, str]) -> None:
    """g9.xlarge: not in our table, and EC2 does not answer for it. Its family's quota cannot be judged."""
    config = stack([aws["us-east-1a"], aws["us-east-1b"]], instance_type="g9.xlarge", gpus_per_node=1)
    config.gpu_pools[0].instance_types.append("g5.xlarge")
    ec2 = ec2_with(lambda stub: stub.add_client_error("describe_instance_types",
                                                      service_error_code="InvalidInstanceType"))
    checks = by_check(preflight(config, lambda s: ec2 if s == "ec2" else boto3.client(s, region_name=REGION)))
    assert checks["vCPU quota (G and VT, on-demand)"] == Check(
        "gpu", "vCPU quota (G and VT, on-demand)", "unknown",
        "an instance type's vCPUs are unknown (EC2 did not say, and it is not in our table)")


def test_every_pool_is_checked(aws: dict[str, str]) -> None:
    config = stack([aws["us-east-1a"], aws["us-east-1b"]])
    second = config.gpu_pools[0].model_copy(update={"name": "gpu-large", "instance_types": ["g5.12xlarge"]})
    config.gpu_pools.append(second)
    checks = preflight(config, lambda service: boto3.client(service, region_name=REGION))
    assert [(c.subject, c.check) for c in checks if c.check.endswith("offered")] == [
        ("gpu", "g5.xlarge offered"), ("gpu-large", "g5.12xlarge offered")]
