"""Rendering a git revision and the working tree of the project, side by side, for ``haai diff``.

The base revision is rendered from its own code and config (a temporary ``git worktree``), the working
tree from the current files; each in its own process, in parallel, through that revision's
``ha_ai_stack_tools.capture``. Plumbing only: what the differences mean is decided in ``diff.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Run inside the revision being rendered, so it uses that revision's own renderer.
DRIVER = r"""
import atexit, importlib, json, shutil, sys, tempfile
from pathlib import Path
root, out, stacks = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3:]
def fail(message):
    out.write_text(json.dumps({"error": message}))
    sys.exit(0)
if (root / "tools" / "capture.py").is_file():
    # The source folders under the import names the wheel gives them, ahead of any installed copy.
    links = Path(tempfile.mkdtemp(prefix="haai-diff-"))
    atexit.register(shutil.rmtree, links, True)
    (links / "ha_ai_stack").symlink_to(root / "components", target_is_directory=True)
    (links / "ha_ai_stack_tools").symlink_to(root / "tools", target_is_directory=True)
    sys.path.insert(0, str(links))
    library, tools = "ha_ai_stack", "ha_ai_stack_tools"
elif (root / "components" / "capture.py").is_file():  # revisions from before the library/tools split
    sys.path.insert(0, str(root))
    library, tools = "components", "components"
else:
    fail(f"this revision has no haai renderer (no {root.name}/tools/capture.py)")
try:
    imported = importlib.import_module(library)
    capture_module = importlib.import_module(tools + ".capture")
except ImportError as error:
    fail(f"this revision has no haai renderer ({error})")
if not Path(imported.__file__).resolve().is_relative_to(root):
    fail(f"imported {library} from {imported.__file__}, not from {root}")
result = {}
for stack in stacks:
    try:
        capture = capture_module.capture_stack(stack, project_root=root)
    except capture_module.StackNotFoundError as error:
        result[stack] = {"error": str(error)}
        continue
    except Exception as error:
        result[stack] = {"error": f"{type(error).__name__}: {error}"}
        continue
    result[stack] = {"tier": capture.exports.get("tier"), "resources": [
        {"type": r.type_token, "name": r.name, "inputs": r.inputs} for r in capture.resources if r.custom]}
out.write_text(json.dumps({"stacks": result}))
"""



class DiffError(Exception):
    """The diff cannot be computed (bad base, missing stack or renderer); exit 2."""


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@contextmanager
def base_checkout(project_root: Path, ref: str) -> Iterator[Path]:
    """The project as it is at ``ref``, in a temporary worktree that is always removed."""
    top = _git(["rev-parse", "--show-toplevel"], project_root)
    if top.returncode != 0:
        raise DiffError(f"{project_root} is not in a git repository: {top.stderr.strip()}")
    toplevel = Path(top.stdout.strip())
    relative = project_root.resolve().relative_to(toplevel.resolve())
    workdir = Path(tempfile.mkdtemp(prefix="haai-base-"))
    added = _git(["worktree", "add", "--detach", str(workdir / "tree"), ref], toplevel)
    if added.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise DiffError(f"base {ref!r} is not a revision of {toplevel}: {added.stderr.strip()}")
    try:
        yield workdir / "tree" / relative
    finally:
        _git(["worktree", "remove", "--force", str(workdir / "tree")], toplevel)
        shutil.rmtree(workdir, ignore_errors=True)


def _start_snapshot(root: Path, stacks: list[str], out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(root), str(out), *stacks], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_snapshot(process: subprocess.Popen[str], out: Path, label: str) -> dict[str, Any]:
    _, error = process.communicate(timeout=600)
    if not out.exists():
        raise DiffError(f"rendering the {label} failed: {error.strip()[-2000:]}")
    snapshot = json.loads(out.read_text())
    if "error" in snapshot:
        raise DiffError(f"{label}: {snapshot['error']}")
    return snapshot["stacks"]


def snapshots(project_root: Path, base: str, stacks: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(base, head) renders of ``stacks``, computed in parallel."""
    with base_checkout(project_root, base) as base_root, tempfile.TemporaryDirectory() as scratch:
        base_out, head_out = Path(scratch) / "base.json", Path(scratch) / "head.json"
        base_process = _start_snapshot(base_root, stacks, base_out)
        head_process = _start_snapshot(project_root, stacks, head_out)
        head = _finish_snapshot(head_process, head_out, "working tree")
        base_side = _finish_snapshot(base_process, base_out, f"base {base}")
    for stack in stacks:
        for label, side in ((f"base {base}", base_side), ("working tree", head)):
            if "error" in side[stack]:
                raise DiffError(f"{label}: {side[stack]['error']}")
    return base_side, head
