"""Resource-option and output helpers shared by every component, so all of them behave alike."""

from __future__ import annotations

import inspect
from typing import Any

import pulumi
from pydantic import BaseModel


def inherited_dependencies(opts: pulumi.ResourceOptions | None) -> list[Any]:
    """The ``depends_on`` a component was given, to hand to its children.

    A component's own ``depends_on`` does not hold back its children's registration, so an ordering
    such as "after the Namespace" must be passed down explicitly.
    """
    depends_on = opts.depends_on if opts else None
    if depends_on is None:
        return []
    return list(depends_on) if isinstance(depends_on, (list, tuple)) else [depends_on]


def child_options(
    parent: pulumi.Resource, opts: pulumi.ResourceOptions | None, *, depends_on: list[Any] | None = None, **extra: Any
) -> pulumi.ResourceOptions:
    """Options of a component's child: parented to it, after whatever the component was told to wait for."""
    return pulumi.ResourceOptions(parent=parent, depends_on=[*inherited_dependencies(opts), *(depends_on or [])],
                                  **extra)


def public_output_names(component_type: type) -> list[str]:
    """A component's outputs: its class-level annotations (the same ones the provider's schema is read from)."""
    names: dict[str, None] = {}
    for cls in reversed(component_type.__mro__):
        if cls in (object, pulumi.Resource, pulumi.ComponentResource):
            continue
        names.update(dict.fromkeys(k for k in inspect.get_annotations(cls) if not k.startswith("_")))
    return list(names)


def schema_name(python_name: str) -> str:
    """``service_name`` -> ``serviceName``: how the provider's schema (and so the engine's state) names outputs."""
    head, *rest = python_name.split("_")
    return head + "".join(part.title() for part in rest)


def register_public_outputs(component: pulumi.ComponentResource) -> None:
    """``register_outputs`` with exactly the component's public output attributes, unset ones left out.

    Keys are the schema's camelCase names, so the engine stores the same outputs whether a Python
    program or the component provider built the component.
    """
    outputs = {name: getattr(component, name, None) for name in public_output_names(type(component))}
    # Contracts are pydantic models in Python; the engine stores them as plain objects.
    component.register_outputs({schema_name(name): value.model_dump() if isinstance(value, BaseModel) else value
                                for name, value in outputs.items() if value is not None})
