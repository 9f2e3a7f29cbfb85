"""RedisCluster: a zone-aware Redis Cluster that survives failover, full restarts and zone loss.

Layout: one StatefulSet per zone, pinned there by node affinity (EBS volumes are zonal anyway).
Shard i's master lives in zone i mod Z and its replica j in zone (i + j) mod Z, so no two members
of a shard share a zone and no zone holds a majority of the masters. The pairing is written to
``topology.txt`` in the ConfigMap, and ``bootstrap.sh`` makes each replica follow its own shard's
master, so the layout holds from the first boot. Without zones, one StatefulSet with required
hostname anti-affinity keeps every member on its own node.
"""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from ..connection import RedisConnection
from ..errors import validate_args
from ..labels import selector_labels, standard_labels
from ..options import child_options, register_public_outputs
from .build import (
    Member,
    bootstrap_job_spec,
    bootstrap_policy_spec,
    client_labels,
    config_files,
    headless_service_name,
    member_host,
    network_policy_spec,
    plan_members,
    statefulset_spec,
    topology_hash,
)
from .spec import BUS_PORT, CLIENT_PORT, COMPONENT, RedisClusterArgs


class RedisCluster(pulumi.ComponentResource):
    """A Redis Cluster spread over zones, with persistence, auth, a planned-handover preStop and a bootstrap Job."""

    password: random.RandomPassword
    """The generated password (a Pulumi secret); members and clients read it from ``secret``."""
    secret: k8s.core.v1.Secret
    """The Secret holding the password under the key ``password``."""
    config_map: k8s.core.v1.ConfigMap
    """redis.conf, the scripts and the topology, shipped verbatim to every member."""
    headless_service: k8s.core.v1.Service
    """Gives every member a stable DNS name (publishes not-ready addresses for the cluster bus)."""
    client_service: k8s.core.v1.Service
    """ClusterIP Service for clients' first contact."""
    stateful_sets: list[k8s.apps.v1.StatefulSet]
    """One StatefulSet per zone (or one in all, without zones)."""
    pod_disruption_budget: k8s.policy.v1.PodDisruptionBudget
    """One member down at a time across the whole cluster."""
    network_policies: list[k8s.networking.v1.NetworkPolicy]
    """Member and bootstrap traffic rules under the namespace's default deny."""
    bootstrap_job: k8s.batch.v1.Job
    """Forms the cluster once; named by the topology hash."""
    connection: RedisConnection
    """The connection contract: pass it as ``InferenceServiceArgs.redis``."""

    def __init__(
        self, name: str, args: RedisClusterArgs | dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args = validate_args(RedisClusterArgs, args, f"RedisCluster {name!r}")
        super().__init__("haai:index:RedisCluster", name, None, opts)
        child = child_options(self, opts)
        namespace = args.namespace
        labels = standard_labels(name, name, COMPONENT)
        selector = selector_labels(name, name)

        def metadata(object_name: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
            return {"name": object_name, "namespace": namespace, "labels": {**labels, **(extra or {})}}

        # Python-only (not a schema output): where each member lives.
        self.members: list[Member] = plan_members(name, args)
        files = config_files(name, args, self.members)
        secret_name = f"{name}-auth"

        self.password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret", metadata=metadata(secret_name), type="Opaque",
            string_data={"password": self.password.result}, opts=child)
        self.config_map = k8s.core.v1.ConfigMap(f"{name}-config", metadata=metadata(f"{name}-config"),
                                                data=files, opts=child)
        ports = [{"name": "redis", "port": CLIENT_PORT, "targetPort": "redis", "protocol": "TCP"}]
        self.headless_service = k8s.core.v1.Service(
            f"{name}-headless", metadata=metadata(headless_service_name(name)),
            spec={"clusterIP": "None", "publishNotReadyAddresses": True, "selector": selector,
                  "ports": [*ports, {"name": "cluster-bus", "port": BUS_PORT, "targetPort": "cluster-bus",
                                     "protocol": "TCP"}]},
            opts=child)
        self.client_service = k8s.core.v1.Service(
            f"{name}-client", metadata=metadata(name),
            spec={"type": "ClusterIP", "selector": selector, "ports": ports}, opts=child)

        groups: dict[str, list[Member]] = {}
        for member in self.members:
            groups.setdefault(member.group, []).append(member)
        # Members only become ready once the cluster is formed, and the bootstrap Job forms it, so the
        # StatefulSets must not block on readiness; the Job is what Pulumi waits for.
        sts_opts = child_options(self, opts, depends_on=[self.config_map, self.secret])
        self.stateful_sets = [
            k8s.apps.v1.StatefulSet(
                f"{group}-sts",
                metadata={**metadata(group, {"ha-ai-stack/redis-group": group}),
                          "annotations": {"pulumi.com/skipAwait": "true"}},
                spec=statefulset_spec(name, args, group, members[0].zone, len(members), secret_name),
                opts=sts_opts)
            for group, members in groups.items()
        ]
        self.pod_disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=metadata(name),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}}, opts=child)
        self.network_policies = [
            k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=metadata(name),
                                            spec=network_policy_spec(name), opts=child),
            k8s.networking.v1.NetworkPolicy(f"{name}-bootstrap-netpol", metadata=metadata(f"{name}-bootstrap"),
                                            spec=bootstrap_policy_spec(name), opts=child),
        ]
        job_name = f"{name}-bootstrap-{topology_hash(files)}"
        self.bootstrap_job = k8s.batch.v1.Job(
            f"{name}-bootstrap", metadata=metadata(job_name),
            spec=bootstrap_job_spec(name, args, secret_name),
            opts=child_options(self, opts, depends_on=[*self.stateful_sets, *self.network_policies,
                                                       self.headless_service],
                               delete_before_replace=True))
        self.connection = RedisConnection(
            seed_hosts=[member_host(name, namespace, m) for m in self.members],
            port=CLIENT_PORT,
            password_secret_name=secret_name,
            password_secret_key="password",
            member_selector=selector,
            client_labels=client_labels(name),
            namespace=namespace,
        )
        register_public_outputs(self)
