"""The README's config reference, generated from the config models so it cannot drift from them.

``python -m components.docs`` prints the table, ``--write-readme README.md`` puts it between the
README's markers; a test checks that README.md holds it verbatim.
"""

from __future__ import annotations

import json
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .config import NAMESPACE, TIER_DEFAULTS, TIERS, StackConfig

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
            suffix = {list: "[].", dict: ".<NAME>."}.get(get_origin(annotation), ".")
            rows += _rows(nested, f"{prefix}{name}{suffix}", SECTION_OF.get(name) if not prefix else None)
    return rows


def config_table() -> str:
    header = f"| key (under `{NAMESPACE}:`) | type | " + " | ".join(TIERS) + " | meaning |"
    rule = "|" + "---|" * (3 + len(TIERS))
    return "\n".join([header, rule, *_rows(StackConfig, "", None)])


START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def with_config_table(readme: str) -> str:
    """``readme`` with the generated table between its markers."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{config_table()}\n{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if sys.argv[1:2] == ["--write-readme"]:
        path = Path(sys.argv[2])
        path.write_text(with_config_table(path.read_text()))
    else:
        print(config_table())
