"""Pod Security Standard "restricted" contexts, built in one place for every workload."""

from __future__ import annotations

import re
from typing import Any

NON_ROOT_UID = 65532
# Env var names that look like they hold a secret: those must come from a Secret, never a literal value.
# Public: the policy pack's no-literal-secret-env rule uses the same pattern.
SECRET_LOOKING_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|CREDENTIAL|PRIVATE_?KEY)", re.I)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def restricted_pod_security_context(run_as_user: int = NON_ROOT_UID) -> dict[str, Any]:
    """Pod-level context that satisfies the "restricted" profile.

    ``fsGroup`` makes mounted volumes writable by the non-root user; ``OnRootMismatch`` avoids a slow
    recursive chown of large model caches and Redis data on every start.
    """
    return {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_user,
        "fsGroup": run_as_user,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security_context(read_only_root: bool = True) -> dict[str, Any]:
    """Container-level context: no privilege escalation, every capability dropped."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def dns_egress_rule() -> dict[str, Any]:
    """The NetworkPolicy egress rule every pod that names a Service or an endpoint needs: cluster DNS (kube-dns
    in kube-system, as on EKS and kubeadm clusters) over UDP and TCP (large answers fall back to TCP)."""
    return {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }
