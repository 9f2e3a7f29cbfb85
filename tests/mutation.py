"""Run mutmut on the library, the policy rules and the tooling's decision logic: ``python -m tests.mutation run``.

mutmut names every mutant after its file's path, and the tests must import the mutated code under the
same name. The packages live in components/ and tools/ but import as ha_ai_stack and ha_ai_stack_tools,
so this lays out a workspace, .mutation/, whose src/ links each package under its import name, links
everything else the tests read, and runs mutmut there with the [tool.mutmut] settings of pyproject.toml.
Any arguments go to mutmut: ``run``, ``run "ha_ai_stack.names*"``, ``results``, ``show <mutant>``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = ROOT / ".mutation"
PACKAGES = {"src/ha_ai_stack": "components", "src/ha_ai_stack_tools": "tools", "src/policies": "policies"}
LINKED = ("tests", "components", "tools", "policies", ".github", "stacks", "provider", "examples", "docs", "bench",
          "Pulumi.yaml", "__main__.py",
          "README.md", ".ci", "pyproject.toml")  # unmutated copies of components/, tools/, policies/ for tests that read
# files by path (generated-file checks, the README tables)


def lay_out() -> None:
    # mutmut walks src/ without following directory links: real folders, each file a link to the original.
    shutil.rmtree(WORKSPACE / "src", ignore_errors=True)
    for mirror, source in PACKAGES.items():
        for path in sorted((ROOT / source).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and "venv" not in path.parts:
                target = WORKSPACE / mirror / path.relative_to(ROOT / source)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(path)
    for name in LINKED:
        link = WORKSPACE / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name, target_is_directory=(ROOT / name).is_dir())


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
    lay_out()
    # The CRD schemas stay beside the project, not beside mutmut's copy of it.
    env = {**os.environ, "HAAI_SHARED_SCHEMAS": os.environ.get("HAAI_SHARED_SCHEMAS",
                                                               str(ROOT.parent / "shared" / "schemas"))}
    patterns = argv[1:] if argv[:1] == ["run"] else []
    if patterns and all(p.startswith(("policies.", "ha_ai_stack_tools.")) for p in patterns):
        env["HAAI_MUTATION_CAPTURES"] = str(save_captures())
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    return subprocess.run([mutmut, *(argv or ["run"])], cwd=WORKSPACE, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
