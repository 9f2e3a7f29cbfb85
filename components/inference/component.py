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
from .build import build_inference_objects, rollout_deadline_seconds
from .spec import SERVICE_NAME_MAX, InferenceServiceArgs

class InferenceService(pulumi.ComponentResource):
    """A highly available model server: Deployment, Service, HPA, PDB, ServiceAccount, NetworkPolicy.

    Example::

        InferenceService("ai-inference-service", InferenceServiceArgs(
            image="ghcr.io/acme/ai-model:1.4.2", replicas=3, port=8080,
            resources=ResourceSpec(cpu="2", memory="8Gi", cpu_limit="4", memory_limit="8Gi")))
    """

    deployment: k8s.apps.v1.Deployment
    """The model server's Deployment (maxUnavailable 0, maxSurge 1)."""
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
        # Pulumi waits for the rollout as long as Kubernetes does (one model load plus slack).
        deadline = f"{rollout_deadline_seconds(args)}s"
        deployment_opts = child_options(
            self, opts,
            depends_on=[self.service_account],
            ignore_changes=["spec.replicas"] if objects.hpa_spec else None,
            custom_timeouts=pulumi.CustomTimeouts(create=deadline, update=deadline),
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
        self.service_name = self.service.metadata.apply(lambda meta: meta.name or name)
        port = args.http_port()
        namespace = args.namespace
        self.endpoint = self.service_name.apply(lambda svc: f"http://{svc}.{namespace}.svc.cluster.local:{port}")
        register_public_outputs(self)
