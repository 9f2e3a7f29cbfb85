"""GPU node pool rules: zones, IMDSv2, encrypted root volumes (EKS launch templates and Karpenter)."""

from __future__ import annotations

from typing import Any

from .catalog import Rule, setting
from .k8s import ZONE, dig

MIN_ZONES = {"minZones": {"type": "integer", "minimum": 1, "default": 2}}
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


def _node_launch_problems(resource_type: str, props: Any) -> list[str]:
    if resource_type == LAUNCH_TEMPLATE:
        tokens = dig(props, "metadataOptions", "httpTokens")
        volumes = [dig(m, "ebs", "encrypted") for m in props.get("blockDeviceMappings") or []]
    else:
        tokens = dig(props, "spec", "metadataOptions", "httpTokens")
        volumes = [dig(m, "ebs", "encrypted") for m in dig(props, "spec", "blockDeviceMappings") or []]
    problems = [] if tokens == "required" else [f"IMDSv2 is not required (httpTokens {tokens!r})"]
    if not volumes or any(str(v).lower() != "true" for v in volumes):
        problems.append("a root volume is not encrypted")
    return problems


def _zone_count(resource_type: str, props: Any) -> tuple[int, str]:
    if resource_type == NODE_GROUP:
        return len(props.get("subnetIds") or []), "subnets (preflight resolves their zones)"
    requirements = dig(props, "spec", "template", "spec", "requirements") or []
    zones = [v for r in requirements if r.get("key") == ZONE and r.get("operator") == "In" for v in r.get("values") or []]
    return len(set(zones)), "zones"


def _gpu_pools(args: Any, report: Any) -> None:
    minimum = setting(args, "minZones", MIN_ZONES)
    for resource in args.resources:
        if resource.resource_type in (LAUNCH_TEMPLATE, NODE_CLASS):
            for problem in _node_launch_problems(resource.resource_type, resource.props):
                report(f"{resource.name}: {problem}.", resource.urn)
        if resource.resource_type in (NODE_GROUP, NODE_POOL):
            count, what = _zone_count(resource.resource_type, resource.props)
            if count < minimum:
                report(f"{resource.name}: {count} {what}; GPU pools need at least {minimum}.", resource.urn)


RULES = [
    Rule("gpu-pool-ha", "GPU pools span the tier's zones, require IMDSv2, and encrypt root volumes.",
         "list subnets/zones in >= 2 zones, set httpTokens: required, encrypt the root EBS volume.",
         "checkov CKV_AWS_79 (IMDSv2), CKV_AWS_8 (encrypted EBS)", _gpu_pools, stack=True, config=MIN_ZONES),
]
