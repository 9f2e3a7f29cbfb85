"""The consumer example runs from its own directory under mocks; the PR workflow is a valid GitHub workflow; what
consumers and the component provider read from the components."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.errors import InputPropertiesError

from ha_ai_stack.connection import RedisConnection
from ha_ai_stack.options import public_output_names
from ha_ai_stack.provider import PACKAGE, SERVED, VERSION, HaaiProvider
from ha_ai_stack_tools.capture import Project, capture_program
from ha_ai_stack_tools.render import manifests

from .conftest import PROJECT_ROOT, run_components
from .schemas import validate_object

CONSUMER = PROJECT_ROOT / "examples" / "consumer"
WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "preview.yml"


def test_consumer_example_builds_valid_objects_from_its_own_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CONSUMER)
    project = Project.load(Path("."))
    capture = capture_program(project.run_program, project=project.name, stack="dev", config={})
    objects = manifests(capture)
    for manifest in objects:
        validate_object(manifest, "1.33")
    deployments = {m["metadata"]["name"]: m for m in objects if m["kind"] == "Deployment"}
    assert set(deployments) == {"ranker", "embedder"}
    for deployment in deployments.values():
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "feature-cache-auth"
        assert deployment["spec"]["template"]["spec"]["nodeSelector"]["ha-ai-stack/gpu-pool"] == "l4"
    assert [m["metadata"]["name"] for m in objects if m["kind"] == "Secret"] == ["feature-cache-auth"]
    assert {m["kind"] for m in objects} >= {"NodePool", "EC2NodeClass", "StatefulSet", "Job"}
    assert set(capture.exports["endpoints"]) == {"ranker", "embedder"}


def _check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_preview_workflow_passes_the_github_workflow_schema() -> None:
    result = _check_workflow(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_schema_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest", 1))
    assert _check_workflow(broken).returncode != 0


def test_workflow_runs_on_forks_with_the_jobs_python_and_per_stack_credentials() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    offline = workflow["jobs"]["offline"]["steps"]
    runs = [step.get("run", "") for step in offline]
    assert "bash .ci/run" in runs and not any("sudo bash" in run for run in runs)
    comment = next(step for step in offline if step.get("uses", "").startswith("marocchino/"))
    assert comment["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert any("GITHUB_STEP_SUMMARY" in run for run in runs)
    preview = workflow["jobs"]["pulumi-preview"]
    assert preview["strategy"]["matrix"]["include"] == [
        {"stack": "dev", "aws": False}, {"stack": "staging", "aws": True}, {"stack": "prod", "aws": True}]
    ready = next(step for step in preview["steps"] if step.get("id") == "ready")["run"]
    assert "AWS_ROLE_ARN" in ready and "PULUMI_ACCESS_TOKEN" in ready and "KUBECONFIG" in ready
    assert any(step.get("run") == "bash policies/install.sh" for step in preview["steps"])


def test_public_outputs_are_the_annotations_along_the_class_tree_without_private_ones() -> None:
    class Base(pulumi.ComponentResource):
        shared: pulumi.Output[str]
        _internal: pulumi.Output[str]

    class Derived(Base):
        own: pulumi.Output[int]
        _cache: dict[str, str]

    assert public_output_names(Derived) == ["shared", "own"]


def test_a_connection_reads_like_a_mapping_as_the_provider_reads_complex_outputs() -> None:
    connection = RedisConnection(seed_hosts=["redis-0.redis.ml"], password_secret_name="redis-auth",
                                 member_selector={"app": "redis"}, client_labels={"redis-client": "true"},
                                 namespace="ml")
    assert connection.get("port") == 6379
    assert connection.get("password_secret_name") == "redis-auth"
    assert connection.get("not_a_field", "fallback") == "fallback"


def test_the_component_provider_constructs_in_process_and_reports_bad_inputs_as_input_errors() -> None:
    """The same construct the provider process runs for YAML, TypeScript and Go programs (tests/test_provider.py
    drives that process over gRPC); here in process, under the mocks."""
    results: list[Any] = []

    def construct(inputs: dict[str, Any]) -> None:
        results.append(HaaiProvider(SERVED, PACKAGE, None, VERSION).construct(
            "ranker", "haai:index:InferenceService", inputs, None))

    capture = run_components(lambda: construct({"image": "ghcr.io/acme/api:1.0", "namespace": "ml"}))
    assert sorted(r.name for r in capture.resources) == [
        "ranker", "ranker-deployment", "ranker-netpol", "ranker-pdb", "ranker-sa", "ranker-service"]
    assert len(results) == 1
    with pytest.raises(InputPropertiesError) as raised:  # not the SDK's ComponentInitError, a stack trace
        run_components(lambda: construct({"image": "ghcr.io/acme/api:1.0", "replicas": 0}))
    assert str(raised.value).splitlines()[1:] == ["  replicas: must be >= 1 (got 0)"]
