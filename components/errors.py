"""One wording for every bad input: ``path: reason`` per problem, from the stack config or from Args.

Stack files and component Args are validated by the same pydantic models, so their errors are
formatted by the same functions here. Both error types subclass Pulumi's own error classes, so the
CLI prints them without a Python traceback and the component provider reports them as invalid
input properties.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from difflib import get_close_matches
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

import pulumi
from pulumi.errors import InputPropertiesError
from pydantic import BaseModel, ValidationError

Loc = tuple[Any, ...]
Model = TypeVar("Model", bound=BaseModel)


def dotted_path(loc: Loc, prefix: str = "") -> str:
    """``('inference', 1, 'replicas')`` -> ``<prefix>inference[1].replicas``."""
    text = prefix
    for index, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("" if index == 0 else ".") + str(part)
    return text


def show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # numbers from YAML, JSON and the engine arrive as floats
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class found at ``loc`` below ``root`` (for 'did you mean' hints), or None."""
    current: Any = root
    for part in loc:
        current = _strip_optional(current)
        if isinstance(part, int) and get_origin(current) is list:
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _strip_optional(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def reason(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error as a short reason, with a 'did you mean' hint for unknown keys."""
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit} (got {show(value)})"
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        model = model_at(root, tuple(error["loc"][:-1]))
        hint = ""
        if model is not None:
            close = get_close_matches(str(error["loc"][-1]), list(model.model_fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(model.model_fields)})"
        return f"unknown key{hint}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    message = error["msg"].replace("Input should be", "must be")
    return f"{message} (got {show(value)})"


def problems_of(exc: ValidationError, root: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """``(path, reason)`` for every error, duplicates dropped, in pydantic's order."""
    seen = dict.fromkeys((dotted_path(tuple(e["loc"]), prefix) or "args", reason(e, root)) for e in exc.errors())
    return list(seen)


def problem_lines(title: str, problems: list[tuple[str, str]]) -> str:
    noun = "problem" if len(problems) == 1 else "problems"
    return f"{title} ({len(problems)} {noun}):\n" + "\n".join(f"  {path}: {why}" for path, why in problems)


class ConfigError(pulumi.RunError):
    """A bad stack config: one message listing every bad key, its path and the reason.

    A ``pulumi.RunError`` so that ``pulumi up`` prints the message without a Python traceback.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"invalid stack config ({len(problems)} {noun}):\n" + "\n".join(f"  {p}" for p in problems))


class ArgsError(InputPropertiesError):
    """Bad component arguments: one ``property path: reason`` line per problem.

    An ``InputPropertiesError`` (Pulumi SDK), so the component provider reports each property to the
    engine, and Python programs get the same wording as the stack-config errors.
    """

    def __init__(self, target: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(
            problem_lines(f"invalid arguments for {target}", problems),
            [{"property_path": path, "reason": why} for path, why in problems],
        )

    def __str__(self) -> str:
        return self.message


class ArgsModel(BaseModel):
    """Base of every component's Args: a bad field raises ``ArgsError``, never a raw ValidationError.

    ``field_hints`` maps a field to a hint for the likely mistake behind a wrong type there, such as
    passing a component where its contract is wanted.
    """

    field_hints: ClassVar[dict[str, str]] = {}

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ArgsError(type(self).__name__, _hinted(problems_of(exc, type(self)), self.field_hints)) from None

    # Validation of a nested model or of a whole stack config must keep raising ValidationError (so the
    # config path can list every problem); marked as pydantic's own base init, as RootModel does, this
    # wrapper runs only when a user constructs the Args directly.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def _hinted(problems: list[tuple[str, str]], hints: Mapping[str, str]) -> list[tuple[str, str]]:
    def field(path: str) -> str:
        return path.split(".")[0].split("[")[0]

    return [(path, f"{why}; {hints[field(path)]}" if field(path) in hints and "unknown key" not in why else why)
            for path, why in problems]


def check_name(target: str, name: str, rule: Any, limit: int) -> None:
    """A component's name, where it becomes a Kubernetes name: ArgsError with the rule's reason."""
    try:
        rule(name, limit)
    except ValueError as error:
        raise ArgsError(target, [("name", str(error))]) from None


def validate_args(model: type[Model], args: Any, component: str) -> Model:
    """``args`` as a validated ``model``: an instance passes through, a mapping is validated."""
    if isinstance(args, model):
        return args
    if not isinstance(args, Mapping):
        raise ArgsError(component, [("args", f"must be {model.__name__} or a dict of its fields "
                                             f"(got {type(args).__name__})")])
    try:
        return model.model_validate(dict(args))
    except ValidationError as exc:
        hints = getattr(model, "field_hints", {})
        raise ArgsError(component, _hinted(problems_of(exc, model), hints)) from None
