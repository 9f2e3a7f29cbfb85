"""``haai preflight`` against moto: passing and failing GPU capacity checks."""

from __future__ import annotations

from collections.abc import Iterator
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
