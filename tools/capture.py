"""Run the real Pulumi program under the SDK's mock runtime and record every resource it registers.

This is the one capture used by ``haai render``, the tests and the benchmarks. It needs no Pulumi
CLI, no provider plugins, no cloud and no cluster. Not thread-safe: the SDK's runtime settings are
process-global.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import ROOT, get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from .stackfile import read_stack_config

SECRET_MASK = "<secret>"
UNKNOWN = "<unknown>"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
# Outputs the engine computes (not echoed inputs) that programs read, per type token.
# (logical name, inputs) -> outputs; a physical name given in the inputs is the one the engine would use.
COMPUTED_OUTPUTS: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
    RANDOM_PASSWORD: lambda name, inputs: {"result": fake_secret(name)},
    "aws:iam/role:Role": lambda name, inputs: {"arn": f"arn:aws:iam::123456789012:role/{inputs.get('name', name)}",
                                               "name": inputs.get("name", name)},
    "aws:ec2/launchTemplate:LaunchTemplate": lambda name, inputs: {"latestVersion": 1},
}


# Invokes programs make, answered as the engine would (also in preview, where invokes run too).
INVOKE_RESULTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "aws:index/getCallerIdentity:getCallerIdentity": lambda args: {
        "accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/mock", "userId": "MOCK",
        "id": "123456789012"},
    "aws:eks/getCluster:getCluster": lambda args: {
        "name": args.get("name"), "id": args.get("name"),
        "identities": [{"oidcs": [{"issuer": "https://oidc.eks.us-east-1.amazonaws.com/id/"
                                             + hashlib.sha256(str(args.get("name")).encode()).hexdigest()[:32].upper()}]}]},
}


class StackNotFoundError(Exception):
    """The named stack has no config file."""


@dataclass(frozen=True)
class CapturedResource:
    """One registered resource: what the engine would receive, with secrets masked."""

    type_token: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    ignore_changes: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    provider: str = ""  # the explicit provider reference ("<urn>::<id>"), empty for the default provider


@dataclass
class Capture:
    """Everything one program run registered, in registration order, plus the stack's exports."""

    project: str
    stack: str
    preview: bool
    resources: list[CapturedResource] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[CapturedResource]:
        return [r for r in self.resources if r.type_token == type_token]

    def children_of(self, urn: str) -> list[CapturedResource]:
        return [r for r in self.resources if r.parent == urn]


def plain(value: Any) -> Any:
    """Deserialized RPC values as plain data: secrets masked, unknowns marked, whole floats as ints."""
    if rpc.is_rpc_secret(value):
        return _masked(rpc.unwrap_rpc_secret(value))
    if isinstance(value, pulumi.output.Unknown):
        return UNKNOWN
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _masked(value: Any) -> Any:
    """Every leaf masked, the shape kept: the SDK marks a whole map secret when one value is, and a
    Secret's ``stringData`` must stay a map to be a valid object."""
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return SECRET_MASK


def fake_secret(name: str) -> str:
    """A stable stand-in for a generated secret, so renders are byte-identical run to run."""
    return "mock-" + hashlib.sha256(name.encode()).hexdigest()[:32]


class EchoMocks(pulumi.runtime.Mocks):
    """Outputs are the inputs. In an update, engine-computed outputs get stable fakes (a generated password,
    an ARN); in a preview they stay unknown, as the engine leaves them."""

    def __init__(self, preview: bool) -> None:
        self.preview = preview

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ in COMPUTED_OUTPUTS and not self.preview:
            outputs.update(COMPUTED_OUTPUTS[args.typ](args.name, dict(args.inputs)))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        answer = INVOKE_RESULTS.get(args.token)
        return (answer(dict(args.args)) if answer else {}), []


class DuplicateResourceError(pulumi.RunError):
    """Two resources with one URN: the engine refuses the whole program, and so does the capture.

    The SDK keeps a failed program's pending registrations on its event loop, so a later capture in the
    same process can see this error again: one process per capture after a failure (the CLI is).
    """


class _RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, also recording each registration with its parent.

    Where the mock monitor is more lenient than the engine, it does what the engine does: a duplicate
    URN is an error, and outputs a resource lists in ``additionalSecretOutputs`` (pulumi-random's
    ``result``) come back as secrets.
    """

    def __init__(self, mocks: pulumi.runtime.Mocks, capture: Capture) -> None:
        super().__init__(mocks)
        self._capture = capture
        self._lock = Lock()
        self._urns: set[str] = set()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        with self._lock:
            if response.urn in self._urns:
                raise DuplicateResourceError(f"Duplicate resource URN '{response.urn}'; try giving it a unique name")
            self._urns.add(response.urn)
        if request.additionalSecretOutputs:
            outputs = json_format.MessageToDict(response.object)
            for key in request.additionalSecretOutputs:
                if key in outputs and not rpc.is_rpc_secret(outputs[key]):
                    outputs[key] = {rpc._special_sig_key: rpc._special_secret_sig, "value": outputs[key]}
            response.object.Clear()
            response.object.update(outputs)
        if request.type != "pulumi:pulumi:Stack":
            inputs = plain(rpc.deserialize_properties(request.object, keep_unknowns=True))
            record = CapturedResource(
                type_token=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                custom=bool(request.custom),
                inputs=inputs,
                ignore_changes=tuple(request.ignoreChanges),
                dependencies=tuple(sorted(request.dependencies)),
                provider=request.provider,
            )
            with self._lock:
                self._capture.resources.append(record)
        return response


def _config_value(value: Any) -> str:
    """Config values as the CLI hands them to a program: strings as-is, structured values as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def capture_program(
    program: Callable[[], None],
    *,
    project: str,
    stack: str,
    config: Mapping[str, Any],
    preview: bool = False,
    sink: Capture | None = None,
) -> Capture:
    """Run ``program`` under mocks with ``config`` (full keys, e.g. ``haai:tier``) and record it.

    Records go into ``sink`` when given, so a caller can see what was registered before an error.
    """
    capture = sink or Capture(project=project, stack=stack, preview=preview)
    # A fresh root stack resource for every run, as every `pulumi up` has one: the SDK keeps the root
    # in a global, and the last run's exports would otherwise show up in this run's.
    ROOT.set(None)
    mocks = EchoMocks(preview)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview,
                             monitor=_RecordingMonitor(mocks, capture))
    pulumi.runtime.set_all_config({k: _config_value(v) for k, v in config.items()}, [])
    _sync_await(run_pulumi_func(program))
    capture.exports = _sync_await(_resolve_exports(getattr(get_root_resource(), "outputs", {})))
    return capture


async def _resolve_exports(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The stack's exports as plain values: secret ones masked, unknown ones (preview) marked."""
    resolved: dict[str, Any] = {}
    for key, value in sorted(outputs.items()):
        output = pulumi.Output.from_input(value)
        if await output.is_secret():
            resolved[key] = SECRET_MASK
        elif not await output.is_known():
            resolved[key] = UNKNOWN
        else:
            resolved[key] = plain(await output.future())
    return resolved


@dataclass(frozen=True)
class Project:
    """A Pulumi project directory: its name, program and stack config files."""

    root: Path
    name: str
    stacks_dir: Path

    @classmethod
    def load(cls, root: Path) -> "Project":
        descriptor = yaml.safe_load((root / "Pulumi.yaml").read_text())
        return cls(root=root, name=descriptor["name"], stacks_dir=root / descriptor.get("stackConfigDir", "."))

    def stack_names(self) -> list[str]:
        return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in self.stacks_dir.glob("Pulumi.*.yaml"))

    def stack_config(self, stack: str) -> dict[str, Any]:
        path = self.stacks_dir / f"Pulumi.{stack}.yaml"
        if not path.is_file():
            known = ", ".join(self.stack_names()) or "none"
            raise StackNotFoundError(f"stack {stack!r} not found: no {path} (stacks: {known})")
        return read_stack_config(path, self.name)

    def run_program(self) -> None:
        """Run the project's own ``__main__.py`` with the project root first on the import path."""
        sys.path.insert(0, str(self.root))
        try:
            runpy.run_path(str(self.root / "__main__.py"), run_name="__main__")
        finally:
            sys.path.remove(str(self.root))


def default_project_root() -> Path:
    """The nearest directory at or above the current one that holds a Pulumi.yaml."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    raise StackNotFoundError(f"no Pulumi.yaml in {here} or any parent: run haai inside the project")


def capture_stack(stack: str, *, project_root: Path | None = None, preview: bool = False,
                  redis_overrides: Mapping[str, Any] | None = None) -> Capture:
    """Capture a stack of a project exactly as ``pulumi up`` (or ``preview``) would run it; ``redis_overrides``
    are merged into its ``haai:redis`` section (``haai restore`` sets restore_from that way)."""
    project = Project.load(project_root or default_project_root())
    config = project.stack_config(stack)
    if redis_overrides:
        config["haai:redis"] = {**config.get("haai:redis", {}), **redis_overrides}
    return capture_program(project.run_program, project=project.name, stack=stack, config=config, preview=preview)
