"""The ha-ai-stack policy rules. Importing this starts nothing; ``policies/__main__.py`` serves them."""

from __future__ import annotations

from . import gpu_pools, security, stack, workloads
from .catalog import Rule

RULES: list[Rule] = [*workloads.RULES, *security.RULES, *stack.RULES, *gpu_pools.RULES]


def policies() -> list:
    """Every rule as a pulumi_policy policy."""
    return [rule.policy() for rule in RULES]
