"""Shared fixtures: one capture per stack and mode, reused by every test that reads a stack."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from ha_ai_stack_tools.capture import Capture, Project, capture_program, capture_stack
from ha_ai_stack_tools.policy_check import running_pack
from ha_ai_stack_tools.render import manifests

from .mutation_stats import calls_recorded, collecting_stats, replay_calls

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STACKS = ("dev", "staging", "prod")
MODES = {"update": False, "preview": True}

T = TypeVar("T")
_cache: dict[tuple[Any, ...], Any] = {}


@contextmanager
def policy_pack(pack_dir: Path = PROJECT_ROOT / "policies") -> Iterator[Any]:
    """The policy pack as the engine runs it (its own process, over gRPC); in-process only under mutmut."""
    if "MUTANT_UNDER_TEST" in os.environ:
        from .mutation_imports import InProcessPack

        yield InProcessPack()
        return
    with running_pack(pack_dir) as stub:
        yield stub


def stack_capture(stack: str, preview: bool = False) -> Capture:
    """The stack's capture, run once per test session (captures are pure functions of the files)."""
    saved = Path(os.environ.get("HAAI_MUTATION_CAPTURES", "/nonexistent")) / captured_file(stack, preview)
    if saved.is_file():  # renders made before a mutmut run that cannot change them (tests/mutation.py)
        return once_per_session(("saved", stack, preview), lambda: pickle.loads(saved.read_bytes()))
    return once_per_session((stack, preview),
                            lambda: capture_stack(stack, project_root=PROJECT_ROOT, preview=preview))


def once_per_session(key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """``compute()``, run once per test session for ``key`` (a render is a pure function of its input)."""
    if key not in _cache:
        with calls_recorded(key):
            _cache[key] = compute()
    replay_calls(key)
    return _cache[key]


# For mutmut's stats only (tests/mutation_stats.py): a fixture wider than one test counts its calls for each test
# that uses it, not just for the first.
@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Iterator[None]:
    if fixturedef.scope == "function":
        yield
        return
    with calls_recorded(fixturedef):
        yield


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if collecting_stats() is None:
        return
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name in getattr(item, "fixturenames", ()):
        for fixturedef in definitions.get(name, ()):
            replay_calls(fixturedef)


def captured_file(stack: str, preview: bool) -> str:
    return f"{stack}-{'preview' if preview else 'update'}.pickle"


def run_components(build: Callable[[], None], *, preview: bool = False) -> Capture:
    """Run a small program that builds components directly, under the same mocks as the stacks."""
    return capture_program(build, project="unit", stack="unit", config={}, preview=preview)


def stack_config(stack: str) -> dict[str, Any]:
    """A shipped stack's ``haai:`` config (keys without the prefix), a fresh copy to change."""
    config = yaml.safe_load((PROJECT_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key.removeprefix("haai:"): value for key, value in config.items()}


def run_stack_config(
    config: dict[str, Any], *, stack: str = "test", preview: bool = False, sink: Capture | None = None
) -> Capture:
    """Run the project's real program with an in-memory ``haai:`` config (keys without the prefix)."""
    project = Project.load(PROJECT_ROOT)
    return capture_program(
        project.run_program,
        project=project.name,
        stack=stack,
        config={f"haai:{k}": v for k, v in config.items()},
        preview=preview,
        sink=sink,
    )


PROD_VARIANT_RESTORE_FROM = "s3://acme-redis-backups/prod/redis/20261126T010344Z"


def prod_variant_capture() -> Capture:
    """Prod with a restore, a shared model cache and KEDA: paths the shipped stacks leave off. Run once."""
    def compute() -> Capture:
        config = stack_config("prod")
        config["redis"]["restore_from"] = PROD_VARIANT_RESTORE_FROM
        services = {service["name"]: service for service in config["inference"]}
        services["vllm-chat"]["model"].update(cache="pvc", cache_claim="models-efs")
        services["triton"]["autoscaling"].update(engine="keda")
        config["prerequisites"] += [
            {"kind": "PersistentVolumeClaim", "name": "models-efs", "reason": "EFS claim for the shared model cache"},
            {"kind": "CustomResourceDefinition", "name": "scaledobjects.keda.sh", "reason": "KEDA"}]
        return run_stack_config(config, stack="prod")

    return once_per_session(("prod-variant",), compute)


# Every render we ship plus the variant: checks that hold for any render run over these.
RENDERS = (*STACKS, "prod-variant")


def render_capture(render: str) -> Capture:
    return prod_variant_capture() if render == "prod-variant" else stack_capture(render)


def objects_of(capture: Capture, kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests(capture) if m["kind"] == kind]


def only(capture: Capture, kind: str) -> dict[str, Any]:
    found = objects_of(capture, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(params=list(MODES), ids=list(MODES))
def preview(request: pytest.FixtureRequest) -> bool:
    """Run a test in update mode and again in preview mode."""
    return MODES[request.param]


def haai(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``haai`` CLI as a user would, in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "ha_ai_stack_tools.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def project_copy(tmp_path: Path, stack: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the project whose ``stack`` config ``edit`` has changed (the ``config:`` map, in place)."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT, project, ignore=shutil.ignore_patterns(".venv", "venv", ".git", "rendered", "mutants", ".mutation", "*.pyc"))
    stack_file = project / "stacks" / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(stack_file.read_text())
    edit(document["config"])
    stack_file.write_text(yaml.safe_dump(document))
    return project


def record_custom_timeouts(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str | None, str | None]]:
    """(create, update) custom timeouts of every resource registered from now on, by logical name."""
    import pulumi

    seen: dict[str, tuple[str | None, str | None]] = {}
    original = pulumi.CustomResource.__init__

    def record(self: Any, t: str, name: str, props: Any = None, opts: Any = None, *args: Any, **kw: Any) -> None:
        if opts is not None and opts.custom_timeouts is not None:
            seen[name] = (opts.custom_timeouts.create, opts.custom_timeouts.update)
        original(self, t, name, props, opts, *args, **kw)

    monkeypatch.setattr(pulumi.CustomResource, "__init__", record)
    return seen
