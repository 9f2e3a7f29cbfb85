"""The component provider: serves every public component to Pulumi YAML, TypeScript, Go and .NET.

The Python SDK's component provider infers the schema from type annotations: each class below takes
the generated TypedDict of its Args (``provider_types``, generated from the pydantic models) and
inherits its outputs, as annotated attributes, from the library component it wraps. Nothing here
runs at import; ``serve()`` starts the gRPC server the Pulumi engine talks to.
"""

import sys
from typing import Any

import pulumi
from pulumi.errors import InputPropertiesError
from pulumi.provider import main
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.server import ComponentInitError

from . import device_plugin, gpu_metrics, gpu_node_pool, inference, redis_cluster, stack
from . import provider_types as inputs

PACKAGE = "haai"
VERSION = "0.2.0"


class InferenceService(inference.InferenceService):
    __doc__ = inference.InferenceService.__doc__

    def __init__(self, name: str, args: inputs.InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, dict(args), opts)


class RedisCluster(redis_cluster.RedisCluster):
    __doc__ = redis_cluster.RedisCluster.__doc__

    def __init__(self, name: str, args: inputs.RedisClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, dict(args), opts)


class GpuNodePool(gpu_node_pool.GpuNodePool):
    __doc__ = gpu_node_pool.GpuNodePool.__doc__

    def __init__(self, name: str, args: inputs.GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, dict(args), opts)


class NvidiaDevicePlugin(device_plugin.NvidiaDevicePlugin):
    __doc__ = device_plugin.NvidiaDevicePlugin.__doc__

    def __init__(
        self, name: str, args: inputs.NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, dict(args), opts)


class GpuMetrics(gpu_metrics.GpuMetrics):
    __doc__ = gpu_metrics.GpuMetrics.__doc__

    def __init__(self, name: str, args: inputs.GpuMetricsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, dict(args), opts)


class HaAiStack(stack.HaAiStack):
    __doc__ = stack.HaAiStack.__doc__

    def __init__(self, name: str, args: inputs.HaAiStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, dict(args), opts)


SERVED = [InferenceService, RedisCluster, GpuNodePool, NvidiaDevicePlugin, GpuMetrics, HaAiStack]


class HaaiProvider(ComponentProvider):
    """The SDK's component provider, reporting bad arguments as invalid input properties.

    The SDK wraps any error from a component's constructor in ComponentInitError, which the engine
    shows as a stack trace; our ArgsError (an InputPropertiesError) is unwrapped so the engine gets
    one ``property path: reason`` per problem instead.
    """

    def construct(self, name: str, resource_type: str, inputs: Any, options: Any = None) -> Any:
        try:
            return super().construct(name, resource_type, inputs, options)
        except ComponentInitError as error:
            inner = getattr(error, "inner", None) or error.__cause__
            if isinstance(inner, InputPropertiesError):
                raise inner from None
            raise


def serve(argv: list[str] | None = None) -> None:
    """Run the provider: the engine starts it with its address and reads the port it prints."""
    main(HaaiProvider(SERVED, PACKAGE, None, VERSION), sys.argv[1:] if argv is None else argv)
