"""Every malformed stack file or argument gets a clear error: exit 2, the key, the reason, and nothing written.

The corpus is a table: one line per broken stack file (what it contains, a phrase the message must
contain). Each case is rendered with the real CLI, in process, into an output folder that must not
exist afterwards. Property tests throw arbitrary YAML and arbitrary bytes at the reader.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ha_ai_stack import ArgsError, ConfigError, GpuNodePool, HaAiStack, InferenceService, RedisCluster
from ha_ai_stack.config import stack_file_config, validate_stack_config
from ha_ai_stack_tools.cli import app
from ha_ai_stack_tools.stackfile import StackFileError, parse_stack_text, stack_config_of

from .conftest import PROJECT_ROOT, run_components

IMAGE = "ghcr.io/acme/api:1.0.0"
GOOD = {"haai:tier": "dev", "haai:namespace": "team-a", "haai:inference": [{"name": "api", "image": IMAGE}]}


def stack(**changes: Any) -> str:
    """A stack file: GOOD with ``changes`` (a value of None removes the key)."""
    config = {**GOOD}
    for key, value in changes.items():
        full = key if ":" in key else f"haai:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value
    return yaml.safe_dump({"config": config}, sort_keys=False)


def service(**fields: Any) -> str:
    return stack(inference=[{"name": "api", "image": IMAGE, **fields}])


def with_pool(pool: dict[str, Any], **service_fields: Any) -> str:
    return stack(gpu_pools=[{"name": "gpu", "gpus_per_node": 4, **pool}],
                 inference=[{"name": "api", "image": IMAGE, "resources": {"gpus": 1}, **service_fields}])


def redis(**fields: Any) -> str:
    return stack(redis={"enabled": True, **fields})


# (case id, stack file contents, a phrase the error must contain). Expected texts are written here.
CORPUS: list[tuple[str, str | bytes, str]] = [
    # the file itself
    ("top-level list", "- a\n- b\n", "must be a mapping with a `config:` key (got a list)"),
    ("top-level scalar", "hello\n", "must be a mapping with a `config:` key (got a string)"),
    ("yaml syntax error", "config:\n  haai:tier: [dev\n", "line 3, column 1: expected ',' or ']'"),
    ("tab indentation", "config:\n\thaai:tier: dev\n", "found character '\\t' that cannot start any token"),
    ("config is a list", "config:\n  - haai:tier\n", "config: must be a mapping of keys to values (got a list)"),
    ("config is a number", "config: 3\n", "config: must be a mapping of keys to values (got a number)"),
    ("NUL byte", b"config:\n  haai:tier: d\x00ev\n", "line 2, column 15: a NUL byte"),
    ("not UTF-8", b"config:\n  haai:namespace: caf\xe9\n", "line 2, column 22: byte 0xe9 is not UTF-8"),
    ("duplicate key", "config:\n  haai:tier: dev\n  haai:tier: prod\n",
     "line 3, column 3: key 'haai:tier' is given twice (also at line 2)"),
    ("duplicate nested key", service(replicas=2).replace("replicas: 2", "replicas: 2\n    replicas: 3"),
     "key 'replicas' is given twice"),
    ("no config wrapper", "haai:tier: dev\nhaai:namespace: team-a\n", "haai:tier: not a stack file key (config keys go under `config:`)"),
    ("misspelt config", "confg:\n  haai:tier: dev\n", "confg: not a stack file key (did you mean 'config'?)"),
    ("key without prefix", stack(**{"ha-ai-stack:x": None}) + "  tier: dev\n",
     "tier: ignored by the program (did you mean `haai:tier`?)"),
    ("project-namespace key", stack() + "  ha-ai-stack:namespace: team-b\n",
     "ha-ai-stack:namespace: ignored by the program (did you mean `haai:namespace`?)"),
    ("bare unknown key", stack() + "  zebra: 1\n", "zebra: ignored by the program (this program reads only `haai:` keys)"),
    ("non-string key", "config:\n  1: 2\n", "config key 1: must be a string like `haai:namespace`"),
    ("JSON-looking string", stack(namespace="[oops"), "haai:namespace: '[oops' starts like a list or map but is not one"),
    ("JSON-looking map string", stack(inference="{bad"), "haai:inference: '{bad' starts like a list or map"),
    ("empty file", "", "haai:tier: required key is missing"),
    ("secure value", stack(namespace=None) + "  haai:namespace:\n    secure: AAABAHVqZ0cy\n",
     "haai:namespace: stored as a secret (`secure:`), but ha-ai-stack's config carries no secrets"),
    ("nested secure value", service(env={"MODE": {"secure": "AAABAK"}}),
     "haai:inference: stored as a secret (`secure:`)"),
    # keys and types
    ("unquoted 1.30", stack(kubernetes_version=1.30),
     "haai:kubernetes_version: got '1.3': YAML read an unquoted 1.30 as the number 1.3; quote it"),
    ("unsupported version", stack(kubernetes_version="1.99"), "must be a supported minor version from 1.30 to 1.37"),
    ("misspelt key", stack(namespce="x"), "haai:namespce: unknown key (did you mean 'namespace'?)"),
    ("bad tier", stack(tier="qa"), "haai:tier: must be 'dev', 'staging' or 'prod'"),
    ("inference not a list", stack(inference={"name": "api"}), "haai:inference: must be a valid list"),
    ("resources not a map", service(resources="big"), "haai:inference[0].resources: must be a valid dictionary"),
    ("replicas a word", service(replicas="three"), "haai:inference[0].replicas: must be a valid integer"),
    ("misspelt service field", service(replica=2), "haai:inference[0].replica: unknown key (did you mean 'replicas'?)"),
    # names the API server refuses
    ("namespace with underscore", stack(namespace="Team_A"), "haai:namespace: 'Team_A' is not a valid DNS label"),
    ("namespace too long", stack(namespace="a" * 64), "is 64 characters; a DNS label has at most 63"),
    ("service name uppercase", service(name="API"), "haai:inference[0].name: 'API' is not a valid DNS-1035 label"),
    ("service name starts with a digit", service(name="1api"), "'1api' is not a valid DNS-1035 label"),
    ("service name too long", service(name="a" * 41), "is 41 characters; a DNS-1035 label has at most 40"),
    ("pool name with underscore", with_pool({"name": "GPU_A10G"}, gpu_pool="GPU_A10G"),
     "haai:gpu_pools[0].name: 'GPU_A10G' is not a valid DNS label"),
    ("node label value", with_pool({"node_labels": {"team": "ML Team!"}}),
     "label team: 'ML Team!' is not a valid label value"),
    ("node label key", with_pool({"node_labels": {"bad key": "x"}}), "'bad key' is not a valid label key"),
    ("env name with a space", service(env={"MY VAR": "1"}), "'MY VAR' is not a valid env var name"),
    ("secret_env name with a space", service(secret_env={"HF TOKEN": {"secret": "hf", "key": "token"}}),
     "haai:inference[0].secret_env: 'HF TOKEN' is not a valid env var name"),
    ("secret name uppercase", service(secret_env={"HF_TOKEN": {"secret": "Hugging_Face", "key": "token"}}),
     "secret_env.HF_TOKEN.secret: 'Hugging_Face' is not a valid DNS subdomain"),
    ("secret key with a space", service(secret_env={"HF_TOKEN": {"secret": "hf", "key": "to ken"}}),
     "'to ken' is not a valid Secret or ConfigMap key"),
    ("priority class with spaces", service(priority_class_name="Inference Critical"),
     "haai:inference[0].priority_class_name: 'Inference Critical' is not a valid DNS subdomain"),
    ("storage class uppercase", redis(storage_class="GP3"), "haai:redis.storage_class: 'GP3' is not a valid DNS subdomain"),
    ("env_from secret with a space", service(env_from_secrets=["My Secret"]), "'My Secret' is not a valid DNS subdomain"),
    ("annotation key", service(pod_annotations={"bad key!": "x"}), "'bad key!' is not a valid label key"),
    ("namespace in allow list", service(allow_from_namespaces=["Ingress_NGINX"]), "'Ingress_NGINX' is not a valid DNS label"),
    ("redis zone", redis(zones=["US_EAST_1A", "b", "c"], replicas_per_shard=0), "'US_EAST_1A' is not a valid DNS label"),
    ("metric selector", service(autoscaling={"metric": {"type": "pods", "name": "m", "target_average_value": "1",
                                                        "selector": {"gpu": "A 10"}}}),
     "label gpu: 'A 10' is not a valid label value"),
    # values
    ("zero replicas", service(replicas=0), "haai:inference[0].replicas: must be >= 1 (got 0)"),
    ("latest image", service(image="ghcr.io/acme/api:latest"), "uses the 'latest' tag: pin a version or a digest"),
    ("untagged image", service(image="ghcr.io/acme/api"), "has no tag: pin a version"),
    ("GPUs over a node", with_pool({}, resources={"gpus": 8}), "asks for 8 GPUs but a node of pool 'gpu' has 4"),
    ("unknown pool", service(gpu_pool="nope"), "haai:inference[0].gpu_pool: unknown pool 'nope'"),
    ("duplicate service", stack(inference=[{"name": "api", "image": IMAGE}, {"name": "api", "image": IMAGE}]),
     "haai:inference[1].name: duplicate name 'api' (also at [0])"),
    ("limit below request", service(resources={"cpu": "2", "cpu_limit": "1"}), "cpu_limit 1 is below the cpu request 2"),
    ("preStop over grace", service(pre_stop_sleep_seconds=120, termination_grace_period_seconds=60),
     "pre_stop_sleep_seconds (120) must be shorter than termination_grace_period_seconds (60)"),
    ("HPA max below min", service(autoscaling={"min_replicas": 5, "max_replicas": 2}),
     "autoscaling.max_replicas (2) is below the minimum (5)"),
    ("HPA without a signal", service(autoscaling={"target_cpu_utilization": None}),
     "set target_cpu_utilization or metric: the autoscaler needs a signal"),
    ("PDB both ways", service(disruption={"max_unavailable": 1, "min_available": 1}),
     "set exactly one of max_unavailable and min_available"),
    ("PDB bad percent", service(disruption={"max_unavailable": "150%"}), "must be a whole number >= 0 or a percentage"),
    ("secret-looking literal", service(env={"API_TOKEN": "abc"}), "API_TOKEN looks like a secret: move it to secret_env"),
    ("model load too short", service(model_load_seconds=5), "haai:inference[0].model_load_seconds: must be >= 10 (got 5)"),
    ("bad memory quantity", service(resources={"memory": "8 GB"}), "haai:inference[0].resources.memory"),
    ("two shards", redis(shards=2), "haai:redis.shards: must be >= 3 (got 2)"),
    ("no replicas in prod", stack(tier="prod", inference=None, redis={"enabled": True, "replicas_per_shard": 0}),
     "haai:redis.replicas_per_shard: must be >= 1 outside dev"),
    ("duplicate zones", redis(zones=["a", "a", "b"]), "zones must be distinct"),
    ("bad storage size", redis(storage_size="lots"), "haai:redis.storage_size"),
    ("bad balance schedule", redis(balance_schedule="hourly"), "must be a 5-field cron schedule"),
    ("redis without enabling", service(use_redis=True), "haai:inference[0].use_redis: needs redis.enabled: true"),
    ("eks without its section", with_pool({"backend": "eks", "zones": ["a", "b"], "instance_types": ["g5.xlarge"]}),
     "backend eks needs its `eks` section"),
    ("eks in one zone", with_pool({"backend": "eks", "zones": ["a"], "instance_types": ["g5.xlarge"],
                                   "eks": {"cluster_name": "c", "subnet_ids": ["s1", "s2"]}}),
     "backend eks needs at least 2 zones (got 1)"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal copy of the project: its program and descriptor, an empty stacks folder."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(PROJECT_ROOT / "__main__.py", root / "__main__.py")
    (root / "stacks").mkdir()
    return root


def render(project: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["render", "--project-dir", str(project), *args])


def test_the_corpus_is_large_and_every_case_is_distinct() -> None:
    assert len(CORPUS) >= 60
    assert len({case for case, _, _ in CORPUS}) == len(CORPUS)
    assert len({content for _, content, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("case", "content", "expected"), CORPUS, ids=[c for c, _, _ in CORPUS])
def test_broken_stack_file_exits_2_with_the_reason_and_writes_nothing(
    project: Path, tmp_path: Path, case: str, content: str | bytes, expected: str
) -> None:
    name = "bad" if case == "empty file" else "case"
    path = project / "stacks" / f"Pulumi.{name}.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    result = render(project, "--stack", name, "--out", str(out))
    assert result.exit_code == 2, (result.output, result.exception)
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    assert not out.exists(), "a failed render must write nothing"


def test_the_good_base_renders(project: Path, tmp_path: Path) -> None:
    (project / "stacks" / "Pulumi.case.yaml").write_text(stack())
    result = render(project, "--stack", "case", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    # namespace, default deny, prerequisites, the alert rules, 5 for the service
    assert len(list((tmp_path / "out").glob("*.yaml"))) == 9


def test_out_pointing_at_a_file_is_refused(project: Path, tmp_path: Path) -> None:
    (project / "stacks" / "Pulumi.case.yaml").write_text(stack())
    target = tmp_path / "file.yaml"
    target.write_text("keep me\n")
    result = render(project, "--stack", "case", "--out", str(target))
    assert result.exit_code == 2 and f"{target} is a file, not a folder" in result.output
    assert target.read_text() == "keep me\n"


def test_a_render_that_would_delete_most_manifests_is_refused_unless_pruned(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (project / "stacks" / "Pulumi.case.yaml").write_text(
        stack(inference=[{"name": n, "image": IMAGE} for n in ("a", "b", "c")]))
    assert render(project, "--stack", "case", "--out", str(out)).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    (project / "stacks" / "Pulumi.case.yaml").write_text(stack(inference=[{"name": "a", "image": IMAGE}]))
    refused = render(project, "--stack", "case", "--out", str(out))
    assert refused.exit_code == 2
    assert "this render would delete 10 of the 19 manifests" in refused.output and "--prune" in refused.output
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written, nothing deleted
    pruned = render(project, "--stack", "case", "--out", str(out), "--prune")
    assert pruned.exit_code == 0 and len(list(out.glob("*.yaml"))) == 9
    # Deleting up to half is a normal render (a service removed).
    (project / "stacks" / "Pulumi.case.yaml").write_text(
        stack(inference=[{"name": n, "image": IMAGE} for n in ("a", "b")]))
    assert render(project, "--stack", "case", "--out", str(out)).exit_code == 0
    (project / "stacks" / "Pulumi.case.yaml").write_text(stack(inference=[{"name": "a", "image": IMAGE}]))
    assert render(project, "--stack", "case", "--out", str(out)).exit_code == 0  # 5 of 14: not over half


def test_every_command_uses_the_same_error_path(project: Path) -> None:
    (project / "stacks" / "Pulumi.case.yaml").write_text("- a\n")
    for command in (["render"], ["check"], ["preflight"]):
        result = CliRunner().invoke(app, [*command, "--project-dir", str(project), "--stack", "case"])
        assert result.exit_code == 2, (command, result.output, result.exception)
        assert "must be a mapping with a `config:` key (got a list)" in result.output


# --- properties --------------------------------------------------------------------------------------

JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, width=32) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
CONFIG_KEYS = st.sampled_from([f"haai:{key}" for key in (
    "tier", "namespace", "inference", "gpu_pools", "redis", "kubernetes_version", "nvidia_device_plugin")])
CONFIGS = st.dictionaries(CONFIG_KEYS | st.text(max_size=10), JSON_LIKE, max_size=5)


def read_and_validate(data: bytes) -> Any:
    """The whole path a stack file takes: bytes -> checked config map -> validated StackConfig."""
    path = Path("Pulumi.fuzz.yaml")
    config = stack_config_of(parse_stack_text(data, path), path, "ha-ai-stack")
    raw = stack_file_config(config, "dev")
    # As the capture hands values to the program: structured values travel as JSON text.
    return validate_stack_config({k: json.loads(json.dumps(v)) for k, v in raw.items()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONFIGS)
def test_arbitrary_yaml_gives_a_config_or_the_one_error_type(config: dict[str, Any]) -> None:
    data = yaml.safe_dump({"config": config}).encode()
    try:
        assert read_and_validate(data).tier in ("dev", "staging", "prod")
    except ConfigError as error:
        assert str(error).strip() and "Traceback" not in str(error)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_give_a_mapping_or_the_one_error_type(data: bytes) -> None:
    try:
        assert isinstance(parse_stack_text(data, Path("Pulumi.fuzz.yaml")), dict)
    except StackFileError as error:
        assert str(error).startswith("Pulumi.fuzz.yaml: invalid stack file (1 problem):")


# --- the Python API: the same names, the same wording --------------------------------------------------

API_CASES: list[tuple[str, Any, str]] = [
    ("service name", lambda: InferenceService("Bad_Name", {"image": IMAGE}),
     "name: 'Bad_Name' is not a valid DNS-1035 label"),
    ("service name too long", lambda: InferenceService("a" * 70, {"image": IMAGE}),
     "name: 'aaaa"),
    ("service namespace", lambda: InferenceService("api", {"image": IMAGE, "namespace": "Team_A"}),
     "namespace: 'Team_A' is not a valid DNS label"),
    ("redis name too long", lambda: RedisCluster("r" * 43, {}), "is 43 characters; a DNS-1035 label has at most 42"),
    ("redis name plus zone", lambda: RedisCluster("r" * 40, {"zones": ["zone-a-longer", "b", "c"]}),
     "plus its longest zone makes a StatefulSet name of 54 characters; at most 52"),
    ("pool name", lambda: GpuNodePool("gpu", {"name": "GPU_A10G"}), "name: 'GPU_A10G' is not a valid DNS label"),
    ("stack name", lambda: HaAiStack("Bad Stack!", {"tier": "dev"}), "name: 'Bad Stack!' is not a valid label value"),
]


@pytest.mark.parametrize(("case", "build", "expected"), API_CASES, ids=[c for c, _, _ in API_CASES])
def test_api_names_are_checked_with_the_config_wording(case: str, build: Any, expected: str) -> None:
    with pytest.raises(ArgsError) as raised:
        run_components(build)
    assert expected in str(raised.value)
    component = case.split()[0]
    headline = {"service": "InferenceService", "redis": "RedisCluster", "pool": "GpuNodePool", "stack": "HaAiStack"}
    assert re.fullmatch(rf"invalid arguments for {headline[component]} '[^']+' \(1 problem\):",
                        str(raised.value).splitlines()[0])


def test_names_at_the_limit_pass() -> None:
    run_components(lambda: InferenceService("a" * 40, {"image": IMAGE}))
    run_components(lambda: RedisCluster("r" * 42, {"zones": ["z-a", "z-b", "z-c"]}))
    run_components(lambda: RedisCluster("r" * 40, {"zones": ["zone-a-long", "b", "c"]}))  # 52: just fits


def test_a_json_string_under_pulumi_up_is_a_config_error_not_a_traceback() -> None:
    from .conftest import run_stack_config

    with pytest.raises(ConfigError, match=r"haai:namespace: '\[oops' starts like a list or map but is not one"):
        run_stack_config({"tier": "dev", "namespace": "[oops"})


def test_duplicate_component_names_fail_like_the_engine() -> None:
    """In its own process: the SDK keeps a failed program's pending registrations on its event loop."""
    import subprocess
    import sys
    code = ("from ha_ai_stack_tools.capture import capture_program\n"
            "from ha_ai_stack import InferenceService\n"
            "def program():\n"
            f"    InferenceService('svc', {{'image': '{IMAGE}'}})\n"
            f"    InferenceService('svc', {{'image': '{IMAGE}'}})\n"
            "try:\n"
            "    capture_program(program, project='p', stack='s', config={})\n"
            "except Exception as error:\n"
            "    print(type(error).__name__, error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "DuplicateResourceError Duplicate resource URN" in result.stdout, result.stderr[-2000:]
    assert "haai:index:InferenceService::svc'; try giving it a unique name" in result.stdout


def test_secret_outputs_the_provider_marks_are_masked_in_exports() -> None:
    import pulumi_random as random

    from ha_ai_stack_tools.capture import SECRET_MASK, capture_program

    def program() -> None:
        password = random.RandomPassword("pw", length=16)
        pulumi.export("leaked", password.result)  # not wrapped in Output.secret by the program
        pulumi.export("plain", "visible")

    capture = capture_program(program, project="p", stack="s", config={})
    assert capture.exports == {"leaked": SECRET_MASK, "plain": "visible"}


def test_secure_config_under_the_real_language_host_is_the_same_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's language host hands config over in PULUMI_CONFIG and marks secrets in PULUMI_CONFIG_SECRET_KEYS."""
    from ha_ai_stack.config import read_pulumi_config

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"haai:tier": "dev", "haai:namespace": "team-a",
                                                    "aws:region": "us-east-1"}))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["haai:namespace", "aws:region"]))
    pulumi.runtime.set_all_config({}, [])
    with pytest.raises(ConfigError) as raised:
        read_pulumi_config()
    assert raised.value.problems == [
        "haai:namespace: stored as a secret (`secure:`), but ha-ai-stack's config carries no secrets: keep the secret "
        "in a Kubernetes Secret and reference it (secret_env, or a declared prerequisite), so pods read it through "
        "secretKeyRef and it never passes through the program"]
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["aws:region"]))  # other namespaces' secrets are fine
    assert read_pulumi_config()["namespace"] == "team-a"
