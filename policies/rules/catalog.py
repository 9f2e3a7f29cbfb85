"""How every rule is described: id, what it checks, how to fix it, and its equivalents in other tools."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    ResourceValidationPolicy,
    StackValidationPolicy,
)


@dataclass(frozen=True)
class Rule:
    """One policy plus the documentation the README table is generated from."""

    id: str
    description: str
    remediation: str
    equivalents: str
    validate: Callable[..., Any]
    stack: bool = False
    config: dict[str, dict[str, Any]] = field(default_factory=dict)

    def policy(self) -> ResourceValidationPolicy | StackValidationPolicy:
        kind = StackValidationPolicy if self.stack else ResourceValidationPolicy
        # No level of its own: the pack's (mandatory, policies/__main__.py) applies until a tier config lowers it.
        # An empty schema is sent as none (pulumi_policy sends only what the properties hold).
        return kind(name=self.id, description=self.description, validate=self.validate,
                    config_schema=PolicyConfigSchema(properties=self.config),
                    remediation_steps=self.remediation, tags=self.equivalent_tools())

    def equivalent_tools(self) -> list[str]:
        return [] if self.equivalents == "none" else [e.strip() for e in self.equivalents.split(";")]


def setting(args: Any, key: str, schema: dict[str, dict[str, Any]]) -> Any:
    """A rule's config value: what --policy-pack-config gave, else the schema's default (prod's)."""
    config = args.get_config() or {}
    value = config.get(key, schema[key]["default"])
    # Config arrives through a protobuf Struct, where every number is a float.
    return int(value) if isinstance(value, float) and value.is_integer() else value
