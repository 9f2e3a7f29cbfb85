"""Drive a CrossGuard policy pack the way the Pulumi engine does, over its gRPC analyzer protocol.

The pack runs as its own process (``python policies/__main__.py``), prints its port, and is then
configured (``Configure``, from a ``--policy-pack-config`` JSON file) and fed every captured resource
(``Analyze``) and the whole stack (``AnalyzeStack``). Used by ``haai check``, the tests and the
benchmark. The process is always stopped.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi.runtime.rpc import UNKNOWN as ENGINE_UNKNOWN

from .capture import UNKNOWN, Capture, CapturedResource

LEVEL_NAMES = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory",
               analyzer_pb2.REMEDIATE: "remediate", analyzer_pb2.DISABLED: "disabled"}
LEVELS = {name: value for value, name in LEVEL_NAMES.items()}
PORT_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Finding:
    """One diagnostic: which policy, on which resource, at which level, and why."""

    policy: str
    resource: str
    level: str
    message: str


class PolicyPackError(RuntimeError):
    """The pack (or another plugin) did not start or answer."""


@contextmanager
def running_plugin(command: list[str], cwd: Path) -> Iterator[grpc.Channel]:
    """Start a Pulumi plugin process (policy pack or provider) as the engine does: it prints its port.

    Yields a ready channel to it, and always stops the process, even when the caller fails.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    channel = None
    try:
        assert process.stdout is not None  # stdout=PIPE
        ready, _, _ = select.select([process.stdout], [], [], PORT_TIMEOUT_SECONDS)
        line = process.stdout.readline().decode().strip() if ready else ""
        if not line.isdigit():
            process.kill()
            _, error = process.communicate(timeout=10)
            raise PolicyPackError(f"{' '.join(command)} (in {cwd}) did not print its port: {error.decode()[-2000:]}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=PORT_TIMEOUT_SECONDS)
        yield channel
    finally:
        if channel is not None:
            channel.close()
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


@contextmanager
def running_pack(pack_dir: Path) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """Start the pack, yield a connected AnalyzerStub, and always stop the process."""
    pack_dir = pack_dir.resolve()
    with running_plugin([sys.executable, "-u", str(pack_dir / "__main__.py")], pack_dir) as channel:
        yield analyzer_pb2_grpc.AnalyzerStub(channel)


def configure(stub: analyzer_pb2_grpc.AnalyzerStub, pack_config: dict[str, Any]) -> dict[str, str]:
    """Apply a ``--policy-pack-config`` document as the CLI does; return each policy's level."""
    info = stub.GetAnalyzerInfo(empty_pb2.Empty())
    default = pack_config.get("all")
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    levels = {}
    for policy in info.policies:
        entry = pack_config.get(policy.name, {})
        level = entry if isinstance(entry, str) else entry.get("enforcementLevel", default)
        properties = {k: v for k, v in entry.items() if k != "enforcementLevel"} if isinstance(entry, dict) else {}
        value = LEVELS[level] if level else policy.enforcementLevel
        request.policyConfig[policy.name].enforcementLevel = value
        request.policyConfig[policy.name].properties.update(properties)
        levels[policy.name] = LEVEL_NAMES[value]
    stub.Configure(request)
    return levels


def _engine_value(value: Any) -> Any:
    """Captured values as the engine sends them: the capture's unknown marker becomes the engine's."""
    if value == UNKNOWN:
        return ENGINE_UNKNOWN
    if isinstance(value, dict):
        return {k: _engine_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_engine_value(v) for v in value]
    return value


def _struct(properties: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(_engine_value(properties), struct_pb2.Struct())


def analyzer_resource(resource: CapturedResource) -> analyzer_pb2.AnalyzerResource:
    return analyzer_pb2.AnalyzerResource(
        type=resource.type_token, properties=_struct(resource.inputs), urn=resource.urn, name=resource.name,
        parent=resource.parent, dependencies=list(resource.dependencies))


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, resources: list[CapturedResource]) -> list[Finding]:
    """Every resource through ``Analyze``, then the stack through ``AnalyzeStack``."""
    by_urn = {r.urn: r.name for r in resources}
    findings = []
    for resource in resources:
        if not resource.custom:
            continue
        response = stub.Analyze(analyzer_pb2.AnalyzeRequest(
            type=resource.type_token, properties=_struct(resource.inputs), urn=resource.urn, name=resource.name))
        findings += [_finding(d, resource.name) for d in response.diagnostics]
    response = stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(
        resources=[analyzer_resource(r) for r in resources]))
    findings += [_finding(d, by_urn.get(d.urn, "(stack)")) for d in response.diagnostics]
    return findings


def _finding(diagnostic: analyzer_pb2.AnalyzeDiagnostic, resource: str) -> Finding:
    detail = diagnostic.message.removeprefix(diagnostic.description).strip() or diagnostic.description
    return Finding(diagnostic.policyName, resource, LEVEL_NAMES[diagnostic.enforcementLevel], detail)


def tier_config(pack_dir: Path, tier: str) -> dict[str, Any]:
    """The pack's ``config/<tier>.json``: the file to pass as ``--policy-pack-config``."""
    return json.loads((pack_dir / "config" / f"{tier}.json").read_text())


def check_capture(capture: Capture, pack_dir: Path, tier: str) -> list[Finding]:
    """Run the pack over a captured stack with the tier's config."""
    with running_pack(pack_dir) as stub:
        configure(stub, tier_config(pack_dir, tier))
        return analyze(stub, capture.resources)
