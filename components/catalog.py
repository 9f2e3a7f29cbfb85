"""The public components and their Args, in one list: the provider, the generated types and docs/api.md
all read it, so a new component is added in one place."""

from pydantic import BaseModel

from .device_plugin import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from .gpu_metrics import GpuMetrics, GpuMetricsArgs
from .gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from .inference import InferenceService, InferenceServiceArgs
from .redis_cluster import RedisCluster, RedisClusterArgs
from .stack import HaAiStack, HaAiStackArgs

PUBLIC_COMPONENTS: dict[str, tuple[type, type[BaseModel]]] = {
    "InferenceService": (InferenceService, InferenceServiceArgs),
    "RedisCluster": (RedisCluster, RedisClusterArgs),
    "GpuNodePool": (GpuNodePool, GpuNodePoolArgs),
    "NvidiaDevicePlugin": (NvidiaDevicePlugin, NvidiaDevicePluginArgs),
    "GpuMetrics": (GpuMetrics, GpuMetricsArgs),
    "HaAiStack": (HaAiStack, HaAiStackArgs),
}
