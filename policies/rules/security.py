"""Image and pod security rules: pinned images, the "restricted" profile, no literal secrets in env."""

from __future__ import annotations

from typing import Any

from .library.images import image_pin_problem
from .library.security import SECRET_LOOKING_ENV

from .catalog import Rule, setting
from .k8s import all_containers, dig, object_name, workload_containers, workload_pod

DIGESTS = {"requireDigest": {"type": "boolean", "default": False}}
ALLOWED = {"allowedWorkloads": {"type": "array", "items": {"type": "string"},
                                "default": ["kube-system/nvidia-device-plugin", "kube-system/dcgm-exporter"],
                                "description": "namespace/name of justified system workloads (e.g. the NVIDIA "
                                               "device plugin DaemonSet) exempt from the restricted profile."}}


def _images(args: Any, report: Any) -> None:
    for container in workload_containers(args):
        image = str(container.get("image", ""))
        problem = image_pin_problem(image)
        if problem is None and setting(args, "requireDigest", DIGESTS) and "@sha256:" not in image:
            problem = f"image {image!r} is pinned by tag only; this tier requires a digest"
        if problem:
            report(f"{object_name(args.props)} container {container.get('name')}: {problem}.")


def _restricted_problems(pod: dict[str, Any]) -> list[str]:
    problems = [f"{flag} is true" for flag in ("hostNetwork", "hostPID", "hostIPC") if pod.get(flag)]
    problems += [f"volume {v.get('name')} is a hostPath" for v in pod.get("volumes") or [] if "hostPath" in v]
    pod_context = pod.get("securityContext") or {}
    for container in all_containers(pod):
        context = container.get("securityContext") or {}
        name = container.get("name")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"container {name} may run as root (runAsNonRoot is not true)")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container {name} allows privilege escalation")
        if context.get("privileged"):
            problems.append(f"container {name} is privileged")
        if "ALL" not in (dig(context, "capabilities", "drop") or []):
            problems.append(f"container {name} does not drop ALL capabilities")
        seccomp = dig(context, "seccompProfile", "type") or dig(pod_context, "seccompProfile", "type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"container {name} has no RuntimeDefault seccomp profile")
    return problems


def _pod_security(args: Any, report: Any) -> None:
    pod = workload_pod(args)
    if pod is None or object_name(args.props) in setting(args, "allowedWorkloads", ALLOWED):
        return
    for problem in _restricted_problems(pod):
        report(f"{object_name(args.props)}: {problem}.")


def _literal_secrets(args: Any, report: Any) -> None:
    for container in workload_containers(args):
        for variable in container.get("env") or []:
            if "value" in variable and SECRET_LOOKING_ENV.search(str(variable.get("name"))):
                report(f"{object_name(args.props)} container {container.get('name')}: env {variable['name']} "
                       f"carries a literal value; read it from a Secret (valueFrom.secretKeyRef).")


RULES = [
    Rule("image-pinned", "Images are pinned: a tag other than latest, or a digest (digests only, if configured).",
         "pin a version tag or an @sha256 digest.",
         "Polaris tagNotSpecified; kube-score container-image-tag; Kyverno disallow-latest-tag; checkov CKV_K8S_14",
         _images, config=DIGESTS),
    Rule("pod-security-restricted", "Pods meet Pod Security \"restricted\": non-root, no privilege escalation, "
         "drop ALL, seccomp RuntimeDefault, no hostPath, hostNetwork or hostPID.",
         "set the restricted securityContext; list a justified system DaemonSet in allowedWorkloads.",
         "Kyverno pod-security restricted; Polaris runAsRootAllowed, privilegeEscalationAllowed; checkov CKV_K8S_20/23/28",
         _pod_security, config=ALLOWED),
    Rule("no-literal-secret-env", "No secret-looking env var (password, token, key...) carries a literal value.",
         "use valueFrom.secretKeyRef.", "checkov CKV_K8S_35 (prefer secrets as files)", _literal_secrets),
]
