"""Run mutmut on the library, the policy rules and the tooling's decision logic.

mutmut names every mutant after its file's path, and the tests must import the mutated code under the
same name. The packages live in components/ and tools/ but import as ha_ai_stack and ha_ai_stack_tools,
so this lays out a workspace whose src/ links each package under its import name, links everything else
the tests read, and runs mutmut there with the [tool.mutmut] settings of pyproject.toml.

    python -m tests.mutation run                      # every module, every test (the library's workspace)
    python -m tests.mutation run "ha_ai_stack.names*" # one module
    python -m tests.mutation policies run             # the policy rules, judged by the policy tests
    python -m tests.mutation tools run                # the tooling's decisions, judged by its tests
    python -m tests.mutation policies score           # per-module score from mutmut's own verdicts
    python -m tests.mutation tools run "ha_ai_stack_tools.*__mutmut_*[05]"   # a one-in-five sample
    python -m tests.mutation tools score --sample     # the score of that sample
    python -m tests.mutation tools run $(python -m tests.mutation tools pending --sample)  # survivors, not-run
    python -m tests.mutation run $(python -m tests.mutation pending --one-in=50)  # one in 50, by name hash
    python -m tests.mutation score --one-in=50:7      # another one in 50 (hash remainder 7): a held-out sample

Other arguments go to mutmut (``results``, ``show <mutant>``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = ROOT / ".mutation"
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.txt"


TOOLS = ("src/ha_ai_stack_tools/diff.py", "src/ha_ai_stack_tools/preflight.py", "src/ha_ai_stack_tools/cluster_preflight.py")


@dataclass(frozen=True)
class Scope:
    """What one workspace mutates, and which tests judge it (None: the [tool.mutmut] settings as they are)."""

    folder: Path
    scored: tuple[str, ...]  # the files its score covers
    only_mutate: tuple[str, ...] | None = None
    tests: tuple[str, ...] | None = None
    renders_fixed: bool = False  # the mutated code cannot change a stack render (tests/conftest.stack_capture)


# The policy rules and the tooling are judged by their own tests, in workspaces of their own (a different test
# selection makes mutmut drop every cached result). Fewer tests per mutant means less to collect in each worker;
# other tests reaching that code could only kill more.
SCOPES: dict[str, Scope] = {
    "library": Scope(WORKSPACE, ("src/ha_ai_stack/*",)),
    "policies": Scope(WORKSPACE / "rules-only", ("src/policies/rules/*",), ("src/policies/rules/*",),
                      ("tests/test_policy_rules.py", "tests/test_policies.py"), renders_fixed=True),
    "tools": Scope(WORKSPACE / "tools-only", TOOLS, TOOLS,
                   ("tests/test_diff_risks.py", "tests/test_preflight.py", "tests/test_cluster_preflight.py"),
                   renders_fixed=True),
}
PACKAGES = {"src/ha_ai_stack": "components", "src/ha_ai_stack_tools": "tools", "src/policies": "policies"}
LINKED = ("tests", "components", "tools", "policies", ".github", "stacks", "provider", "examples", "docs", "bench",
          "Pulumi.yaml", "__main__.py",
          "README.md", ".ci")  # unmutated copies of components/, tools/, policies/ for tests that read
# files by path (generated-file checks, the README tables)


def lay_out(scope: Scope) -> None:
    workspace = scope.folder
    workspace.mkdir(parents=True, exist_ok=True)
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
    for key, values in (("only_mutate", scope.only_mutate), ("pytest_add_cli_args_test_selection", scope.tests)):
        if values is not None:
            settings = re.sub(rf"(?ms)^{key} = \[.*?^\]$", f"{key} = {json.dumps(list(values))}", settings)
    (workspace / "pyproject.toml").unlink(missing_ok=True)
    (workspace / "pyproject.toml").write_text(settings)


SAMPLE = "*__mutmut_*[05]"  # one mutant in five: those numbered ...0 and ...5 in each function


def sampled(name: str, selection: str | None) -> bool:
    """``--sample``: the SAMPLE pattern (a glob ``run`` takes too); ``--one-in=N``: by a hash of the name;
    ``--one-in=N:R``: the hash's remainder R instead of 0, a held-out sample no test was written against."""
    if selection is None:
        return True
    if selection == "--sample":
        return fnmatch.fnmatch(name, SAMPLE)
    modulus, _, remainder = selection.removeprefix("--one-in=").partition(":")
    return zlib.crc32(name.encode()) % int(modulus) == int(remainder or 0)


def verdicts(scope: Scope, sample: str | None) -> dict[str, dict[str, str]]:
    """mutmut's verdict on each mutant of each scored module (its mutants/*.meta files)."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for meta in sorted((scope.folder / "mutants" / "src").rglob("*.py.meta")):
        source = str(meta.relative_to(scope.folder / "mutants")).removesuffix(".meta")
        if any(fnmatch.fnmatch(source, pattern) for pattern in scope.scored):
            module = ".".join(Path(source).with_suffix("").parts[1:])
            found[module] = {name: status_by_exit_code[code]
                             for name, code in json.loads(meta.read_text())["exit_code_by_key"].items()
                             if sampled(name, sample)}
    return {module: status for module, status in found.items() if status}


def pending(scope: Scope, sample: str | None) -> list[str]:
    """Mutants to run again: not run yet, without tests (new tests may reach them), or survived and not listed
    as equivalent."""
    equivalent = listed_equivalents()
    return [name for status in verdicts(scope, sample).values() for name, verdict in status.items()
            if verdict in ("not checked", "no tests") or (verdict == "survived" and name not in equivalent)]


def listed_equivalents() -> set[str]:
    return {line.split()[0] for line in EQUIVALENTS.read_text().splitlines() if line and not line.startswith("#")}


def score(scope: Scope, sample: str | None = None) -> str:
    """A table per module of mutmut's own verdicts (its mutants/*.meta files), with the listed equivalents apart.
    Score = killed / (mutants - equivalents), as mutmut counts it (no-test and survived mutants count against).
    ``sample``: only the mutants of a sample (see ``sampled``)."""
    equivalent = listed_equivalents()
    rows = ["| module | mutants | killed | survived | no tests | equivalent | not run | score |",
            "|---|---|---|---|---|---|---|---|"]
    totals = [0] * 6
    for module, status in verdicts(scope, sample).items():
        counts = [len(status),
                  sum(v in ("killed", "timeout", "caught by type check") for v in status.values()),
                  sum(v == "survived" and n not in equivalent for n, v in status.items()),
                  sum(v == "no tests" for v in status.values()),
                  sum(v == "survived" and n in equivalent for n, v in status.items()),
                  sum(v == "not checked" for v in status.values())]
        totals = [t + c for t, c in zip(totals, counts)]
        rows.append(_row(module, counts))
    rows.append(_row("**all**", totals))
    return "\n".join(rows)


def _row(module: str, counts: list[int]) -> str:
    total, killed, survived, no_tests, equivalent, not_run = counts
    judged = total - equivalent - not_run
    percent = f"{100 * killed / judged:.1f} %" if judged else "-"
    return f"| `{module}` | {total} | {killed} | {survived} | {no_tests} | {equivalent} | {not_run} | {percent} |"


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
    scope = SCOPES[argv.pop(0)] if argv and argv[0] in SCOPES else SCOPES["library"]
    argv = argv or ["run"]
    if argv[0] in ("score", "pending"):
        sample = argv[1] if argv[1:] else None
        print(score(scope, sample) if argv[0] == "score" else "\n".join(pending(scope, sample)))
        return 0
    lay_out(scope)
    # The CRD schemas stay beside the project, not beside mutmut's copy of it.
    env = {**os.environ, "HAAI_SHARED_SCHEMAS": os.environ.get("HAAI_SHARED_SCHEMAS",
                                                               str(ROOT.parent / "shared" / "schemas"))}
    if scope.renders_fixed and argv[0] == "run":
        env["HAAI_MUTATION_CAPTURES"] = str(save_captures())
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    return subprocess.run([mutmut, *argv], cwd=scope.folder, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
