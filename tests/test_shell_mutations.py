"""Every hand-written mutation of the Redis scripts and redis.conf is killed by its drill.

Each case plants one bug from tests/shell_mutations.py in a copy of the rendered files and runs the drill
that should catch it in a fresh pytest process: the drill must fail. Slow (a drill each), so these run
with ``-m shell_mutation`` (.ci/run does), not in the default run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import stack_capture
from .redis_lab import config_map_files
from .shell_mutations import ENV, MUTATIONS, SURVIVORS, ShellMutation, apply

ROOT = Path(__file__).resolve().parents[1]


def test_every_mutation_applies_to_the_shipped_files_and_changes_them() -> None:
    """Fast and always run: a stale table (text not found, or found twice) fails here, not in CI's slow run."""
    files = config_map_files(stack_capture("prod"))
    for mutation in MUTATIONS:
        assert apply(files, mutation)[mutation.file] != files[mutation.file], mutation.name
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)
    assert set(SURVIVORS) <= {m.name for m in MUTATIONS}


@pytest.mark.shell_mutation
@pytest.mark.parametrize("mutation", [m for m in MUTATIONS if m.name not in SURVIVORS], ids=lambda m: m.name)
def test_the_drill_kills_the_mutation(mutation: ShellMutation) -> None:
    run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "",
                          mutation.drill], cwd=ROOT, env={**os.environ, ENV: mutation.name},
                         capture_output=True, text=True, timeout=900)
    tail = "\n".join(run.stdout.splitlines()[-5:])
    print(f"[{mutation.name}] {mutation.file}: {mutation.bug} -> drill exit {run.returncode}")
    assert run.returncode == 1, f"survived (exit {run.returncode}): {mutation.drill}\n{tail}\n{run.stderr[-2000:]}"
