"""``haai diff`` across real git revisions of a temporary copy of this project."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ha_ai_stack_tools.capture import fake_secret
from ha_ai_stack_tools.diff import diff_resources, risks

from .conftest import PROJECT_ROOT, haai, stack_capture

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env={**os.environ, **GIT_ENV},
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding this project's tracked files, one commit."""
    root = tmp_path / "repo"
    for name in git(PROJECT_ROOT, "ls-files").splitlines():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, target)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root


def edit(repo: Path, stack: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = repo / "stacks" / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    change(document["config"])
    path.write_text(yaml.safe_dump(document))


def diff(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return haai("diff", "--base", "HEAD", *args, cwd=repo)


def as_json(repo: Path, stack: str = "prod") -> list[dict[str, Any]]:
    result = diff(repo, "--stack", stack, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_no_change_gives_an_empty_diff(repo: Path) -> None:
    result = diff(repo, "--all-stacks")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"stack {s}: 0 added, 0 changed, 0 removed, 0 risky"
                                          for s in ("dev", "prod", "staging")]


def test_changing_replicas_gives_exactly_that_change(repo: Path) -> None:
    edit(repo, "prod", lambda c: c["haai:inference"][0].update(replicas=5))
    [stack] = as_json(repo)
    assert stack["risks"] == []
    assert stack["resources"] == [{"resource": "Deployment ai-serving/ai-inference-service", "status": "changed",
                                   "changes": [{"path": "spec.replicas", "old": 3, "new": 5}]}]


def test_growing_a_redis_volume_flags_volume_claim_templates(repo: Path) -> None:
    edit(repo, "prod", lambda c: c["haai:redis"].update(storage_size="80Gi"))
    [stack] = as_json(repo)
    flagged = {r["resource"] for r in stack["risks"] if "volumeClaimTemplates" in r["why"]}
    assert flagged == {f"StatefulSet ai-serving/redis-us-east-1{z}" for z in "abc"}
    assert haai("diff", "--base", "HEAD", "--stack", "prod", "--fail-on-risk", cwd=repo).returncode == 3


def test_lowering_shards_is_flagged(repo: Path) -> None:
    edit(repo, "prod", lambda c: c["haai:redis"].update(shards=6))
    git(repo, "commit", "-qam", "six shards")
    edit(repo, "prod", lambda c: c["haai:redis"].update(shards=3))
    [stack] = as_json(repo)
    assert {"resource": "Redis Cluster", "why": "shards 6 -> 3: the removed shards' slots must be migrated first, "
                                                "or their keys are lost (the bootstrap Job refuses; see the README's "
                                                "manual procedure)"} in stack["risks"]


def test_raising_shards_is_not_flagged_as_a_shard_risk(repo: Path) -> None:
    edit(repo, "prod", lambda c: c["haai:redis"].update(shards=5))
    [stack] = as_json(repo)
    assert not [r for r in stack["risks"] if r["resource"] == "Redis Cluster"]


def test_turning_backups_off_is_flagged_and_changing_their_schedule_is_not(repo: Path) -> None:
    edit(repo, "prod", lambda c: c["haai:redis"]["backup"].update(schedule="0 * * * *"))
    [stack] = as_json(repo)
    assert not [r for r in stack["risks"] if "backups stop" in r["why"]]
    edit(repo, "staging", lambda c: c["haai:redis"].update(
        backup={"bucket": "acme-redis-backups"},
        service_account_annotations={"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/backup"}))
    git(repo, "commit", "-qam", "staging backups")
    edit(repo, "staging", lambda c: c["haai:redis"].pop("backup"))
    [stack] = as_json(repo, "staging")
    assert {"resource": "CronJob ai-serving-staging/redis-backup",
            "why": "Redis backups stop: no new backup is taken after this update (the existing ones stay in S3)"} \
        in stack["risks"]


def test_removing_a_pdb_is_flagged(repo: Path) -> None:
    edit(repo, "prod", lambda c: c["haai:inference"].pop(2))  # vllm-chat goes, with its PDB
    [stack] = as_json(repo)
    assert {"resource": "PodDisruptionBudget ai-serving/vllm-chat",
            "why": "PodDisruptionBudget removed: a drain may take every replica at once"} in stack["risks"]
    assert {r["status"] for r in stack["resources"] if "vllm-chat" in r["resource"]} == {"removed"}


def test_masked_secrets_never_appear_in_any_format(repo: Path) -> None:
    """The two sides hold different passwords (the password resource is renamed, so the fake secret differs), so a
    diff without masking would print both."""
    edit(repo, "prod", lambda c: c.update({"haai:namespace": "serving"}))  # every object changes, the Secret too
    old_password = fake_secret("redis-password")
    (repo / "components" / "redis_cluster" / "component.py").write_text(
        (repo / "components" / "redis_cluster" / "component.py").read_text().replace(
            'f"{name}-password"', 'f"{name}-password-v2"'))
    new_password = fake_secret("redis-password-v2")
    assert old_password != new_password
    for output_format in ("text", "markdown", "json"):
        result = diff(repo, "--stack", "prod", "--format", output_format)
        assert result.returncode == 0, result.stderr
        assert "Secret serving/redis-auth" in result.stdout
        assert "RandomPassword redis-password-v2" in result.stdout or "redis-password-v2" in result.stdout
        for leaked in (old_password, new_password, "mock-"):
            assert leaked not in result.stdout, output_format


def test_markdown_output(repo: Path) -> None:
    edit(repo, "prod", lambda c: c["haai:inference"][0].update(replicas=2))
    result = diff(repo, "--stack", "prod", "--format", "markdown")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "## haai diff against `HEAD`",
        "",
        "| stack | added | changed | removed | risky |",
        "|---|---|---|---|---|",
        "| prod | 0 | 1 | 0 | 1 |",
        "",
        "### prod",
        "",
        "**Risky changes**",
        "",
        "- :warning: `Deployment ai-serving/ai-inference-service`: replicas 3 -> 2, below the tier minimum 3",
        "",
        "<details><summary>changed: <code>Deployment ai-serving/ai-inference-service</code> (1 fields)</summary>",
        "",
        "| field | old | new |",
        "|---|---|---|",
        "| `spec.replicas` | `3` | `2` |",
        "",
        "</details>",
    ]


def test_missing_stack_renderer_or_revision_exits_2(repo: Path) -> None:
    shutil.copy(repo / "stacks" / "Pulumi.dev.yaml", repo / "stacks" / "Pulumi.qa.yaml")
    result = diff(repo, "--stack", "qa")
    assert result.returncode == 2 and "base HEAD: stack 'qa' not found" in result.stderr
    result = haai("diff", "--base", "no-such-ref", "--stack", "prod", cwd=repo)
    assert result.returncode == 2 and "base 'no-such-ref' is not a revision" in result.stderr
    git(repo, "checkout", "-q", "--orphan", "empty")
    git(repo, "rm", "-rqf", "--cached", ".")
    git(repo, "commit", "-q", "--allow-empty", "-m", "nothing")
    git(repo, "checkout", "-q", "-f", "main")
    result = haai("diff", "--base", "empty", "--stack", "prod", cwd=repo)
    assert result.returncode == 2 and "this revision has no haai renderer" in result.stderr


def _resources(stack: str) -> list[dict[str, Any]]:
    return [{"type": r.type_token, "name": r.name, "inputs": copy.deepcopy(r.inputs)}
            for r in stack_capture(stack).resources if r.custom]


def _flag(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> list[str]:
    return [f"{r.resource}: {r.why}" for r in risks(base, head, 3, diff_resources(base, head))]


def test_gpu_pool_and_password_risks() -> None:
    base = _resources("prod")
    smaller = copy.deepcopy(base)
    group = next(r for r in smaller if r["type"] == "aws:eks/nodeGroup:NodeGroup")
    group["inputs"]["scalingConfig"]["minSize"] = 1
    group["inputs"]["subnetIds"] = group["inputs"]["subnetIds"][:2]
    assert _flag(base, smaller) == [
        "NodeGroup gpu-a10g-node-group: replaced DELETE-FIRST (the name is taken, so it is gone until the new one is "
        "up): every GPU node of the pool goes before new ones exist (subnetIds)",
        "NodeGroup gpu-a10g-node-group: GPU pool min size 3 -> 1: less guaranteed GPU capacity",
        "NodeGroup gpu-a10g-node-group: GPU pool zones reduced (3 -> 2): a zone outage takes more",
    ]
    new_password = copy.deepcopy(base)
    next(r for r in new_password if r["name"] == "redis-password")["inputs"]["length"] = 40
    assert _flag(base, new_password) == ["RandomPassword redis-password: the Redis password is replaced: an outage "
                                         "unless members and clients restart together"]


def test_immutable_selector_and_statefulset_removal() -> None:
    base = _resources("prod")
    head = copy.deepcopy(base)
    deployment = next(r for r in head if r["name"] == "ai-inference-service-deployment")
    deployment["inputs"]["spec"]["selector"]["matchLabels"]["tier"] = "x"
    head = [r for r in head if r["name"] != "redis-us-east-1a-sts"]
    flags = _flag(base, head)
    assert "Deployment ai-serving/ai-inference-service: replaced DELETE-FIRST (the name is taken, so it is gone " \
           "until the new one is up): the selector is immutable; every replica stops (spec.selector.matchLabels.tier)" \
        in flags
    assert "StatefulSet ai-serving/redis-us-east-1a: removed: its data goes with it (volumes are orphaned or " \
           "deleted)" in flags


def test_a_redis_pod_template_change_is_flagged_as_a_rolling_restart() -> None:
    base = _resources("prod")
    head = copy.deepcopy(base)
    sts = next(r for r in head if r["name"] == "redis-us-east-1b-sts")
    sts["inputs"]["spec"]["template"]["spec"]["containers"][0]["image"] = "redis:7.2.6"
    assert _flag(base, head) == ["StatefulSet ai-serving/redis-us-east-1b: pod template changed: every member "
                                 "restarts, one at a time, zone after zone (expect brief handovers; watch the "
                                 "balance Job)"]
    quiet = copy.deepcopy(base)
    next(r for r in quiet if r["name"] == "redis-us-east-1b-sts")["inputs"]["spec"]["replicas"] = 2
    assert not any("pod template changed" in flag for flag in _flag(base, quiet))



def _change(resources: list[dict[str, Any]], name: str, path: list[Any], value: Any) -> list[dict[str, Any]]:
    changed = copy.deepcopy(resources)
    target = next(r for r in changed if r["name"] == name)["inputs"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


# One case per row of the replacement table, each a one-field change of a real rendered resource of prod.
REPLACEMENT_CASES = [
    ("Deployment", "triton-deployment", ["spec", "selector", "matchLabels", "x"], "y", "DELETE-FIRST", "spec.selector"),
    ("StatefulSet", "redis-us-east-1a-sts", ["spec", "serviceName"], "other", "DELETE-FIRST", "spec.serviceName"),
    ("Job", "redis-bootstrap", ["spec", "template", "spec", "containers", 0, "image"], "redis:7.2.6",
     "DELETE-FIRST", "spec.template"),
    ("ConfigMap", "prod-prerequisites", ["data", "prerequisites.json"], "[]\n", "DELETE-FIRST", "data"),
    ("Secret", "redis-secret", ["stringData", "password"], "changed", "DELETE-FIRST", "stringData"),
    ("StorageClass", "prod-redis-storage-class", ["parameters", "type"], "io2", "DELETE-FIRST", "parameters"),
    ("PriorityClass", "prod-priority-class-inference-critical", ["value"], 2000000, "DELETE-FIRST", "value"),
    ("NodeGroup", "gpu-a10g-node-group", ["instanceTypes"], ["g6.12xlarge"], "DELETE-FIRST", "instanceTypes"),
    ("Role", "prod-triton-role", ["name"], "haai-other", "replaced (the new one is made first)", "name"),
    ("Addon", "prod-acme-prod-ebs-csi-driver", ["clusterName"], "other", "replaced (the new one", "clusterName"),
]


@pytest.mark.parametrize(("kind", "name", "path", "value", "how", "field"), REPLACEMENT_CASES,
                         ids=[c[0] for c in REPLACEMENT_CASES])
def test_every_replacement_rule_fires_on_a_one_field_change(kind: str, name: str, path: list[Any], value: Any,
                                                            how: str, field: str) -> None:
    base = _resources("prod")
    flags = [f for f in _flag(base, _change(base, name, path, value)) if "replaced" in f]
    assert len(flags) == 1 and flags[0].startswith(kind) and how in flags[0] and f"({field}" in flags[0], flags


def test_a_content_named_config_map_is_replaced_create_first() -> None:
    base = _resources("prod")
    head = copy.deepcopy(base)
    config_map = next(r for r in head if r["name"] == "redis-config")["inputs"]
    config_map["data"]["redis.conf"] += "# tuned\n"
    config_map["metadata"]["name"] = "redis-config-0000000000"
    flags = [f for f in _flag(base, head) if f.startswith("ConfigMap")]
    assert flags == ["ConfigMap ai-serving/redis-config-0000000000: replaced (the new one is made first): its data "
                     "changed: pods that mount it lose it until the new one exists (data.redis.conf)"]


def test_changes_outside_the_replacement_fields_are_not_flagged() -> None:
    base = _resources("prod")
    quiet = _change(base, "triton-deployment", ["spec", "replicas"], 4)
    quiet = _change(quiet, "gpu-a10g-node-group", ["scalingConfig", "maxSize"], 20)
    assert not [f for f in _flag(base, quiet) if "replaced" in f]
