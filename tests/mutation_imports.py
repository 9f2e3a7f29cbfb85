"""The policy pack in process, for mutation testing (see tests/mutation.py)."""

from __future__ import annotations

import importlib
from typing import Any


class InProcessPack:
    """The policy pack's analyzer called in this process: the same requests and replies as over gRPC.

    mutmut follows only code that runs in its own process, so under mutmut the policy tests call the pack's
    servicer directly (pulumi_policy's own class, which its PolicyPack serves over gRPC) instead of starting
    the pack as the engine does. Outside mutmut the tests always use the real process.
    """

    def __init__(self) -> None:
        from pulumi_policy import EnforcementLevel
        from pulumi_policy.policy import _PolicyAnalyzerServicer

        rules = importlib.import_module("policies.rules")  # the mutated copy, under the name mutmut gave it
        self.servicer = _PolicyAnalyzerServicer("ha-ai-stack", "0.0.1", rules.policies(), EnforcementLevel.MANDATORY)

    def __getattr__(self, method: str) -> Any:
        return lambda request: getattr(self.servicer, method)(request, None)
