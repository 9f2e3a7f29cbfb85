"""Probe factories and model-server presets.

GPU model servers can take many minutes to load weights. The startup probe absorbs that time so
that liveness can stay tight: a hung server is restarted quickly, a slow load is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

ServerKind = Literal["triton", "vllm", "custom"]

STARTUP_PERIOD_SECONDS = 10


@dataclass(frozen=True)
class ServerPreset:
    """Where a model server listens and reports health."""

    port: int
    readiness_path: str
    liveness_path: str
    metrics_port: int | None = None


PRESETS: dict[str, ServerPreset] = {
    # Triton: HTTP 8000, metrics 8002 (https://github.com/triton-inference-server/server docs).
    "triton": ServerPreset(port=8000, readiness_path="/v2/health/ready", liveness_path="/v2/health/live",
                           metrics_port=8002),
    # vLLM's OpenAI-compatible server: one /health endpoint on 8000, metrics on the same port.
    "vllm": ServerPreset(port=8000, readiness_path="/health", liveness_path="/health"),
    "custom": ServerPreset(port=8080, readiness_path="/healthz", liveness_path="/healthz"),
}


def http_get(
    path: str,
    port: int | str,
    *,
    period_seconds: int,
    failure_threshold: int,
    timeout_seconds: int = 5,
    success_threshold: int = 1,
) -> dict[str, Any]:
    """An HTTP GET probe."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period_seconds,
        "timeoutSeconds": timeout_seconds,
        "failureThreshold": failure_threshold,
        "successThreshold": success_threshold,
    }


def startup_failure_threshold(model_load_seconds: int) -> int:
    """Failures the startup probe tolerates so that a load of ``model_load_seconds`` still passes."""
    return max(1, math.ceil(model_load_seconds / STARTUP_PERIOD_SECONDS))


def model_server_probes(
    readiness_path: str,
    liveness_path: str,
    port: int | str,
    model_load_seconds: int,
) -> dict[str, dict[str, Any]]:
    """Startup, readiness and liveness probes for a model server, keyed by their container field."""
    return {
        "startupProbe": http_get(
            liveness_path,
            port,
            period_seconds=STARTUP_PERIOD_SECONDS,
            failure_threshold=startup_failure_threshold(model_load_seconds),
        ),
        "readinessProbe": http_get(readiness_path, port, period_seconds=5, failure_threshold=3),
        "livenessProbe": http_get(liveness_path, port, period_seconds=10, failure_threshold=6),
    }
