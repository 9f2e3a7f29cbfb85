"""The one place that decides which labels every object carries.

Selectors use only the stable subset (name + instance), so an upgrade that changes the version or
component label never touches an immutable ``spec.selector``.
"""

from __future__ import annotations

PART_OF = "ha-ai-stack"
MANAGED_BY = "pulumi"


def selector_labels(name: str, instance: str) -> dict[str, str]:
    """Labels that select a workload's pods. Never add anything that can change over time."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance,
    }


def standard_labels(
    name: str,
    instance: str,
    component: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Recommended Kubernetes labels for every object; ``extra`` cannot override the standard keys."""
    labels = dict(extra or {})
    labels.update(selector_labels(name, instance))
    labels.update(
        {
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": MANAGED_BY,
        }
    )
    return labels
