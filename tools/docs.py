"""The README's config reference, generated from the config models so it cannot drift from them.

``python -m ha_ai_stack_tools.docs`` prints the config table; ``--write-readme README.md`` regenerates the
config and policy tables between the README's markers; a test checks that README.md holds them.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ha_ai_stack.config import NAMESPACE, TIER_DEFAULTS, TIERS, StackConfig

SECTION_OF = {"inference": "inference", "redis": "redis"}


def type_name(annotation: Any) -> str:
    """A short, human type name: ``int``, ``'a' | 'b'``, ``list of str``, ``object``."""
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        members = [type_name(a) for a in get_args(annotation) if a is not type(None)]
        return " \\| ".join(members) + (" \\| null" if type(None) in get_args(annotation) else "")
    if origin is list:
        return f"list of {type_name(get_args(annotation)[0])}"
    if origin is dict:
        return f"map of {type_name(get_args(annotation)[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return getattr(annotation, "__name__", str(annotation))


def _show_default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{json.dumps(value)}`"


def _rows(model: type[BaseModel], prefix: str, section: str | None) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        annotation = field.annotation
        nested = next((a for a in (annotation, *get_args(annotation))
                       if isinstance(a, type) and issubclass(a, BaseModel)), None)
        per_tier = []
        for tier in TIERS:
            tier_value = TIER_DEFAULTS[tier].get(section or "", {}).get(name, default) if section else default
            per_tier.append(_show_default(tier_value))
        key = f"`{prefix}{name}`"
        rows.append(f"| {key} | {type_name(annotation)} | {' | '.join(per_tier)} | {field.description or ''} |")
        if nested is not None:
            origin = get_origin(annotation)
            suffix = "[]." if origin is list else ".<NAME>." if origin is dict else "."
            rows += _rows(nested, f"{prefix}{name}{suffix}", SECTION_OF.get(name) if not prefix else None)
    return rows


def config_table() -> str:
    header = f"| key (under `{NAMESPACE}:`) | type | " + " | ".join(TIERS) + " | meaning |"
    rule = "|" + "---|" * (3 + len(TIERS))
    return "\n".join([header, rule, *_rows(StackConfig, "", None)])


def policy_table(project_root: Path) -> str:
    """Every policy of the pack: id, kind, what it checks, the fix, level per tier, equivalents."""
    import importlib
    import sys

    # The pack lives in the project (it is not part of the installed library or tools).
    sys.path.insert(0, str(project_root / "policies"))
    try:
        RULES = importlib.import_module("rules").RULES
    finally:
        sys.path.remove(str(project_root / "policies"))

    configs = {tier: json.loads((project_root / "policies" / "config" / f"{tier}.json").read_text()) for tier in TIERS}

    def level(tier: str, rule_id: str) -> str:
        entry = configs[tier].get(rule_id, {})
        explicit = entry if isinstance(entry, str) else entry.get("enforcementLevel")
        return explicit or configs[tier].get("all", "mandatory")

    header = "| id | scope | checks | fix | " + " | ".join(TIERS) + " | equivalents |"
    rows = [header, "|" + "---|" * (5 + len(TIERS))]
    for rule in RULES:
        levels = " | ".join(level(tier, rule.id) for tier in TIERS)
        rows.append(f"| `{rule.id}` | {'stack' if rule.stack else 'resource'} | {rule.description} | "
                    f"{rule.remediation} | {levels} | {rule.equivalents} |")
    return "\n".join(rows)


def cluster_needs_table(project_root: Path) -> str:
    """Per stack: what it brings to the cluster, and what it declares the cluster must already have."""
    from ha_ai_stack.cloud_identity import ROLE_ARN_ANNOTATION, s3_locations
    from ha_ai_stack.config import stack_file_config, validate_stack_config

    from .capture import Project

    project = Project.load(project_root)
    lines = ["| stack | brought by the stack | the cluster must already have (declared prerequisites) |", "|---|---|---|"]
    for stack in project.stack_names():
        config = validate_stack_config(stack_file_config(project.stack_config(stack), stack))
        on_aws = bool(config.aws_pools())
        brought = [f"PriorityClass `{p.name}` ({p.value})" for p in config.priority_classes]
        storage = config.redis.storage_class_name(on_aws)
        if config.redis.enabled and on_aws and config.redis.create_storage_class:
            brought.append(f"StorageClass `{storage}` (EBS gp3, encrypted)")
        brought += [f"EBS CSI add-on on `{p.eks.cluster_name}` (IRSA role)" for p in config.gpu_pools
                    if p.eks and p.eks.ebs_csi_driver == "install" and config.redis.enabled]
        brought += [f"read-only S3 role for `{entry.name}` (IRSA)" for entry in config.inference
                     if s3_locations(*entry.container_texts()) and (pool := config.pool_for(entry)) is not None
                     and pool.backend == "eks" and ROLE_ARN_ANNOTATION not in entry.service_account_annotations]
        declared = [f"{p.kind} `{p.name or 'default'}`" + (f" (keys {', '.join(p.keys)})" if p.keys else "")
                    + f": {p.reason}" for p in config.prerequisites]
        lines.append(f"| `{stack}` | {'<br>'.join(brought) or 'nothing'} | {'<br>'.join(declared) or 'nothing'} |")
    return "\n".join(lines)


def _between(readme: str, marker: str, body: str) -> str:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def with_generated_tables(readme: str, project_root: Path) -> str:
    """``readme`` with the config and policy tables regenerated between their markers."""
    readme = _between(readme, "config-table", config_table())
    readme = _between(readme, "policy-table", policy_table(project_root))
    return _between(readme, "cluster-needs", cluster_needs_table(project_root))


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write-readme"]:
        path = Path(sys.argv[2]).resolve()
        path.write_text(with_generated_tables(path.read_text(), path.parent))
    else:
        print(config_table())
