"""HaAiStack: the whole serving stack of one environment, composed from a validated StackConfig."""


from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .cloud_identity import (
    EBS_CSI_POLICY_ARN,
    EBS_CSI_SERVICE_ACCOUNT,
    ROLE_ARN_ANNOTATION,
    ClusterIdentity,
    S3Location,
    backup_s3_policy,
    aws_provider,
    cluster_identity,
    irsa_role,
    read_only_s3_policy,
    role_name,
    s3_locations,
)
from .config import InferenceEntry, StackConfig, gpu_metric_names, validate_stack_config
from .connection import RedisConnection
from .device_plugin import NvidiaDevicePlugin
from .gpu_node_pool import GpuNodePool
from .inference import InferenceService, InferenceServiceArgs, InferenceSpec
from .gpu_metrics import GpuMetrics, GpuMetricsArgs
from .labels import selector_labels, standard_labels
from .monitoring import (
    inference_alerts,
    pod_monitor_spec,
    prometheus_rule_spec,
    redis_alerts,
    redis_pod_monitor,
    service_metrics_port,
)
from . import names
from .errors import check_name
from .options import child_options, register_public_outputs
from .prerequisites import PREREQUISITES_CONFIG_MAP, prerequisites_config_map_data
from .redis_cluster import RedisCluster, RedisClusterArgs, RedisClusterSpec
from .redis_cluster.build import backup_service_account_name

HaAiStackArgs = StackConfig  # the stack config is the composition's Args


def service_args(
    config: StackConfig, entry: InferenceEntry, redis: RedisConnection | None = None,
    role_arn: str | None = None,
) -> InferenceServiceArgs:
    """Component args of one configured service: its spec plus the stack's namespace, contracts and role."""
    pool = config.pool_for(entry)
    spec = entry.model_dump(include=set(InferenceSpec.model_fields))
    if role_arn:
        spec["service_account_annotations"] = {**spec["service_account_annotations"], ROLE_ARN_ANNOTATION: role_arn}
    return InferenceServiceArgs(
        **spec,
        namespace=config.namespace,
        node_pool=pool.contract() if pool else None,
        redis=redis if entry.use_redis else None,
    )


def cluster_provider(name: str, config: StackConfig) -> k8s.Provider | None:
    """An explicit Kubernetes provider for the configured cluster (context and/or kubeconfig), or None.

    Server-side apply stays on (the provider's default in v4): the cluster-wide objects are Patch resources.
    """
    if config.cluster is None or (config.cluster.context is None and config.cluster.kubeconfig is None):
        return None
    # The provider takes a kubeconfig path or its contents; a path keeps credentials out of the state.
    return k8s.Provider(f"{name}-kubernetes", context=config.cluster.context, kubeconfig=config.cluster.kubeconfig,
                        enable_server_side_apply=True)


def redis_args(config: StackConfig, backup_role_arn: str | None = None) -> RedisClusterArgs:
    """Component args of the stack's Redis Cluster (with the StorageClass and the backup role the stack brings
    on AWS)."""
    spec = config.redis.model_dump(include=set(RedisClusterSpec.model_fields))
    spec["storage_class"] = config.redis.storage_class_name(on_aws=bool(config.aws_pools()))
    if backup_role_arn:
        spec["service_account_annotations"] = {**spec["service_account_annotations"], ROLE_ARN_ANNOTATION: backup_role_arn}
    return RedisClusterArgs(**spec, namespace=config.namespace)


def redis_storage_class_body(config: StackConfig) -> dict[str, Any]:
    """The EBS CSI gp3 class for Redis: encrypted, expandable, bound where the pod lands (members are pinned
    to zones, and an EBS volume lives in one), and kept when released in prod."""
    return {
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
        "allow_volume_expansion": True,
        "volume_binding_mode": "WaitForFirstConsumer",
        "reclaim_policy": "Retain" if config.tier == "prod" else "Delete",
    }


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
    prerequisites: k8s.core.v1.ConfigMap
    """What the cluster must already have (the declared prerequisites), for operators and the policy pack."""

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
        self.prerequisites = k8s.core.v1.ConfigMap(
            f"{name}-prerequisites",
            metadata={"name": PREREQUISITES_CONFIG_MAP, "namespace": config.namespace, "labels": labels},
            data=prerequisites_config_map_data(config.prerequisites), opts=in_namespace)
        # Cluster-wide objects several stacks may need: applied server-side (Patch resources), so each stack
        # co-owns the fields it sets, and a second stack with the same values is no AlreadyExists error.
        self.priority_classes = [
            k8s.scheduling.v1.PriorityClassPatch(
                f"{name}-priority-class-{spec.name}", metadata={"name": spec.name, "labels": labels},
                **{_snake(k): v for k, v in spec.manifest_spec().items()}, opts=child)
            for spec in config.priority_classes]
        storage_class = config.redis.storage_class_name(on_aws=bool(config.aws_pools()))
        self.redis_storage_class = (
            k8s.storage.v1.StorageClassPatch(
                f"{name}-redis-storage-class", metadata={"name": storage_class, "labels": labels},
                **redis_storage_class_body(config), opts=child)
            if config.redis.enabled and config.redis.create_storage_class and config.aws_pools() and storage_class
            else None)
        # Python-only escape hatches (sub-components, not schema outputs).
        self.pools: dict[str, GpuNodePool] = {pool.name: GpuNodePool(pool.name, pool, opts=child)
                                              for pool in config.gpu_pools}
        self.device_plugin: NvidiaDevicePlugin | None = (
            NvidiaDevicePlugin("nvidia-device-plugin", opts=child)
            if config.gpu_pools and config.nvidia_device_plugin else None)
        # AWS: the EBS CSI driver the Redis volumes need, and a read-only S3 role for services that load
        # models from s3:// on eks pools (IRSA). Python-only escape hatch: self.aws_resources.
        self.aws_resources: list[Any] = []
        csi_addons, service_roles, redis_role = self._aws_identities(name, config, child)
        redis_after = [self.namespace, *([self.redis_storage_class] if self.redis_storage_class else []), *csi_addons,
                       *([redis_role[1]] if redis_role else [])]
        self.redis: RedisCluster | None = (
            RedisCluster("redis", redis_args(config, redis_role[0] if redis_role else None),
                         opts=child_options(self, opts, depends_on=redis_after))
            if config.redis.enabled else None)
        connection = self.redis.connection if self.redis else None
        self.services: dict[str, InferenceService] = {}
        for entry in config.inference:
            role_arn, role = service_roles.get(entry.name, (None, None))
            after = child_options(self, opts, depends_on=[self.namespace, *self.priority_classes, *([role] if role else [])])
            self.services[entry.name] = InferenceService(
                entry.name, service_args(config, entry, connection, role_arn), opts=after)
        self.gpu_metrics: GpuMetrics | None = (
            GpuMetrics("gpu-metrics", GpuMetricsArgs(namespace=config.namespace,
                                                     metrics=gpu_metric_names(config.hpa_metrics()),
                                                     prometheus_labels=config.metrics.prometheus_labels),
                       opts=child_options(self, opts, depends_on=[self.namespace]))
            if config.gpu_metrics_on() else None)
        self.monitors: list[k8s.apiextensions.CustomResource] = (
            self._monitors(name, config, in_namespace) if config.metrics.monitors else [])
        self.endpoints = pulumi.Output.from_input(
            {name: service.endpoint for name, service in sorted(self.services.items())})
        register_public_outputs(self)

    def _monitors(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions
                  ) -> list[k8s.apiextensions.CustomResource]:
        """PodMonitors for what exposes metrics, and one PrometheusRule with the stack's alerts."""
        labels = {**standard_labels(name, name, "monitoring"), **config.metrics.prometheus_labels}

        def monitor(kind: str, object_name: str, spec: dict[str, Any]) -> k8s.apiextensions.CustomResource:
            return k8s.apiextensions.CustomResource(
                f"{name}-{object_name}-{kind.lower()}", api_version="monitoring.coreos.com/v1", kind=kind,
                metadata={"name": object_name, "namespace": config.namespace, "labels": labels}, spec=spec, opts=opts)

        made = []
        groups: dict[str, list[dict[str, Any]]] = {}
        if config.redis.enabled:
            if config.redis.metrics_exporter:
                made.append(monitor("PodMonitor", "redis", redis_pod_monitor("redis")))
            groups["redis"] = redis_alerts(config.namespace, config.redis.replicas_per_shard,
                                           backups=config.redis.backup is not None)
        for entry in config.inference:
            port = service_metrics_port(entry.server, entry.http_port(), entry.metrics_port_or_preset())
            if port:
                made.append(monitor("PodMonitor", entry.name, pod_monitor_spec(selector_labels(entry.name, entry.name),
                                                                               port)))
            groups[f"inference-{entry.name}"] = inference_alerts(
                config.namespace, entry.name, gpu=bool(entry.resources.gpus) and config.gpu_metrics_on(),
                autoscaled=entry.autoscaling is not None and entry.autoscaling.engine == "hpa")
        made.append(monitor("PrometheusRule", "ha-ai-stack", prometheus_rule_spec(groups)))
        return made

    def _aws_identities(self, name: str, config: StackConfig, child: pulumi.ResourceOptions
                        ) -> tuple[list[Any], dict[str, tuple[str, Any]], tuple[str, Any] | None]:
        """EBS CSI add-ons (one per eks cluster, when Redis needs volumes), per-service S3 roles, and the Redis
        backup role (write under the backup prefix, read restore_from) on the first eks cluster."""
        eks_pools = [pool for pool in config.gpu_pools if pool.backend == "eks" and pool.eks is not None]
        wanted = [(entry, locations, pool) for entry in config.inference
                  if (locations := s3_locations(*entry.container_texts()))
                  and ROLE_ARN_ANNOTATION not in entry.service_account_annotations
                  and (pool := config.pool_for(entry)) is not None and pool.backend == "eks"]
        clusters = sorted({pool.eks.cluster_name for pool in eks_pools
                           if pool.eks and pool.eks.ebs_csi_driver == "install"}) if config.redis.enabled else []
        redis = config.redis
        backup_cluster = (sorted(pool.eks.cluster_name for pool in eks_pools if pool.eks)[:1]
                          if redis.enabled and (redis.backup or redis.restore_from)
                          and ROLE_ARN_ANNOTATION not in redis.service_account_annotations else [])
        if not wanted and not clusters and not backup_cluster:
            return [], {}, None
        aws = aws_provider(f"HaAiStack {name!r}")
        identities: dict[str, ClusterIdentity] = {}

        def identity(cluster: str) -> ClusterIdentity:
            if cluster not in identities:
                identities[cluster] = cluster_identity(aws, cluster)
            return identities[cluster]

        addons = []
        for cluster in clusters:
            namespace, account = EBS_CSI_SERVICE_ACCOUNT
            role = irsa_role(aws, f"{name}-{cluster}-ebs-csi-role", role_name(cluster, "ebs-csi"), identity(cluster),
                             namespace, account, child, managed_policy_arn=EBS_CSI_POLICY_ARN)
            addon = aws.eks.Addon(f"{name}-{cluster}-ebs-csi-driver", cluster_name=cluster,
                                  addon_name="aws-ebs-csi-driver", service_account_role_arn=role.arn,
                                  resolve_conflicts_on_create="OVERWRITE",
                                  opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[role])))
            self.aws_resources += [role, addon]
            addons.append(addon)
        roles: dict[str, tuple[str, Any]] = {}
        for entry, locations, pool in wanted:
            assert pool.eks is not None
            ident = identity(pool.eks.cluster_name)
            role_id = role_name(config.namespace, entry.name)
            role = irsa_role(aws, f"{name}-{entry.name}-role", role_id, ident, config.namespace, entry.name, child,
                             policy=read_only_s3_policy(locations))
            self.aws_resources.append(role)
            roles[entry.name] = (ident.role_arn(role_id), role)
        redis_role = None
        for cluster in backup_cluster:
            backup = S3Location(redis.backup.bucket, f"{redis.backup.prefix}/redis") if redis.backup else None
            restore = s3_locations(redis.restore_from)[0] if redis.restore_from else None
            role_id = role_name(config.namespace, "redis-backup")
            role = irsa_role(aws, f"{name}-redis-backup-role", role_id, identity(cluster), config.namespace,
                             backup_service_account_name("redis"), child,
                             policy=backup_s3_policy(backup, restore))
            self.aws_resources.append(role)
            redis_role = (identity(cluster).role_arn(role_id), role)
        return addons, roles, redis_role


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
