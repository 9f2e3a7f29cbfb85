"""Every `haai diff` risk row, in process: each fires on a one-field change of the prod render, and a close
change next to it stays quiet. Expected wording is written here, not read from tools/diff.py."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from ha_ai_stack_tools import diff
from ha_ai_stack_tools.diff import (
    StackDiff,
    as_json,
    as_markdown,
    as_text,
    diff_resources,
    diff_stacks,
    field_changes,
    risks,
    show,
    tier_min_replicas,
)

from .conftest import PROJECT_ROOT, stack_capture

Edit = Callable[[list[dict[str, Any]]], None]
NS = "ai-serving"


def prod() -> list[dict[str, Any]]:
    return [{"type": r.type_token, "name": r.name, "inputs": copy.deepcopy(r.inputs)}
            for r in stack_capture("prod").resources if r.custom]


def obj(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(r["inputs"] for r in resources
                if r["inputs"].get("kind") == kind and r["inputs"]["metadata"]["name"].startswith(name))


def typed(resources: list[dict[str, Any]], type_token: str, name: str | None = None) -> dict[str, Any]:
    return next(r["inputs"] for r in resources if r["type"] == type_token and (name is None or r["name"] == name))


def drop(kind: str, name: str) -> Edit:
    def edit(resources: list[dict[str, Any]]) -> None:
        resources.remove(next(r for r in resources if r["inputs"].get("kind") == kind
                              and r["inputs"]["metadata"]["name"] == name))
    return edit


def risk_lines(edit: Edit, min_replicas: int = 3, base_edit: Edit | None = None) -> list[str]:
    base = prod()
    if base_edit:
        base_edit(base)
    head = copy.deepcopy(base)
    edit(head)
    return [f"{r.resource}: {r.why}" for r in risks(base, head, min_replicas, diff_resources(base, head))]


STS = f"StatefulSet {NS}/redis-us-east-1a"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ROLE = "aws:iam/role:Role"
FIRING: list[tuple[str, Edit, str]] = [
    ("deployment selector", lambda rs: obj(rs, "Deployment", "triton")["spec"]["selector"]["matchLabels"].update(
        tier="x"),
     f"Deployment {NS}/triton: replaced DELETE-FIRST (the name is taken, so it is gone until the new one is up): "
     f"the selector is immutable; every replica stops (spec.selector.matchLabels.tier)"),
    ("statefulset volume size", lambda rs: obj(rs, "StatefulSet", "redis-us-east-1a")["spec"]["volumeClaimTemplates"][0][
        "spec"]["resources"]["requests"].update(storage="80Gi"),
     f"{STS}: replaced DELETE-FIRST (the name is taken, so it is gone until the new one is up): an immutable field: "
     f"every member stops at once (spec.volumeClaimTemplates[0].spec.resources.requests.storage)"),
    ("job template", lambda rs: obj(rs, "Job", "redis-bootstrap")["spec"]["template"]["spec"].update(
        restartPolicy="Never"),
     "the Job template is immutable: the Job runs again (spec.template.spec.restartPolicy)"),
    ("secret data", lambda rs: obj(rs, "Secret", "redis-auth").update(type="kubernetes.io/basic-auth"),
     f"Secret {NS}/redis-auth: replaced DELETE-FIRST (the name is taken, so it is gone until the new one is up): its "
     f"data changed: pods that read it fail to start until the new one exists (type)"),
    ("storage class parameters", lambda rs: obj(rs, "StorageClass", "gp3")["parameters"].update(type="io2"),
     "StorageClass gp3: replaced DELETE-FIRST (the name is taken, so it is gone until the new one is up): an "
     "immutable field (a server-side apply of it fails instead) (parameters.type)"),
    ("priority class value", lambda rs: obj(rs, "PriorityClass", "inference-critical").update(value=5),
     "PriorityClass inference-critical: replaced DELETE-FIRST (the name is taken, so it is gone until the new one is "
     "up): value is immutable (a server-side apply of it fails instead) (value)"),
    ("node group instance types", lambda rs: typed(rs, NODE_GROUP).update(instanceTypes=["g5.48xlarge"]),
     "NodeGroup gpu-a10g-node-group: replaced DELETE-FIRST (the name is taken, so it is gone until the new one is up): "
     "every GPU node of the pool goes before new ones exist (instanceTypes[0])"),
    ("role name", lambda rs: typed(rs, ROLE, "prod-triton-role").update(name="haai-other"),
     "Role prod-triton-role: replaced (the new one is made first): pods assuming it lose their AWS access until the "
     "new role exists (name)"),
    ("addon name", lambda rs: typed(rs, "aws:eks/addon:Addon").update(addonName="vpc-cni"),
     "Addon prod-acme-prod-ebs-csi-driver: replaced (the new one is made first): the add-on (EBS CSI: new volumes) is "
     "missing meanwhile (addonName)"),
    ("statefulset removed", drop("StatefulSet", "redis-us-east-1c"),
     f"StatefulSet {NS}/redis-us-east-1c: removed: its data goes with it (volumes are orphaned or deleted)"),
    ("pdb removed", drop("PodDisruptionBudget", "triton"),
     f"PodDisruptionBudget {NS}/triton: PodDisruptionBudget removed: a drain may take every replica at once"),
    ("pod template", lambda rs: obj(rs, "StatefulSet", "redis-us-east-1a")["spec"]["template"]["spec"].update(
        terminationGracePeriodSeconds=100),
     f"{STS}: pod template changed: every member restarts, one at a time, zone after zone (expect brief handovers; "
     f"watch the balance Job)"),
    ("backups removed", drop("CronJob", "redis-backup"),
     f"CronJob {NS}/redis-backup: Redis backups stop: no new backup is taken after this update (the existing ones "
     f"stay in S3)"),
    ("password replaced", lambda rs: typed(rs, "random:index/randomPassword:RandomPassword").update(length=40),
     "RandomPassword redis-password: the Redis password is replaced: an outage unless members and clients restart "
     "together"),
    ("deployment replicas below the floor", lambda rs: obj(rs, "Deployment", "ai-inference-service")["spec"].update(
        replicas=2),
     f"Deployment {NS}/ai-inference-service: replicas 3 -> 2, below the tier minimum 3"),
    ("hpa floor below the floor", lambda rs: obj(rs, "HorizontalPodAutoscaler", "triton")["spec"].update(
        minReplicas=2), f"HorizontalPodAutoscaler {NS}/triton: minReplicas 3 -> 2, below the tier minimum 3"),
    ("node group min size down", lambda rs: typed(rs, NODE_GROUP)["scalingConfig"].update(minSize=2),
     "NodeGroup gpu-a10g-node-group: GPU pool min size 3 -> 2: less guaranteed GPU capacity"),
    ("node group zones down", lambda rs: typed(rs, NODE_GROUP)["subnetIds"].pop(),
     "NodeGroup gpu-a10g-node-group: GPU pool zones reduced (3 -> 2): a zone outage takes more"),
]


@pytest.mark.parametrize(("change", "edit", "expected"), FIRING, ids=[c[0] for c in FIRING])
def test_each_risk_row_fires_on_a_one_field_change(change: str, edit: Edit, expected: str) -> None:
    found = risk_lines(edit)
    assert [line for line in found if line.endswith(expected)], f"{change}: {found}"


QUIET: list[tuple[str, Edit]] = [
    ("deployment image", lambda rs: obj(rs, "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0].update(
        image="nvcr.io/nvidia/tritonserver:24.09-py3")),
    ("statefulset replicas", lambda rs: obj(rs, "StatefulSet", "redis-us-east-1a")["spec"].update(replicas=3)),
    ("secret labels", lambda rs: obj(rs, "Secret", "redis-auth")["metadata"]["labels"].update(team="x")),
    ("storage class expansion", lambda rs: obj(rs, "StorageClass", "gp3").update(allow_volume_expansion=False)),
    ("priority class description", lambda rs: obj(rs, "PriorityClass", "inference-critical").update(description="d")),
    ("node group tags", lambda rs: typed(rs, NODE_GROUP).update(tags={"team": "x"})),
    ("role tags", lambda rs: typed(rs, ROLE, "prod-triton-role").update(tags={"team": "x"})),
    ("balance cron job removed", drop("CronJob", "redis-balance")),
    ("deployment replicas up", lambda rs: obj(rs, "Deployment", "ai-inference-service")["spec"].update(replicas=5)),
    ("node group min size up", lambda rs: typed(rs, NODE_GROUP)["scalingConfig"].update(minSize=4)),
    ("password unchanged, secret labels", lambda rs: obj(rs, "Secret", "redis-auth")["metadata"].update(
        annotations={"a": "b"})),
]


@pytest.mark.parametrize(("change", "edit"), QUIET, ids=[c[0] for c in QUIET])
def test_close_changes_stay_quiet(change: str, edit: Edit) -> None:
    assert risk_lines(edit) == [], change


def test_replicas_at_the_floor_or_with_a_lower_floor_are_quiet_and_one_below_fires() -> None:
    to_three = (lambda rs: obj(rs, "Deployment", "ai-inference-service")["spec"].update(replicas=3))
    from_four = (lambda rs: obj(rs, "Deployment", "ai-inference-service")["spec"].update(replicas=4))
    assert risk_lines(to_three, min_replicas=3, base_edit=from_four) == []
    to_two = (lambda rs: obj(rs, "Deployment", "ai-inference-service")["spec"].update(replicas=2))
    assert risk_lines(to_two, min_replicas=2, base_edit=from_four) == []
    assert risk_lines(to_two, min_replicas=3, base_edit=from_four) == [
        f"Deployment {NS}/ai-inference-service: replicas 4 -> 2, below the tier minimum 3"]

    def added_first_then_to_two(resources: list[dict[str, Any]]) -> None:  # a new object does not end the scan
        resources.insert(0, {"type": "kubernetes:core/v1:ConfigMap", "name": "new-settings", "inputs": {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new-settings", "namespace": NS}}})
        to_two(resources)
    assert risk_lines(added_first_then_to_two, min_replicas=3, base_edit=from_four) == [
        f"Deployment {NS}/ai-inference-service: replicas 4 -> 2, below the tier minimum 3"]


def topology_edit(shards: int, replicas: int) -> Edit:
    def edit(resources: list[dict[str, Any]]) -> None:
        data = next(r["inputs"]["data"] for r in resources if "topology.txt" in r["inputs"].get("data", {}))
        lines = ["# shard role hostname"] + [f"{s} {'master' if j == 0 else 'replica'} h-{s}-{j}"
                                             for s in range(shards) for j in range(replicas + 1)]
        data["topology.txt"] = "\n".join(lines) + "\n"
    return edit


@pytest.mark.parametrize(("base", "head", "expected"), [
    ((6, 1), (3, 1), ["Redis Cluster: shards 6 -> 3: the removed shards' slots must be migrated first, or their keys "
                      "are lost (the bootstrap Job refuses; see the README's manual procedure)"]),
    ((3, 2), (3, 1), ["Redis Cluster: replicas per shard 2 -> 1: a node or zone loss can now lose a shard"]),
    ((3, 1), (4, 1), []),
    ((3, 1), (3, 2), []),
    ((3, 1), (3, 1), []),
])
def test_redis_topology_risks(base: tuple[int, int], head: tuple[int, int], expected: list[str]) -> None:
    found = risk_lines(topology_edit(*head), base_edit=topology_edit(*base))
    assert [line for line in found if line.startswith("Redis Cluster")] == expected


def test_a_replacement_of_a_renamed_object_is_made_first() -> None:
    def rename_and_change(resources: list[dict[str, Any]]) -> None:
        secret = obj(resources, "Secret", "redis-auth")
        secret["metadata"]["name"] = "redis-auth-v2"
        secret["type"] = "kubernetes.io/basic-auth"
    found = risk_lines(rename_and_change)
    assert f"Secret {NS}/redis-auth-v2: replaced (the new one is made first): its data changed: pods that read it " \
           f"fail to start until the new one exists (type)" in found


def test_field_changes_pair_named_list_items_by_name_and_others_by_position() -> None:
    old = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "args": ["x", "y"]}
    new = {"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "3"}], "args": ["x", "z"]}
    assert [(c.path, c.old, c.new) for c in field_changes(old, new)] == [
        ("args[1]", "y", "z"), ("env[A].value", "1", "3")]
    assert [(c.path, c.old, c.new) for c in field_changes({"a": [1]}, {"a": [1, 2]})] == [("a", [1], [1, 2])]
    assert field_changes({"a": {"b": 1}}, {"a": {"b": 1}}) == []
    assert [(c.path, c.old, c.new) for c in field_changes({"a": 1}, {})] == [("a", 1, None)]


# -- the three output formats, and diff_stacks over two given renders -----------------------------------------------

def small_sides() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A Deployment scaled below the floor and labelled, a Service removed, an IAM role added."""
    def web(replicas: int, labels: dict[str, str]) -> dict[str, Any]:
        return {"type": "kubernetes:apps/v1:Deployment", "name": "web", "inputs": {
            "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "labels": labels},
            "spec": {"replicas": replicas}}}
    service = {"type": "kubernetes:core/v1:Service", "name": "old", "inputs": {
        "kind": "Service", "metadata": {"name": "old", "namespace": "shop"}}}
    role = {"type": "aws:iam/role:Role", "name": "reader", "inputs": {"name": "reader"}}
    return [web(3, {}), service], [web(2, {"team": "a|b"}), role]


def small_diff() -> list[StackDiff]:
    base, head = small_sides()
    diffs = diff_resources(base, head)
    return [StackDiff("prod", diffs, risks(base, head, 3, diffs)), StackDiff("dev", [], [])]


def test_text_format() -> None:
    assert as_text(small_diff()) == "\n".join([
        "stack prod: 1 added, 1 changed, 1 removed, 1 risky",
        "  ! Deployment shop/web: replicas 3 -> 2, below the tier minimum 3",
        "  + Role reader",
        "  ~ Deployment shop/web",
        '      metadata.labels.team: (absent) -> "a|b"',
        "      spec.replicas: 3 -> 2",
        "  - Service shop/old",
        "stack dev: 0 added, 0 changed, 0 removed, 0 risky"])


def test_markdown_format_escapes_cells_and_skips_unchanged_stacks() -> None:
    assert as_markdown(small_diff(), "main").splitlines() == [
        "## haai diff against `main`", "",
        "| stack | added | changed | removed | risky |", "|---|---|---|---|---|",
        "| prod | 1 | 1 | 1 | 1 |", "| dev | 0 | 0 | 0 | 0 |",
        "", "### prod", "", "**Risky changes**", "",
        "- :warning: `Deployment shop/web`: replicas 3 -> 2, below the tier minimum 3",
        "", "<details><summary>added: <code>Role reader</code> (0 fields)</summary>", "", "", "</details>",
        "", "<details><summary>changed: <code>Deployment shop/web</code> (2 fields)</summary>", "",
        "| field | old | new |", "|---|---|---|",
        '| `metadata.labels.team` | `(absent)` | `"a\\|b"` |', "| `spec.replicas` | `3` | `2` |",
        "", "</details>",
        "", "<details><summary>removed: <code>Service shop/old</code> (0 fields)</summary>", "", "", "</details>"]


def test_json_format() -> None:
    [prod, dev] = json.loads(as_json(small_diff()))
    assert prod["risks"] == [{"resource": "Deployment shop/web", "why": "replicas 3 -> 2, below the tier minimum 3"}]
    assert [(r["resource"], r["status"], len(r["changes"])) for r in prod["resources"]] == [
        ("Role reader", "added", 0), ("Deployment shop/web", "changed", 2), ("Service shop/old", "removed", 0)]
    assert prod["resources"][1]["changes"][1] == {"path": "spec.replicas", "old": 3, "new": 2}
    assert dev == {"stack": "dev", "resources": [], "risks": []}


def test_values_are_shown_whole_up_to_the_limit() -> None:
    assert show(None) == "(absent)" and show({"b": 1, "a": 0}) == '{"a": 0, "b": 1}'
    assert show("x" * 118) == '"' + "x" * 118 + '"'  # 120 characters: whole
    assert show("x" * 119) == '"' + "x" * 118 + "…"  # 121: cut to 120 with the ellipsis
    assert show("x" * 8, limit=10) == '"xxxxxxxx"' and show("x" * 9, limit=10) == '"xxxxxxxx…'


def test_diff_stacks_uses_the_head_tier_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    base, head = small_sides()
    sides = ({"prod": {"tier": "prod", "resources": base}}, {"prod": {"tier": "dev", "resources": head}})
    asked: list[tuple[Any, ...]] = []
    monkeypatch.setattr(diff, "snapshots", lambda root, ref, stacks: asked.append((root, ref, stacks)) or sides)
    [result] = diff_stacks(PROJECT_ROOT, "main", ["prod"])
    assert asked == [(PROJECT_ROOT, "main", ["prod"])]  # both sides rendered from the project asked for
    assert result.stack == "prod" and result.risks == []  # dev's floor is 1: 3 -> 2 is not below it
    assert [r.resource for r in result.resources] == ["Role reader", "Deployment shop/web", "Service shop/old"]
    sides[1]["prod"]["tier"] = "prod"
    [result] = diff_stacks(PROJECT_ROOT, "main", ["prod"])
    assert [r.why for r in result.risks] == ["replicas 3 -> 2, below the tier minimum 3"]


@pytest.mark.parametrize(("tier", "floor"), [("prod", 3), ("staging", 2), ("dev", 1), ("qa", 1), (None, 1)])
def test_tier_floor_comes_from_the_policy_config(tier: str | None, floor: int) -> None:
    assert tier_min_replicas(PROJECT_ROOT, tier) == floor


def test_markdown_skips_an_unchanged_stack_and_goes_on() -> None:
    prod, dev = small_diff()
    lines = as_markdown([dev, prod], "main").splitlines()
    assert "### dev" not in lines and "### prod" in lines


def test_json_is_indented_for_reading_in_a_pull_request() -> None:
    assert as_json([StackDiff("dev", [], [])]) == '[\n  {\n    "resources": [],\n    "risks": [],\n    "stack": "dev"\n  }\n]'


def test_labels_of_objects_the_provider_names() -> None:
    unnamed = {"type": "kubernetes:core/v1:ConfigMap", "name": "settings", "inputs": {"kind": "ConfigMap"}}
    assert [d.resource for d in diff_resources([], [unnamed])] == ["ConfigMap settings"]


def test_a_list_that_becomes_something_else_is_one_change() -> None:
    assert [(c.path, c.old, c.new) for c in field_changes({"a": [1]}, {"a": "x"})] == [("a", [1], "x")]
    assert [(c.path, c.old, c.new) for c in field_changes({"a": "x"}, {"a": [1]})] == [("a", "x", [1])]


def test_every_risk_of_one_update_is_reported() -> None:
    def two(resources: list[dict[str, Any]]) -> None:
        obj(resources, "Deployment", "triton")["spec"]["selector"]["matchLabels"].update(tier="x")
        drop("PodDisruptionBudget", "vllm-chat")(resources)
    found = risk_lines(two)
    assert [line.split(":", 1)[0] for line in found] == [f"Deployment {NS}/triton", f"PodDisruptionBudget {NS}/vllm-chat"]


def test_a_karpenter_pool_losing_a_zone() -> None:
    base = [{"type": r.type_token, "name": r.name, "inputs": copy.deepcopy(r.inputs)}
            for r in stack_capture("staging").resources if r.custom]
    head = copy.deepcopy(base)
    pool = typed(head, "kubernetes:karpenter.sh/v1:NodePool")
    [zones] = [r for r in pool["spec"]["template"]["spec"]["requirements"] if r["key"] == "topology.kubernetes.io/zone"]
    zones["values"] = zones["values"][:2]
    found = [f"{r.resource}: {r.why}" for r in risks(base, head, 2, diff_resources(base, head))]
    assert found == ["NodePool gpu-a10g: GPU pool zones reduced (3 -> 2): a zone outage takes more"]


def test_a_tier_config_without_a_replica_floor_means_one(tmp_path: Any) -> None:
    (tmp_path / "policies" / "config").mkdir(parents=True)
    (tmp_path / "policies" / "config" / "qa.json").write_text('{"all": "advisory"}')
    assert tier_min_replicas(tmp_path, "qa") == 1


def test_an_autonamed_object_is_replaced_new_one_first() -> None:
    def config_map(value: str) -> dict[str, Any]:
        return {"type": "kubernetes:core/v1:ConfigMap", "name": "settings",
                "inputs": {"kind": "ConfigMap", "metadata": {"namespace": "shop"}, "data": {"a": value}}}
    base, head = [config_map("1")], [config_map("2")]
    assert [r.why for r in risks(base, head, 1, diff_resources(base, head))] == [
        "replaced (the new one is made first): its data changed: pods that mount it lose it until the new one exists "
        "(data.a)"]


def test_a_replacement_names_at_most_three_fields() -> None:
    def edit(resources: list[dict[str, Any]]) -> None:
        spec = obj(resources, "StatefulSet", "redis-us-east-1a")["spec"]
        spec.update(serviceName="other", podManagementPolicy="OrderedReady")
        spec["selector"]["matchLabels"]["tier"] = "x"
        spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "80Gi"
    [line] = [line for line in risk_lines(edit) if "immutable field" in line]
    assert line.endswith("(spec.podManagementPolicy, spec.selector.matchLabels.tier, spec.serviceName)")
