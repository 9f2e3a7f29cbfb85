"""A team's own Pulumi program built from ha-ai-stack components, with no stack config from that repo.

Two Triton services (ranking and embeddings) share one Redis Cluster as a feature cache and run on
a Karpenter GPU pool.
"""

import pulumi
import pulumi_kubernetes as k8s

from ha_ai_stack import (
    AutoscalingSpec,
    GpuNodePool,
    GpuNodePoolArgs,
    InferenceService,
    InferenceServiceArgs,
    KarpenterPoolSpec,
    MetricSpec,
    RedisCluster,
    RedisClusterArgs,
    ResourceSpec,
)

NAMESPACE = "recsys"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

namespace = k8s.core.v1.Namespace("recsys", metadata={
    "name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}})
k8s.networking.v1.NetworkPolicy("default-deny", metadata={"name": "default-deny", "namespace": NAMESPACE},
                                spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
                                opts=pulumi.ResourceOptions(depends_on=[namespace]))

pool = GpuNodePool("l4", GpuNodePoolArgs(
    name="l4", backend="karpenter", instance_types=["g6.xlarge", "g6.12xlarge"], zones=ZONES,
    karpenter=KarpenterPoolSpec(cluster_name="ml-eu", node_role="KarpenterNodeRole-ml-eu",
                                ami_alias="al2023@v20250505", limit_gpus=24)))

cache = RedisCluster("feature-cache", RedisClusterArgs(
    namespace=NAMESPACE, shards=3, replicas_per_shard=1, zones=ZONES, storage_size="30Gi", memory="6Gi"),
    opts=pulumi.ResourceOptions(depends_on=[namespace]))

services = {}
for name, model in (("ranker", "s3://recsys-models/ranker"), ("embedder", "s3://recsys-models/embedder")):
    services[name] = InferenceService(name, InferenceServiceArgs(
        image="nvcr.io/nvidia/tritonserver:24.08-py3", server="triton", namespace=NAMESPACE,
        args=["tritonserver", f"--model-repository={model}"],
        node_pool=pool.contract, redis=cache.connection,
        resources=ResourceSpec(cpu="4", memory="16Gi", gpus=1),
        autoscaling=AutoscalingSpec(max_replicas=9, metric=MetricSpec(
            type="pods", name="DCGM_FI_DEV_GPU_UTIL", target_average_value="70"))),
        opts=pulumi.ResourceOptions(depends_on=[namespace]))

pulumi.export("endpoints", {name: service.endpoint for name, service in services.items()})
pulumi.export("redis_seed_nodes", cache.connection.seed_nodes())
