"""Under mutmut, import the mutated copies: ``ha_ai_stack`` from ./components, ``ha_ai_stack_tools`` from ./tools.

mutmut runs the tests from its ``mutants/`` copy of the project, but the editable install maps the two
import names to the original folders. This finder, put first, maps them to the copies in the current
directory instead. Nothing else uses it: tests/conftest.py installs it only when MUTANT_UNDER_TEST is set.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

PACKAGES = {"ha_ai_stack": "components", "ha_ai_stack_tools": "tools"}


class MutatedCopies(importlib.abc.MetaPathFinder):
    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        folder = PACKAGES.get(fullname)
        if folder is None:
            return None  # submodules resolve through the package's __path__, which points at the copy
        init = self.root / folder / "__init__.py"
        if init.is_file():
            return importlib.util.spec_from_file_location(fullname, init,
                                                          submodule_search_locations=[str(self.root / folder)])
        spec = ModuleSpec(fullname, None, is_package=True)  # tools/ has no __init__.py: a namespace package
        spec.submodule_search_locations = [str(self.root / folder)]
        return spec


def use_mutated_copies(root: Path) -> None:
    if any(name in sys.modules for name in PACKAGES):
        raise RuntimeError("ha_ai_stack was imported before the mutated copies could be put first")
    sys.meta_path.insert(0, MutatedCopies(root))


class InProcessPack:
    """The policy pack's analyzer called in this process: the same requests and replies as over gRPC.

    mutmut follows only code that runs in its own process, so under mutmut the policy tests call the pack's
    servicer directly (pulumi_policy's own class, which its PolicyPack serves over gRPC) instead of starting
    the pack as the engine does. Outside mutmut the tests always use the real process.
    """

    def __init__(self, pack_dir: Path) -> None:
        from pulumi_policy import EnforcementLevel
        from pulumi_policy.policy import _PolicyAnalyzerServicer

        sys.path.insert(0, str(pack_dir))
        rules = importlib.import_module("rules")
        self.servicer = _PolicyAnalyzerServicer("ha-ai-stack", "0.0.1", rules.policies(), EnforcementLevel.MANDATORY)

    def __getattr__(self, method: str) -> Any:
        return lambda request: getattr(self.servicer, method)(request, None)
