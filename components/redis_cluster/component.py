"""RedisCluster: a zone-aware Redis Cluster that survives failover, full restarts, rollouts and zone loss.

The placement and the objects are built in ``build`` (see its docstring for the layout); this module
only wires them into resources, in the order a safe rollout needs.
"""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from ..connection import RedisConnection
from ..errors import ArgsError, validate_args
from ..labels import selector_labels, standard_labels
from ..options import child_options, register_public_outputs
from .build import (
    Member,
    backup_job_spec,
    backup_service_account_name,
    cron_job_spec,
    restore_job_spec,
    s3_egress_policy_spec,
    balance_cron_job_spec,
    balance_job_spec,
    bootstrap_job_spec,
    bootstrap_policy_spec,
    client_labels,
    config_files,
    config_map_name,
    headless_service_name,
    member_host,
    network_policy_spec,
    plan_members,
    short_hash,
    statefulset_spec,
    topology_hash,
)
from .spec import (
    AWAIT_SLACK_SECONDS,
    BALANCE_TIMEOUT_SECONDS,
    BOOTSTRAP_TIMEOUT_SECONDS,
    BUS_PORT,
    RESTORE_TIMEOUT_SECONDS,
    CLIENT_PORT,
    COMPONENT,
    RedisClusterArgs,
    name_problems,
)


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
    balance_job: k8s.batch.v1.Job
    """Runs balance.sh after every rollout (named by the hash of the pod templates): masters back to one per zone."""
    balance_cron_job: k8s.batch.v1.CronJob | None
    """Runs balance.sh on ``balance_schedule``, to undo unplanned failovers; none when the schedule is null."""
    backup_cron_job: k8s.batch.v1.CronJob | None
    """Backs every shard up to S3 on ``backup.schedule``; none without ``backup``."""
    restore_job: k8s.batch.v1.Job | None
    """Verifies the ``restore_from`` backup before any member starts; none without ``restore_from``."""
    connection: RedisConnection
    """The connection contract: pass it as ``InferenceServiceArgs.redis``."""

    def __init__(
        self, name: str, args: RedisClusterArgs | dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args = validate_args(RedisClusterArgs, args, f"RedisCluster {name!r}")
        if problems := name_problems(name, args.zones):
            raise ArgsError(f"RedisCluster {name!r}", [("name", problem) for problem in problems])
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
        config_map = config_map_name(name, files)
        self.config_map = k8s.core.v1.ConfigMap(f"{name}-config", metadata=metadata(config_map),
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

        s3_users = bool(args.backup or args.restore_from)
        # Python-only (not a schema output): the identity of the backup, restore and restoring member pods.
        self.service_account: k8s.core.v1.ServiceAccount | None = (
            k8s.core.v1.ServiceAccount(
                f"{name}-backup-sa", metadata={**metadata(backup_service_account_name(name)),
                                               "annotations": args.service_account_annotations},
                automount_service_account_token=False, opts=child)
            if s3_users else None)
        s3_egress = ([k8s.networking.v1.NetworkPolicy(f"{name}-s3-netpol", metadata=metadata(f"{name}-s3"),
                                                      spec=s3_egress_policy_spec(name), opts=child)]
                     if s3_users else [])
        # A restore is verified (manifest, shard count, every checksum, a fresh target) before any member starts.
        restore_await = f"{RESTORE_TIMEOUT_SECONDS}s"
        self.restore_job = (
            k8s.batch.v1.Job(
                f"{name}-restore", metadata=metadata(f"{name}-restore-{short_hash(args.restore_from)}"),
                spec=restore_job_spec(name, args, secret_name, config_map),
                opts=child_options(self, opts, depends_on=[self.config_map, self.secret, self.service_account,
                                                           *s3_egress],
                                   delete_before_replace=True,
                                   custom_timeouts=pulumi.CustomTimeouts(create=restore_await, update=restore_await)))
            if args.restore_from else None)

        groups: dict[str, list[Member]] = {}
        for member in self.members:
            groups.setdefault(member.group, []).append(member)
        # One zone after another: each StatefulSet waits for the previous one's rollout, and the engine
        # awaits each rollout (every pod Ready), so at most one member of the whole cluster is down at a
        # time. readiness.sh is honest before bootstrap (a fresh, empty member is ready) and after it (a
        # replica only once its first sync is done), so a fresh install cannot deadlock on this chain.
        specs = {group: statefulset_spec(name, args, group, group_members[0].zone, len(group_members), secret_name,
                                         config_map)
                 for group, group_members in groups.items()}
        self.stateful_sets = []
        previous: list[Any] = [self.config_map, self.secret, *([self.restore_job] if self.restore_job else [])]
        for group, group_members in groups.items():
            await_for = f"{args.statefulset_await_seconds(len(group_members))}s"
            sts = k8s.apps.v1.StatefulSet(
                f"{group}-sts",
                metadata=metadata(group, {"ha-ai-stack/redis-group": group}),
                spec=specs[group],
                opts=child_options(self, opts, depends_on=previous,
                                   custom_timeouts=pulumi.CustomTimeouts(create=await_for, update=await_for)))
            self.stateful_sets.append(sts)
            previous = [sts]
        self.pod_disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=metadata(name),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}}, opts=child)
        self.network_policies = [
            k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=metadata(name),
                                            spec=network_policy_spec(name), opts=child),
            k8s.networking.v1.NetworkPolicy(f"{name}-bootstrap-netpol", metadata=metadata(f"{name}-bootstrap"),
                                            spec=bootstrap_policy_spec(name), opts=child),
            *s3_egress,
        ]
        bootstrap_await = f"{BOOTSTRAP_TIMEOUT_SECONDS + AWAIT_SLACK_SECONDS}s"
        self.bootstrap_job = k8s.batch.v1.Job(
            f"{name}-bootstrap", metadata=metadata(f"{name}-bootstrap-{topology_hash(files)}"),
            spec=bootstrap_job_spec(name, args, secret_name, config_map),
            opts=child_options(self, opts, depends_on=[*self.stateful_sets, *self.network_policies,
                                                       self.headless_service],
                               delete_before_replace=True,
                               custom_timeouts=pulumi.CustomTimeouts(create=bootstrap_await, update=bootstrap_await)))
        # A new Job for every new set of pod templates, after the last zone has rolled: the rollout's
        # handovers leave masters bunched in some zones, and a zone loss then would lose the majority.
        templates = [spec["template"] for spec in specs.values()]
        balance_await = f"{BALANCE_TIMEOUT_SECONDS + AWAIT_SLACK_SECONDS}s"
        self.balance_job = k8s.batch.v1.Job(
            f"{name}-balance", metadata=metadata(f"{name}-balance-{short_hash(templates)}"),
            spec=balance_job_spec(name, args, secret_name, config_map),
            opts=child_options(self, opts, depends_on=[*self.stateful_sets, self.bootstrap_job],
                               delete_before_replace=True,
                               custom_timeouts=pulumi.CustomTimeouts(create=balance_await, update=balance_await)))
        self.balance_cron_job = (
            k8s.batch.v1.CronJob(
                f"{name}-balance-schedule", metadata=metadata(f"{name}-balance"),
                spec=balance_cron_job_spec(name, args, secret_name, config_map),
                opts=child_options(self, opts, depends_on=[self.bootstrap_job]))
            if args.balance_schedule else None)
        self.backup_cron_job = (
            k8s.batch.v1.CronJob(
                f"{name}-backup-schedule", metadata=metadata(f"{name}-backup"),
                spec=cron_job_spec(args.backup.schedule, backup_job_spec(name, args, secret_name, config_map)),
                opts=child_options(self, opts, depends_on=[self.bootstrap_job]))
            if args.backup else None)
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
