"""Run mutmut on the library, the policy rules and the tooling's decision logic: ``python -m tests.mutation run``.

mutmut names every mutant after its file's path, and the tests must import the mutated code under the
same name. The packages live in components/ and tools/ but import as ha_ai_stack and ha_ai_stack_tools,
so this lays out a workspace, .mutation/, whose src/ links each package under its import name, links
everything else the tests read, and runs mutmut there with the [tool.mutmut] settings of pyproject.toml.
Any arguments go to mutmut: ``run``, ``run "ha_ai_stack.names*"``, ``results``, ``show <mutant>``; a run of
only ``policies.*`` or ``ha_ai_stack_tools.*`` patterns uses a workspace of its own (SCOPES), and ``results policies.``
reads it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = ROOT / ".mutation"
# Runs limited to the policy rules or to the tooling are judged by those parts' own tests, in workspaces of their
# own (a different test selection makes mutmut drop every cached result). Fewer tests per mutant: each worker
# collects less, so such a run goes about twice as fast. Other tests reaching that code could only kill more.
SCOPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "policies.": ("rules-only", ("tests/test_policy_rules.py", "tests/test_policies.py")),
    "ha_ai_stack_tools.": ("tools-only", ("tests/test_diff_risks.py", "tests/test_preflight.py",
                                          "tests/test_cluster_preflight.py")),
}
PACKAGES = {"src/ha_ai_stack": "components", "src/ha_ai_stack_tools": "tools", "src/policies": "policies"}
LINKED = ("tests", "components", "tools", "policies", ".github", "stacks", "provider", "examples", "docs", "bench",
          "Pulumi.yaml", "__main__.py",
          "README.md", ".ci")  # unmutated copies of components/, tools/, policies/ for tests that read
# files by path (generated-file checks, the README tables)


def lay_out(workspace: Path, tests: tuple[str, ...] | None) -> None:
    # mutmut walks src/ without following directory links: real folders, each file a link to the original.
    shutil.rmtree(workspace / "src", ignore_errors=True)
    for mirror, source in PACKAGES.items():
        for path in sorted((ROOT / source).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and "venv" not in path.parts:
                target = workspace / mirror / path.relative_to(ROOT / source)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(path)
    for name in LINKED:
        link = workspace / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name, target_is_directory=(ROOT / name).is_dir())
    settings = (ROOT / "pyproject.toml").read_text()
    if tests is not None:
        settings = re.sub(r"(?ms)^pytest_add_cli_args_test_selection = \[.*?^\]$",
                          "pytest_add_cli_args_test_selection = " + json.dumps(list(tests)), settings)
    (workspace / "pyproject.toml").unlink(missing_ok=True)
    (workspace / "pyproject.toml").write_text(settings)


def scope_of(patterns: list[str]) -> tuple[Path, tuple[str, ...] | None, bool]:
    """(workspace, test files or None for the whole selection, whether saved renders may be used)."""
    for prefix, (folder, tests) in SCOPES.items():
        if patterns and all(p.startswith(prefix) for p in patterns):
            return WORKSPACE / folder, tests, True
    return WORKSPACE, None, False


def save_captures() -> Path:
    """Render each stack once, from the unmutated library, for runs that mutate only the policy rules or the
    tooling: those mutants cannot change a render, and rendering again in every mutant's worker would cost
    seconds each (tests/conftest.stack_capture reads these files). Forking the renders from mutmut's fork server
    instead deadlocks the workers (the mock runtime leaves threads and locks behind)."""
    from tests.conftest import MODES, STACKS, captured_file, stack_capture

    folder = WORKSPACE / "captures"
    folder.mkdir(parents=True, exist_ok=True)
    for stack in STACKS:
        for preview in MODES.values():
            (folder / captured_file(stack, preview)).write_bytes(pickle.dumps(stack_capture(stack, preview)))
    return folder


def main(argv: list[str]) -> int:
    if shutil.which("mutmut", path=os.path.dirname(sys.executable)) is None:
        print("mutmut is not installed: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    argv = argv or ["run"]
    workspace, tests, renders_fixed = scope_of(argv[1:])
    if argv[0] == "results":  # `results policies.` reads the policy rules' workspace
        argv = argv[:1]
    workspace.mkdir(parents=True, exist_ok=True)
    lay_out(workspace, tests)
    # The CRD schemas stay beside the project, not beside mutmut's copy of it.
    env = {**os.environ, "HAAI_SHARED_SCHEMAS": os.environ.get("HAAI_SHARED_SCHEMAS",
                                                               str(ROOT.parent / "shared" / "schemas"))}
    if renders_fixed and argv[0] == "run":
        env["HAAI_MUTATION_CAPTURES"] = str(save_captures())
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    return subprocess.run([mutmut, *argv], cwd=workspace, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
