"""GpuNodePool: GPU capacity from an EKS managed node group, a Karpenter NodePool, or nodes that exist.

Every backend produces the same scheduling contract (node selector, tolerations, GPUs per node,
GPU model, zones), which ``InferenceService(node_pool=...)`` consumes. Nodes carry the label
``nvidia.com/gpu.present=true`` plus the pool label, and the taint ``nvidia.com/gpu=true:NoSchedule``,
so only pods that ask for GPUs land there.
"""


import json
from typing import Any, Literal

import pulumi
from pydantic import ConfigDict, Field, field_validator, model_validator

from . import names
from .cloud_identity import aws_provider
from .errors import ArgsModel, validate_args

from .gpu_instances import GPU_INSTANCE_TYPES
from .labels import standard_labels
from .options import child_options, register_public_outputs
from .quantity import positive_quantity
from .scheduling import GPU_PRESENT_LABEL, GPU_RESOURCE, POOL_LABEL, ZONE, GpuSchedulingContract

EKS_NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
AMI_ROOT_DEVICE = {"AL2023_x86_64_NVIDIA": "/dev/xvda", "BOTTLEROCKET_x86_64_NVIDIA": "/dev/xvdb"}


class _Strict(ArgsModel):
    model_config = ConfigDict(extra="forbid")


class EksPoolSpec(_Strict):
    """An EKS managed node group on an existing cluster."""

    cluster_name: str = Field(min_length=1, description="The EKS cluster.")
    subnet_ids: list[str] = Field(min_length=2, description="Subnets, in at least 2 zones (preflight checks).")
    ami_type: Literal["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"] = Field(
        default="AL2023_x86_64_NVIDIA", description="NVIDIA-enabled AMI family.")
    root_volume_gib: int = Field(default=100, ge=20, le=16384, description="Encrypted gp3 root volume size.")
    min_size: int = Field(default=1, ge=0, le=1000, description="Fewest nodes.")
    max_size: int = Field(default=4, ge=1, le=1000, description="Most nodes.")
    desired_size: int | None = Field(
        default=None, ge=0, description="Nodes at creation (default min_size); ignored afterwards (autoscaler's).")
    ebs_csi_driver: Literal["install", "present"] = Field(
        default="install", description="The aws-ebs-csi-driver EKS add-on (with its IRSA role) that provisions the "
                                       "Redis volumes: `install` makes it; `present` when the cluster has it already.")

    @model_validator(mode="after")
    def _sizes(self) -> "EksPoolSpec":
        desired = self.desired_size if self.desired_size is not None else self.min_size
        if not self.min_size <= desired <= self.max_size:
            raise ValueError(f"need min_size <= desired_size <= max_size (got {self.min_size}, {desired}, "
                             f"{self.max_size})")
        return self


class KarpenterPoolSpec(_Strict):
    """A Karpenter v1 NodePool and EC2NodeClass."""

    cluster_name: str = Field(min_length=1, description="The EKS cluster (default discovery tag value).")
    node_role: str = Field(min_length=1, description="IAM role name of the nodes Karpenter launches.")
    ami_alias: str = Field(default="al2023@latest", description="AMI alias; pin it in prod, e.g. al2023@v20250505.")
    instance_families: list[str] = Field(
        default_factory=list, description="Instance families (e.g. g5, g6) when instance_types is empty.")
    subnet_selector_tags: dict[str, str] = Field(
        default_factory=dict, description="Subnet tags (default karpenter.sh/discovery: <cluster>).")
    security_group_selector_tags: dict[str, str] = Field(
        default_factory=dict, description="Security group tags (default karpenter.sh/discovery: <cluster>).")
    root_volume_gib: int = Field(default=100, ge=20, le=16384, description="Encrypted gp3 root volume size.")
    limit_gpus: int = Field(default=16, ge=1, description="Most GPUs the pool may launch.")
    limit_cpu: int = Field(default=256, ge=1, description="Most vCPUs the pool may launch.")
    limit_memory: str = Field(default="1024Gi", description="Most memory the pool may launch.")
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = Field(
        default="WhenEmpty", description="WhenEmpty never evicts a serving GPU pod to repack nodes.")
    consolidate_after: str = Field(default="10m", description="Wait before consolidating an empty node.")
    expire_after: str = Field(default="720h", description="Node lifetime before replacement (or Never).")
    max_disrupted_nodes: str = Field(default="1", description="Disruption budget: nodes at once (n or n%).")
    business_hours_freeze: bool = Field(default=False, description="No voluntary disruption in business hours.")
    freeze_schedule: str = Field(default="0 8 * * mon-fri", description="Cron (UTC) when the freeze starts.")
    freeze_duration: str = Field(default="10h", description="How long the freeze lasts.")

    _check_memory = field_validator("limit_memory")(positive_quantity)

    def discovery(self, tags: dict[str, str]) -> dict[str, str]:
        return tags or {"karpenter.sh/discovery": self.cluster_name}


class GpuNodePoolArgs(_Strict):
    """One GPU node pool. ``backend`` picks how capacity is provided; its section configures it."""

    name: str = Field(description="Pool name; nodes carry it as the `ha-ai-stack/gpu-pool` label.")
    backend: Literal["existing", "eks", "karpenter"] = Field(default="existing", description="How nodes come.")
    instance_types: list[str] = Field(default_factory=list, description="EC2 instance types (eks: required).")
    gpus_per_node: int | None = Field(
        default=None, ge=1, le=16, description="GPUs per node; default from the instance type table.")
    gpu_model: str | None = Field(default=None, description="GPU model; default from the instance type table.")
    zones: list[str] = Field(default_factory=list, description="Zones of the pool (eks, karpenter: >= 2).")
    node_labels: dict[str, str] = Field(default_factory=dict, description="Extra node labels pods select on.")
    capacity_type: Literal["on-demand", "spot"] = Field(default="on-demand", description="On-demand or spot.")
    eks: EksPoolSpec | None = Field(default=None, description="Settings of the eks backend.")
    karpenter: KarpenterPoolSpec | None = Field(default=None, description="Settings of the karpenter backend.")

    # The name is a node label value, the Karpenter objects' names and the EKS node group's name.
    _check_name = field_validator("name")(names.dns_label)
    _check_labels = field_validator("node_labels")(names.labels)
    _check_zones = field_validator("zones")(names.each(names.label_value))

    @model_validator(mode="after")
    def _backend_section(self) -> "GpuNodePoolArgs":
        for backend in ("eks", "karpenter"):
            section = getattr(self, backend)
            if self.backend == backend and section is None:
                raise ValueError(f"backend {backend} needs its `{backend}` section")
            if self.backend != backend and section is not None:
                raise ValueError(f"`{backend}` section given but backend is {self.backend}")
        if self.backend != "existing" and len(set(self.zones)) < 2:
            raise ValueError(f"backend {self.backend} needs at least 2 zones (got {len(set(self.zones))}): "
                             f"one zone outage would take every GPU node")
        if self.backend == "eks" and not self.instance_types:
            raise ValueError("backend eks needs instance_types")
        if self.karpenter is not None and not (self.instance_types or self.karpenter.instance_families):
            raise ValueError("backend karpenter needs instance_types or karpenter.instance_families")
        return self

    def known_types(self) -> list[Any]:
        return [GPU_INSTANCE_TYPES[t] for t in self.instance_types if t in GPU_INSTANCE_TYPES]

    def resolved_gpus_per_node(self) -> int | None:
        """Declared, or the fewest GPUs of the listed types when all are in the table."""
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        known = self.known_types()
        if known and len(known) == len(self.instance_types):
            return min(t.gpus for t in known)
        return None

    def resolved_gpu_model(self) -> str | None:
        models = {t.gpu_model for t in self.known_types()}
        return self.gpu_model or (models.pop() if len(models) == 1 else None)

    def contract(self) -> GpuSchedulingContract:
        return GpuSchedulingContract.for_pool(
            self.name, gpus_per_node=self.resolved_gpus_per_node(), gpu_model=self.resolved_gpu_model(),
            zones=self.zones, extra_node_labels=self.node_labels)

    def node_labels_all(self) -> dict[str, str]:
        return {GPU_PRESENT_LABEL: "true", POOL_LABEL: self.name, **self.node_labels}


def eks_launch_template_args(spec: GpuNodePoolArgs) -> dict[str, Any]:
    """IMDSv2 only (hop limit 2 so pods behind the node can still reach it) and an encrypted gp3 root."""
    assert spec.eks is not None
    return {
        "metadata_options": {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 2},
        "block_device_mappings": [{
            "device_name": AMI_ROOT_DEVICE[spec.eks.ami_type],
            "ebs": {"volume_size": spec.eks.root_volume_gib, "volume_type": "gp3", "encrypted": "true",
                    "delete_on_termination": "true"},
        }],
    }


def karpenter_node_class_spec(spec: GpuNodePoolArgs) -> dict[str, Any]:
    karpenter = spec.karpenter
    assert karpenter is not None
    return {
        "amiSelectorTerms": [{"alias": karpenter.ami_alias}],
        "role": karpenter.node_role,
        "subnetSelectorTerms": [{"tags": karpenter.discovery(karpenter.subnet_selector_tags)}],
        "securityGroupSelectorTerms": [{"tags": karpenter.discovery(karpenter.security_group_selector_tags)}],
        "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                            "httpPutResponseHopLimit": 2, "httpTokens": "required"},
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {
            "volumeSize": f"{karpenter.root_volume_gib}Gi", "volumeType": "gp3", "encrypted": True,
            "deleteOnTermination": True}}],
    }


def karpenter_node_pool_spec(spec: GpuNodePoolArgs) -> dict[str, Any]:
    karpenter = spec.karpenter
    assert karpenter is not None
    requirements: list[dict[str, Any]] = [
        {"key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": [spec.capacity_type]},
        {"key": ZONE, "operator": "In", "values": sorted(spec.zones)},
    ]
    if spec.instance_types:
        requirements.insert(1, {"key": "node.kubernetes.io/instance-type", "operator": "In",
                                "values": list(spec.instance_types)})
    else:
        requirements.insert(1, {"key": "karpenter.k8s.aws/instance-family", "operator": "In",
                                "values": list(karpenter.instance_families)})
    budgets: list[dict[str, Any]] = [{"nodes": karpenter.max_disrupted_nodes}]
    if karpenter.business_hours_freeze:
        budgets.append({"nodes": "0", "schedule": karpenter.freeze_schedule, "duration": karpenter.freeze_duration})
    return {
        "template": {
            "metadata": {"labels": spec.node_labels_all()},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": spec.name},
                "requirements": requirements,
                "taints": [{"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}],
                "expireAfter": karpenter.expire_after,
            },
        },
        "limits": {GPU_RESOURCE: str(karpenter.limit_gpus), "cpu": str(karpenter.limit_cpu),
                   "memory": karpenter.limit_memory},
        "disruption": {"consolidationPolicy": karpenter.consolidation_policy,
                       "consolidateAfter": karpenter.consolidate_after, "budgets": budgets},
    }


class GpuNodePool(pulumi.ComponentResource):
    """GPU nodes from one backend, and the scheduling contract that places pods on them."""

    contract: GpuSchedulingContract
    """The scheduling contract: pass it as ``InferenceServiceArgs.node_pool``."""

    def __init__(
        self, name: str, args: GpuNodePoolArgs | dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args = validate_args(GpuNodePoolArgs, args, f"GpuNodePool {name!r}")
        aws = aws_provider(f"GpuNodePool {name!r}") if args.backend == "eks" else None
        super().__init__("haai:index:GpuNodePool", name, None, opts)
        self.contract = args.contract()
        # Python-only escape hatches (backend-specific children, not schema outputs).
        self.node_role: Any = None
        self.launch_template: Any = None
        self.node_group: Any = None
        self.node_class: Any = None
        self.node_pool: Any = None
        if aws is not None:
            self._eks(name, args, opts, aws)
        elif args.backend == "karpenter":
            self._karpenter(name, args, opts)
        register_public_outputs(self)

    def _eks(self, name: str, spec: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None, aws: Any) -> None:
        eks = spec.eks
        assert eks is not None
        child = child_options(self, opts)
        tags = {"ha-ai-stack/gpu-pool": spec.name}
        self.node_role = aws.iam.Role(f"{name}-node-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                           "Action": "sts:AssumeRole"}]}), tags=tags, opts=child)
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-{policy}", role=self.node_role.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=child)
            for policy in EKS_NODE_POLICIES
        ]
        self.launch_template = aws.ec2.LaunchTemplate(f"{name}-launch-template", tags=tags,
                                                      **eks_launch_template_args(spec), opts=child)
        desired = eks.desired_size if eks.desired_size is not None else eks.min_size
        self.node_group = aws.eks.NodeGroup(
            f"{name}-node-group",
            cluster_name=eks.cluster_name,
            node_group_name=spec.name,
            node_role_arn=self.node_role.arn,
            subnet_ids=list(eks.subnet_ids),
            instance_types=list(spec.instance_types),
            capacity_type="SPOT" if spec.capacity_type == "spot" else "ON_DEMAND",
            ami_type=eks.ami_type,
            scaling_config={"min_size": eks.min_size, "max_size": eks.max_size, "desired_size": desired},
            update_config={"max_unavailable": 1},
            labels=spec.node_labels_all(),
            taints=[{"key": GPU_RESOURCE, "value": "true", "effect": "NO_SCHEDULE"}],
            launch_template={"id": self.launch_template.id,
                             "version": self.launch_template.latest_version.apply(str)},
            tags=tags,
            # The cluster autoscaler owns the node count once the group exists.
            opts=child_options(self, opts, depends_on=attachments, ignore_changes=["scalingConfig.desiredSize"]),
        )

    def _karpenter(self, name: str, spec: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None) -> None:
        import pulumi_kubernetes as k8s

        child = child_options(self, opts)
        labels = standard_labels(spec.name, spec.name, "gpu-node-pool")
        self.node_class = k8s.apiextensions.CustomResource(
            f"{name}-node-class", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
            metadata={"name": spec.name, "labels": labels}, spec=karpenter_node_class_spec(spec), opts=child)
        self.node_pool = k8s.apiextensions.CustomResource(
            f"{name}-node-pool", api_version="karpenter.sh/v1", kind="NodePool",
            metadata={"name": spec.name, "labels": labels}, spec=karpenter_node_pool_spec(spec),
            opts=child_options(self, opts, depends_on=[self.node_class]))
