"""Reading a stack file the way a careful user expects: every problem named, nothing silently dropped.

One path for every ``haai`` command: bytes -> text -> YAML (duplicate keys refused) -> shape -> keys.
Each problem says the file, the line when known, the key and the fix; all problems come in one
``StackFileError`` (a ``ConfigError``, so the commands print it and exit 2, never a traceback).
"""

from __future__ import annotations

from difflib import get_close_matches
from pathlib import Path
from typing import Any

import yaml

from ha_ai_stack.config import NAMESPACE, SECRET_CONFIG_REASON, StackConfig
from ha_ai_stack.errors import ConfigError

# What the Pulumi CLI accepts at the top of a stack file.
STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")


class StackFileError(ConfigError):
    """A stack file that cannot be read as a stack: one message with every problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        Exception.__init__(self, f"{path}: invalid stack file ({len(problems)} {noun}):\n"
                                 + "\n".join(f"  {p}" for p in problems))


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise _DuplicateKey(problem=f"key {key!r} is given twice (also at line {seen[key]}); YAML would "
                                            f"silently keep the last one", problem_mark=key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key (a list or a map): construct_mapping reports it
            pass
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _line_of(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return line, column


def parse_stack_text(data: bytes, path: Path) -> dict[str, Any]:
    """The stack file's top-level mapping, or StackFileError."""
    if b"\x00" in data:
        line, column = _line_of(data, data.index(b"\x00"))
        raise StackFileError(path, [f"line {line}, column {column}: a NUL byte: this is not a text file"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _line_of(data, error.start)
        raise StackFileError(path, [f"line {line}, column {column}: byte 0x{data[error.start]:02x} is not UTF-8: "
                                    f"save the file as UTF-8"]) from None
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise StackFileError(path, [f"{where}{error.problem or error.context}"]) from None
    except yaml.YAMLError as error:
        raise StackFileError(path, [f"not valid YAML: {error}"]) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise StackFileError(path, [f"must be a mapping with a `config:` key (got a {_kind(document)})"])
    return document


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value),
                                                                                           type(value).__name__)


def stack_config_of(document: dict[str, Any], path: Path, project: str) -> dict[str, Any]:
    """The ``config:`` map, with every key checked: ours known, others in their own namespace."""
    problems: list[str] = []
    fields = list(StackConfig.model_fields)
    for key in document:
        if key not in STACK_FILE_KEYS:
            looks_ours = isinstance(key, str) and (key.startswith(f"{NAMESPACE}:") or key in fields)
            hint = (" (config keys go under `config:`)" if looks_ours else
                    f" (did you mean {close[0]!r}?)" if (close := get_close_matches(str(key), STACK_FILE_KEYS, 1))
                    else f" (allowed: {', '.join(STACK_FILE_KEYS)})")
            problems.append(f"{key}: not a stack file key{hint}")
    config = document.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise StackFileError(path, [*problems, f"config: must be a mapping of keys to values (got a {_kind(config)})"])
    for key, value in config.items():
        if isinstance(key, str) and key.startswith(f"{NAMESPACE}:") and _has_secure(value):
            problems.append(f"{key}: {SECRET_CONFIG_REASON}")
        if not isinstance(key, str):
            problems.append(f"config key {key!r}: must be a string like `{NAMESPACE}:namespace`")
            continue
        namespace, _, name = key.rpartition(":")
        if namespace in ("", project):
            # The Pulumi CLI puts a bare key in the project's namespace, which this program never reads.
            close = get_close_matches(name, fields, 1)
            hint = f"did you mean `{NAMESPACE}:{close[0]}`?" if close else f"this program reads only `{NAMESPACE}:` keys"
            problems.append(f"{key}: ignored by the program ({hint})")
    if problems:
        raise StackFileError(path, problems)
    return config


def _has_secure(value: Any) -> bool:
    """A Pulumi secret anywhere in a value: a mapping that is exactly ``{secure: <ciphertext>}``."""
    if isinstance(value, dict):
        return set(value) == {"secure"} or any(_has_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secure(v) for v in value)
    return False


def read_stack_config(path: Path, project: str) -> dict[str, Any]:
    """Read, parse and check a stack file; return its ``config:`` map."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise StackFileError(path, ["is a directory, not a stack file"]) from None
    except OSError as error:
        raise StackFileError(path, [f"cannot be read: {error.strerror}"]) from None
    return stack_config_of(parse_stack_text(data, path), path, project)
