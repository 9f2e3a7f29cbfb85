"""ha-ai-stack: Pulumi components for highly available GPU inference on Kubernetes.

Importing this package registers nothing and does no I/O; resources exist only once you construct a
component inside a Pulumi program.
"""

from .config import ConfigError, StackConfig, load_stack_config, validate_stack_config
from .connection import RedisConnection
from .device_plugin import NvidiaDevicePlugin
from .gpu_node_pool import EksPoolSpec, GpuNodePool, GpuPoolSpec, KarpenterPoolSpec
from .inference import (
    AutoscalingSpec,
    DisruptionSpec,
    InferenceService,
    InferenceServiceArgs,
    MetricSpec,
    ResourceSpec,
    SecretKeyRef,
)
from .probes import PRESETS, ServerPreset
from .redis_cluster import RedisCluster, RedisClusterArgs
from .scheduling import GpuSchedulingContract
from .stack import HaAiStack

__all__ = [
    "AutoscalingSpec",
    "ConfigError",
    "DisruptionSpec",
    "EksPoolSpec",
    "GpuNodePool",
    "GpuPoolSpec",
    "GpuSchedulingContract",
    "KarpenterPoolSpec",
    "NvidiaDevicePlugin",
    "HaAiStack",
    "InferenceService",
    "InferenceServiceArgs",
    "MetricSpec",
    "PRESETS",
    "RedisCluster",
    "RedisClusterArgs",
    "RedisConnection",
    "ResourceSpec",
    "SecretKeyRef",
    "ServerPreset",
    "StackConfig",
    "load_stack_config",
    "validate_stack_config",
]
