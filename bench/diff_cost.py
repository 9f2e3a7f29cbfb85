"""Cost of ``haai diff`` against rendering the same stacks twice with ``haai render``, same run.

``haai diff`` must render both sides anyway, so the ratio measures what the diff adds: the git
worktree, the second process and the comparison. Whole CLI invocations, median of RUNS, interleaved.
Usage: python bench/diff_cost.py [--runs 5]   (run inside a git checkout of the project)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACKS = ["dev", "prod", "staging"]


def haai(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ha_ai_stack_tools.cli", *args], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one small run: proves the benchmark still works (CI)")
    options = parser.parse_args()
    if options.smoke:
        options.runs = 1
    with tempfile.TemporaryDirectory() as out:
        def renders(stacks: list[str]) -> float:
            return sum(haai("render", "--stack", s, "--out", f"{out}/{s}") for s in stacks for _ in range(2))

        cases = {
            "one stack (prod)": (lambda: haai("diff", "--stack", "prod", "--base", "HEAD"), lambda: renders(["prod"])),
            "all stacks": (lambda: haai("diff", "--all-stacks", "--base", "HEAD"), lambda: renders(STACKS)),
        }
        haai("render", "--stack", "dev", "--out", f"{out}/warm")
        rows = []
        for label, (run_diff, run_renders) in cases.items():
            diff_times, render_times = [], []
            for _ in range(options.runs):
                diff_times.append(run_diff())
                render_times.append(run_renders())
            rows.append((label, statistics.median(diff_times), statistics.median(render_times)))
    print(f"haai diff vs rendering both sides with haai render, median of {options.runs} runs (s)")
    print(f"{'case':<18} | {'haai diff':>9} | {'2 x render':>10} | {'ratio':>5}")
    for label, diff_time, render_time in rows:
        print(f"{label:<18} | {diff_time:>9.2f} | {render_time:>10.2f} | {diff_time / render_time:>5.2f}")


if __name__ == "__main__":
    main()
