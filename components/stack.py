"""HaAiStack: the whole serving stack of one environment, composed from a validated StackConfig."""


from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .config import InferenceEntry, StackConfig, validate_stack_config
from .connection import RedisConnection
from .device_plugin import NvidiaDevicePlugin
from .gpu_node_pool import GpuNodePool
from .inference import InferenceService, InferenceServiceArgs, InferenceSpec
from .labels import standard_labels
from . import names
from .errors import check_name
from .options import child_options, register_public_outputs
from .redis_cluster import RedisCluster, RedisClusterArgs, RedisClusterSpec

HaAiStackArgs = StackConfig  # the stack config is the composition's Args


def service_args(
    config: StackConfig, entry: InferenceEntry, redis: RedisConnection | None = None
) -> InferenceServiceArgs:
    """Component args of one configured service: its spec plus the stack's namespace and contracts."""
    pool = config.pool_for(entry)
    spec = entry.model_dump(include=set(InferenceSpec.model_fields))
    return InferenceServiceArgs(
        **spec,
        namespace=config.namespace,
        node_pool=pool.contract() if pool else None,
        redis=redis if entry.use_redis else None,
    )


def redis_args(config: StackConfig) -> RedisClusterArgs:
    """Component args of the stack's Redis Cluster."""
    return RedisClusterArgs(**config.redis.model_dump(include=set(RedisClusterSpec.model_fields)),
                            namespace=config.namespace)


def default_deny_policy_spec() -> dict[str, object]:
    """Deny all traffic to and from every pod of the namespace; each workload then allows what it needs."""
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


class HaAiStack(pulumi.ComponentResource):
    """The whole serving stack of one environment: GPU pools (+ device plugin), the namespace (Pod
    Security "restricted" enforced), a default-deny NetworkPolicy, Redis and every service."""

    namespace: k8s.core.v1.Namespace
    """The stack's Namespace, with Pod Security "restricted" enforced."""
    default_deny: k8s.networking.v1.NetworkPolicy
    """Denies all ingress and egress in the namespace; each workload allows what it needs."""
    endpoints: pulumi.Output[dict[str, str]]
    """In-cluster URL of every inference service, by name."""

    def __init__(
        self, name: str, args: HaAiStackArgs | Mapping[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        config = args if isinstance(args, StackConfig) else validate_stack_config(args)
        check_name(f"HaAiStack {name!r}", name, lambda value, _: names.label_value(value), names.LABEL_VALUE_MAX)
        super().__init__("haai:index:HaAiStack", name, None, opts)
        child = child_options(self, opts)
        labels = standard_labels(name, name, "namespace")
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": config.namespace,
                "labels": {
                    **labels,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            },
            opts=child,
        )
        in_namespace = child_options(self, opts, depends_on=[self.namespace])
        self.default_deny = k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata={"name": "default-deny", "namespace": config.namespace, "labels": labels},
            spec=default_deny_policy_spec(),
            opts=in_namespace,
        )
        # Python-only escape hatches (sub-components, not schema outputs).
        self.pools: dict[str, GpuNodePool] = {pool.name: GpuNodePool(pool.name, pool, opts=child)
                                              for pool in config.gpu_pools}
        self.device_plugin: NvidiaDevicePlugin | None = (
            NvidiaDevicePlugin("nvidia-device-plugin", opts=child)
            if config.gpu_pools and config.nvidia_device_plugin else None)
        self.redis: RedisCluster | None = (
            RedisCluster("redis", redis_args(config), opts=in_namespace) if config.redis.enabled else None)
        connection = self.redis.connection if self.redis else None
        self.services: dict[str, InferenceService] = {
            entry.name: InferenceService(entry.name, service_args(config, entry, connection), opts=in_namespace)
            for entry in config.inference
        }
        self.endpoints = pulumi.Output.from_input(
            {name: service.endpoint for name, service in sorted(self.services.items())})
        register_public_outputs(self)
