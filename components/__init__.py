"""ha-ai-stack: Pulumi components for highly available GPU inference on Kubernetes.

Import name ``ha_ai_stack`` (source folder ``components/``), chosen so it never collides with a
Pulumi project's own ``components`` package. Importing it registers nothing and does no I/O;
resources exist only once you construct a component inside a Pulumi program.

Every component has one shape: ``Component(name, args: ComponentArgs | dict, opts)``. Bad arguments
raise ``ArgsError`` (a ``pulumi.InputPropertiesError``) listing ``path: reason`` per problem.
"""

from .config import StackConfig, load_stack_config, validate_stack_config
from .connection import RedisConnection
from .device_plugin import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from .errors import ArgsError, ConfigError
from .gpu_metrics import GpuMetrics, GpuMetricsArgs
from .gpu_node_pool import EksPoolSpec, GpuNodePool, GpuNodePoolArgs, KarpenterPoolSpec
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
from .stack import HaAiStack, HaAiStackArgs, cluster_provider

__all__ = [
    "ArgsError",
    "AutoscalingSpec",
    "ConfigError",
    "DisruptionSpec",
    "EksPoolSpec",
    "GpuMetrics",
    "GpuMetricsArgs",
    "GpuNodePool",
    "GpuNodePoolArgs",
    "GpuSchedulingContract",
    "HaAiStack",
    "HaAiStackArgs",
    "InferenceService",
    "InferenceServiceArgs",
    "KarpenterPoolSpec",
    "MetricSpec",
    "NvidiaDevicePlugin",
    "NvidiaDevicePluginArgs",
    "PRESETS",
    "RedisCluster",
    "RedisClusterArgs",
    "RedisConnection",
    "ResourceSpec",
    "SecretKeyRef",
    "ServerPreset",
    "StackConfig",
    "cluster_provider",
    "load_stack_config",
    "validate_stack_config",
]
