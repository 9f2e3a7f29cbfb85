"""The NVIDIA device plugin DaemonSet: advertises nvidia.com/gpu on GPU nodes.

The one workload that cannot meet Pod Security "restricted": it must run as root and mount the
kubelet's device-plugin directory (hostPath) to register its socket. It runs in kube-system, only on
GPU nodes, and the policy pack names it in ``pod-security-restricted.allowedWorkloads``.
"""


from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from pydantic import ConfigDict, Field, field_validator

from .errors import ArgsModel, validate_args
from .images import require_pinned_image
from .labels import selector_labels, standard_labels
from .options import child_options, register_public_outputs
from .scheduling import gpu_node_daemon_set_spec

NAME = "nvidia-device-plugin"
NAMESPACE = "kube-system"
DEFAULT_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"
PLUGIN_DIR = "/var/lib/kubelet/device-plugins"


def device_plugin_spec(image: str) -> dict[str, Any]:
    container = {
        "name": NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "device-plugin", "mountPath": PLUGIN_DIR}],
    }
    return gpu_node_daemon_set_spec(
        selector_labels(NAME, NAME), standard_labels(NAME, NAME, "device-plugin"), container,
        [{"name": "device-plugin", "hostPath": {"path": PLUGIN_DIR, "type": "Directory"}}],
        extra_tolerations=[{"key": "CriticalAddonsOnly", "operator": "Exists"}])


class NvidiaDevicePluginArgs(ArgsModel):
    """Args of ``NvidiaDevicePlugin``."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(default=DEFAULT_IMAGE, description="Device plugin image, pinned by tag or digest.")

    _check_image = field_validator("image")(require_pinned_image)


class NvidiaDevicePlugin(pulumi.ComponentResource):
    """The device plugin DaemonSet (turn it off where the GPU operator or Bottlerocket provide it)."""

    daemon_set: k8s.apps.v1.DaemonSetPatch
    """The DaemonSet in kube-system, on GPU nodes only, applied server-side (shared by stacks on one cluster)."""

    def __init__(
        self,
        name: str,
        args: NvidiaDevicePluginArgs | dict[str, Any] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        args = validate_args(NvidiaDevicePluginArgs, args if args is not None else {}, f"NvidiaDevicePlugin {name!r}")
        super().__init__("haai:index:NvidiaDevicePlugin", name, None, opts)
        # One DaemonSet per cluster, however many stacks run there: a server-side apply (Patch) lets every
        # stack co-own the same object with the same spec, where a plain create fails with AlreadyExists in
        # the second stack. A spec that differs between stacks is a field conflict, reported by `pulumi up`.
        self.daemon_set = k8s.apps.v1.DaemonSetPatch(
            f"{name}-daemonset",
            metadata={"name": NAME, "namespace": NAMESPACE, "labels": standard_labels(NAME, NAME, "device-plugin")},
            spec=device_plugin_spec(args.image), opts=child_options(self, opts))
        register_public_outputs(self)
