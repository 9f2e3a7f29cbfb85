"""Common NVIDIA GPU instance types: GPU count, model, memory per GPU, vCPUs.

Figures from the AWS EC2 "Accelerated computing" instance type pages (docs.aws.amazon.com/ec2/
latest/instancetypes/ac.html) and ``ec2 describe-instance-types`` GpuInfo. ``haai preflight`` checks
the live figures; this table only fills in the scheduling contract at program time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstanceType:
    gpus: int
    gpu_model: str
    gpu_memory_gib: int
    vcpus: int


GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {
    "g4dn.xlarge": GpuInstanceType(1, "T4", 16, 4),
    "g4dn.2xlarge": GpuInstanceType(1, "T4", 16, 8),
    "g4dn.12xlarge": GpuInstanceType(4, "T4", 16, 48),
    "g5.xlarge": GpuInstanceType(1, "A10G", 24, 4),
    "g5.2xlarge": GpuInstanceType(1, "A10G", 24, 8),
    "g5.4xlarge": GpuInstanceType(1, "A10G", 24, 16),
    "g5.12xlarge": GpuInstanceType(4, "A10G", 24, 48),
    "g5.48xlarge": GpuInstanceType(8, "A10G", 24, 192),
    "g6.xlarge": GpuInstanceType(1, "L4", 24, 4),
    "g6.12xlarge": GpuInstanceType(4, "L4", 24, 48),
    "g6e.xlarge": GpuInstanceType(1, "L40S", 48, 4),
    "g6e.12xlarge": GpuInstanceType(4, "L40S", 48, 48),
    "p4d.24xlarge": GpuInstanceType(8, "A100", 40, 96),
    "p5.48xlarge": GpuInstanceType(8, "H100", 80, 192),
}


def quota_family(instance_type: str) -> str:
    """The EC2 vCPU quota an instance type counts against: 'G and VT' or 'P'."""
    return "P" if instance_type.startswith("p") else "G and VT"
