"""``haai preflight``: catch GPU capacity problems before a deploy, from the AWS APIs.

For every eks or karpenter pool: the subnets span >= 2 zones; every instance type is offered in every
one of those zones; each type's GPUs cover the largest GPU request placed on the pool; the EKS
cluster exists; the vCPU quota covers the pool's maximum. Each check is pass, fail or unknown (the
API could not answer, with the reason), never a silent pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ha_ai_stack.config import StackConfig
from ha_ai_stack.gpu_instances import GPU_INSTANCE_TYPES, quota_family
from ha_ai_stack.gpu_node_pool import GpuNodePoolArgs

Status = Literal["pass", "fail", "unknown"]
ClientFactory = Callable[[str], Any]
# EC2 "Running On-Demand / All Standard Spot Instance Requests" vCPU quotas, by instance family.
QUOTA_CODES = {("G and VT", "on-demand"): "L-DB2E81BA", ("P", "on-demand"): "L-417A185B",
               ("G and VT", "spot"): "L-3819A6DF", ("P", "spot"): "L-7212CCBC"}
NOT_FOUND = {"InvalidSubnetID.NotFound", "ResourceNotFoundException", "InvalidInstanceType"}


@dataclass(frozen=True)
class Check:
    subject: str  # a pool, the cluster, or a prerequisite
    check: str
    status: Status
    detail: str


def _reason(error: Exception) -> str:
    if isinstance(error, ClientError):
        return f"{error.response['Error'].get('Code')}: {error.response['Error'].get('Message')}"
    return f"{type(error).__name__}: {error}"


def _is_not_found(error: Exception) -> bool:
    return isinstance(error, ClientError) and error.response["Error"].get("Code") in NOT_FOUND


def largest_gpu_request(config: StackConfig, pool: GpuNodePoolArgs) -> int:
    return max((e.resources.gpus for e in config.inference if config.pool_for(e) is pool), default=0)


class PoolPreflight:
    """The checks of one pool; ``client`` makes boto3 clients (injectable for tests)."""

    def __init__(self, config: StackConfig, pool: GpuNodePoolArgs, client: ClientFactory) -> None:
        self.config, self.pool, self.client = config, pool, client
        self.checks: list[Check] = []
        self.types: dict[str, dict[str, Any]] = {}

    def add(self, check: str, status: Status, detail: str) -> None:
        self.checks.append(Check(self.pool.name, check, status, detail))

    def run(self) -> list[Check]:
        zones = self.subnet_zones()
        self.offerings(zones or set(self.pool.zones))
        self.gpu_fit()
        self.cluster()
        self.quota()
        return self.checks

    def subnet_zones(self) -> set[str]:
        pool = self.pool
        try:
            if pool.eks:
                subnets = self.client("ec2").describe_subnets(SubnetIds=list(pool.eks.subnet_ids))["Subnets"]
            else:
                assert pool.karpenter is not None
                tags = pool.karpenter.discovery(pool.karpenter.subnet_selector_tags)
                filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
                subnets = self.client("ec2").describe_subnets(Filters=filters)["Subnets"]
        except (ClientError, BotoCoreError) as error:
            self.add("subnet zones", "fail" if _is_not_found(error) else "unknown", _reason(error))
            return set()
        zones = {s["AvailabilityZone"] for s in subnets}
        detail = f"{len(subnets)} subnets in {len(zones)} zones: {', '.join(sorted(zones)) or 'none'}"
        self.add("subnet zones", "pass" if len(zones) >= 2 else "fail",
                 detail if len(zones) >= 2 else f"{detail}; need at least 2 so one zone outage leaves capacity")
        return zones

    def offerings(self, zones: set[str]) -> None:
        if not self.pool.instance_types:
            self.add("offered in every zone", "unknown", "no instance types listed (Karpenter picks from families)")
            return
        for instance_type in self.pool.instance_types:
            try:
                response = self.client("ec2").describe_instance_type_offerings(
                    LocationType="availability-zone",
                    Filters=[{"Name": "instance-type", "Values": [instance_type]},
                             {"Name": "location", "Values": sorted(zones)}])
            except (ClientError, BotoCoreError) as error:
                self.add(f"{instance_type} offered", "unknown", _reason(error))
                continue
            offered = {o["Location"] for o in response["InstanceTypeOfferings"]}
            missing = sorted(zones - offered)
            self.add(f"{instance_type} offered", "fail" if missing or not zones else "pass",
                     f"not offered in {', '.join(missing)}" if missing else f"offered in {', '.join(sorted(zones))}")

    def gpu_fit(self) -> None:
        if not self.pool.instance_types:
            return
        wanted = largest_gpu_request(self.config, self.pool)
        try:
            response = self.client("ec2").describe_instance_types(InstanceTypes=list(self.pool.instance_types))
        except (ClientError, BotoCoreError) as error:
            self.add("GPUs per node", "fail" if _is_not_found(error) else "unknown", _reason(error))
            return
        self.types = {t["InstanceType"]: t for t in response["InstanceTypes"]}
        for instance_type in self.pool.instance_types:
            info = self.types.get(instance_type, {}).get("GpuInfo") or {}
            gpus = sum(g["Count"] for g in info.get("Gpus", []))  # EC2 always gives Count and Name per GPU model
            memory_gib = info.get("TotalGpuMemoryInMiB", 0) / 1024
            models = ", ".join(sorted({g["Name"] for g in info.get("Gpus", [])})) or "no GPU"
            detail = f"{gpus} x {models} ({memory_gib:.0f} GiB GPU memory); largest request {wanted}"
            declared = self.pool.gpus_per_node
            if declared and declared > gpus:
                self.add(f"{instance_type} GPUs", "fail", f"{detail}; the pool declares gpus_per_node {declared}")
            else:
                self.add(f"{instance_type} GPUs", "pass" if gpus >= max(wanted, 1) else "fail", detail)

    def cluster(self) -> None:
        section = self.pool.eks or self.pool.karpenter
        assert section is not None
        try:
            cluster = self.client("eks").describe_cluster(name=section.cluster_name)["cluster"]
        except (ClientError, BotoCoreError) as error:
            self.add("EKS cluster", "fail" if _is_not_found(error) else "unknown",
                     f"{section.cluster_name}: {_reason(error)}")
            return
        self.add("EKS cluster", "pass", f"{section.cluster_name}: version {cluster.get('version')}, "
                                        f"{cluster.get('status', 'status unknown')}")

    def vcpus_of(self, instance_type: str) -> int | None:
        """vCPUs of one node: EC2's answer, else our table; None when neither knows the type."""
        answered = self.types.get(instance_type, {}).get("VCpuInfo", {}).get("DefaultVCpus")
        known = GPU_INSTANCE_TYPES.get(instance_type)
        return answered or (known.vcpus if known else None)

    def needed_vcpus(self) -> dict[str, int | None]:
        """vCPUs the pool may run at its maximum, per quota family (None: a type's vCPUs are unknown)."""
        if self.pool.karpenter:
            families = {quota_family(t) for t in self.pool.instance_types} or {"G and VT"}
            return {family: self.pool.karpenter.limit_cpu for family in families}
        assert self.pool.eks is not None
        need: dict[str, int | None] = {}
        for instance_type in self.pool.instance_types:
            family, vcpus = quota_family(instance_type), self.vcpus_of(instance_type)
            so_far = need.get(family, 0)
            need[family] = None if vcpus is None or so_far is None else max(so_far, self.pool.eks.max_size * vcpus)
        return need

    def quota(self) -> None:
        for family, vcpus in sorted(self.needed_vcpus().items()):
            code = QUOTA_CODES[family, self.pool.capacity_type]
            name = f"vCPU quota ({family}, {self.pool.capacity_type})"
            if vcpus is None:
                self.add(name, "unknown", "an instance type's vCPUs are unknown (EC2 did not say, and it is not in "
                                          "our table)")
                continue
            try:
                value = self.client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=code)[
                    "Quota"]["Value"]
            except (ClientError, BotoCoreError, KeyError) as error:
                self.add(name, "unknown", f"quota {code} could not be read: {_reason(error)}")
                continue
            self.add(name, "pass" if value >= vcpus else "fail", f"quota {value:.0f} vCPUs, pool needs up to {vcpus}")


def preflight(config: StackConfig, client: ClientFactory) -> list[Check]:
    """Every check of every pool the stack provisions through AWS."""
    checks: list[Check] = []
    for pool in config.gpu_pools:
        if pool.backend == "existing":
            checks.append(Check(pool.name, "backend", "unknown", "existing nodes: no AWS capacity to check"))
        else:
            checks += PoolPreflight(config, pool, client).run()
    return checks
