"""InferenceService: a GPU model server behind a Service, made highly available.

The Args are plain data (``spec``); ``build`` turns them into Kubernetes objects as dicts (pure,
unit-testable); the component only wires those into resources.
"""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .. import names
from ..errors import check_name, validate_args
from ..options import child_options, register_public_outputs
from .build import (
    SLOW_ROLLOUT_SECONDS,
    build_inference_objects,
    create_await_seconds,
    rollout_deadline_seconds,
    rollout_steps,
    update_await_seconds,
)
from .spec import SERVICE_NAME_MAX, InferenceServiceArgs

class InferenceService(pulumi.ComponentResource):
    """A highly available model server: Deployment, Service, HPA, PDB, ServiceAccount, NetworkPolicy.

    Example::

        InferenceService("ai-inference-service", InferenceServiceArgs(
            image="ghcr.io/acme/ai-model:1.4.2", replicas=3, port=8080,
            resources=ResourceSpec(cpu="2", memory="8Gi", cpu_limit="4", memory_limit="8Gi")))
    """

    deployment: k8s.apps.v1.Deployment
    """The model server's Deployment (maxUnavailable 0, maxSurge ``max_surge``)."""
    service: k8s.core.v1.Service
    """The ClusterIP Service in front of the pods."""
    pod_disruption_budget: k8s.policy.v1.PodDisruptionBudget
    """Limits voluntary evictions (node drains, consolidation)."""
    service_account: k8s.core.v1.ServiceAccount
    """The pods' ServiceAccount (annotate it for cloud identity)."""
    network_policy: k8s.networking.v1.NetworkPolicy
    """Allows the service's own ingress and egress under the namespace's default deny."""
    autoscaler: k8s.autoscaling.v2.HorizontalPodAutoscaler | None
    """The HorizontalPodAutoscaler, when autoscaling is set."""
    service_name: pulumi.Output[str]
    """The Service's name, for other programs to find it."""
    endpoint: pulumi.Output[str]
    """In-cluster URL of the service: ``http://<service>.<namespace>.svc.cluster.local:<port>``."""

    def __init__(
        self, name: str, args: InferenceServiceArgs | dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args = validate_args(InferenceServiceArgs, args, f"InferenceService {name!r}")
        check_name(f"InferenceService {name!r}", name, names.dns_1035_label, SERVICE_NAME_MAX)
        super().__init__("haai:index:InferenceService", name, None, opts)
        objects = build_inference_objects(name, args)
        child = child_options(self, opts)
        metadata = objects.metadata

        # Pods never need the API, so the token is not mounted (the pod spec says so too).
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=objects.service_account_metadata, automount_service_account_token=False, opts=child
        )
        # The HPA owns spec.replicas once it exists; Pulumi must not reset it on every update.
        # Pulumi waits as long as the rollout can take: every pod at once on create, one surge step after
        # another (each a model load) on update.
        update_await = update_await_seconds(args)
        if update_await > SLOW_ROLLOUT_SECONDS:
            pulumi.log.warn(
                f"{name}: a rolling update may take up to {update_await / 3600:.1f} h ({rollout_steps(args)} steps of "
                f"up to {rollout_deadline_seconds(args)} s, {args.max_surge} pod(s) at a time); raise max_surge "
                f"where the GPU pool has headroom", self)
        # Python-only escape hatch: the ConfigMap holding the model-delivery script, when there is a model.
        self.model_fetch_config_map: k8s.core.v1.ConfigMap | None = (
            k8s.core.v1.ConfigMap(f"{name}-model-fetch", metadata=objects.fetch_config_map["metadata"],
                                  data=objects.fetch_config_map["data"], opts=child)
            if objects.fetch_config_map else None)
        deployment_opts = child_options(
            self, opts,
            depends_on=[self.service_account, *([self.model_fetch_config_map] if self.model_fetch_config_map else [])],
            ignore_changes=["spec.replicas"] if objects.hpa_spec or objects.scaled_object_spec else None,
            custom_timeouts=pulumi.CustomTimeouts(create=f"{create_await_seconds(args)}s", update=f"{update_await}s"),
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment", metadata=metadata, spec=objects.deployment_spec, opts=deployment_opts
        )
        self.service = k8s.core.v1.Service(f"{name}-service", metadata=metadata, spec=objects.service_spec, opts=child)
        self.pod_disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=metadata, spec=objects.pdb_spec, opts=child
        )
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=metadata, spec=objects.network_policy_spec, opts=child
        )
        self.autoscaler = (
            k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-hpa", metadata=metadata, spec=objects.hpa_spec, opts=child)
            if objects.hpa_spec
            else None
        )
        # Python-only escape hatch: KEDA's ScaledObject (a custom resource), when autoscaling.engine is keda.
        self.scaled_object: k8s.apiextensions.CustomResource | None = (
            k8s.apiextensions.CustomResource(f"{name}-scaled-object", api_version="keda.sh/v1alpha1",
                                             kind="ScaledObject", metadata=metadata,
                                             spec=objects.scaled_object_spec, opts=child)
            if objects.scaled_object_spec else None)
        self.service_name = self.service.metadata.apply(lambda meta: meta.name)  # the name the cluster reports
        port = args.http_port()
        namespace = args.namespace
        self.endpoint = self.service_name.apply(lambda svc: f"http://{svc}.{namespace}.svc.cluster.local:{port}")
        register_public_outputs(self)
