"""The policy pack in process, for mutation testing (see tests/mutation.py)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any


def mutated_rules() -> Any:
    """``policies.rules`` from mutmut's src/ (the mutated copy). The pack folder beside it (mutants/policies,
    copied for its tier config) is also a ``policies`` namespace portion and comes first on sys.path, so it
    would otherwise win and no policy mutant would ever run. Its library helpers are the library's own
    modules, so that library mutants reach the policy tests too."""
    for name in [m for m in sys.modules if m == "policies" or m.startswith("policies.")]:
        del sys.modules[name]
    # The pack's rules/library/*.py are byte-for-byte copies of library modules (tools/codegen.py), so that
    # the pack stands alone. Here the rules use the library modules themselves, mutated when the library is.
    for copy in sorted((Path.cwd() / "src" / "policies" / "rules" / "library").glob("*.py")):
        if copy.stem != "__init__":
            sys.modules[f"policies.rules.library.{copy.stem}"] = importlib.import_module(f"ha_ai_stack.{copy.stem}")
    sys.path.insert(0, str(Path.cwd() / "src"))
    try:
        return importlib.import_module("policies.rules")
    finally:
        sys.path.pop(0)


class InProcessPack:
    """The policy pack's analyzer called in this process: the same requests and replies as over gRPC.

    mutmut follows only code that runs in its own process, so under mutmut the policy tests call the pack's
    servicer directly (pulumi_policy's own class, which its PolicyPack serves over gRPC) instead of starting
    the pack as the engine does. Outside mutmut the tests always use the real process.
    """

    def __init__(self) -> None:
        from pulumi_policy import EnforcementLevel
        from pulumi_policy.policy import _PolicyAnalyzerServicer

        self.servicer = _PolicyAnalyzerServicer("ha-ai-stack", "0.0.1", mutated_rules().policies(),
                                                EnforcementLevel.MANDATORY)

    def __getattr__(self, method: str) -> Any:
        return lambda request: getattr(self.servicer, method)(request, None)
