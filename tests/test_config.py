"""The stack config: tier defaults, and one error that lists every bad key with its path and reason."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from ha_ai_stack_tools.capture import Capture
from ha_ai_stack.config import ConfigError, validate_stack_config
from ha_ai_stack.errors import problems_of, reason

from .conftest import run_stack_config

IMAGE = "ghcr.io/acme/model:1.0.0"


def service(**overrides: Any) -> dict[str, Any]:
    return {"name": "svc", "image": IMAGE, **overrides}


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_stack_config(raw)
    return caught.value.problems


def test_issue_example_message_is_exact() -> None:
    raw = {"tier": "prod", "inference": [service(), service(name="second", replicas=0)]}
    assert problems(raw) == ["haai:inference[1].replicas: must be >= 1 (got 0)"]


def test_every_problem_is_listed_in_one_error() -> None:
    raw = {
        "tier": "prod",
        "namespace": "Bad_NS",
        "zebra": "blue",
        "inference": [
            service(replicas=0, imag="typo"),
            service(name="b", image="ghcr.io/acme/model:latest", resources={"cpu": "lots"}),
            service(name="c", image="ghcr.io/acme/model", anti_affinity="sometimes"),
        ],
    }
    with pytest.raises(ConfigError) as caught:
        validate_stack_config(raw)
    assert caught.value.problems == [
        "haai:namespace: 'Bad_NS' is not a valid DNS label: lowercase letters, digits and '-', starting and "
        "ending with a letter or digit",
        "haai:inference[0].replicas: must be >= 1 (got 0)",
        "haai:inference[0].imag: unknown key (did you mean 'image'?)",
        "haai:inference[1].image: image 'ghcr.io/acme/model:latest' uses the 'latest' tag: pin a version or a digest",
        "haai:inference[1].resources.cpu: 'lots' is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 8Gi)",
        "haai:inference[2].image: image 'ghcr.io/acme/model' has no tag: pin a version "
        "(e.g. ghcr.io/acme/model:1.2.3) or a digest",
        "haai:inference[2].anti_affinity: must be 'required' or 'preferred' (got \"sometimes\")",
        "haai:zebra: unknown key (allowed: tier, kubernetes_version, namespace, inference, gpu_pools, redis, "
        "nvidia_device_plugin, metrics, cluster, priority_classes, prerequisites)",
    ]
    assert str(caught.value).startswith("invalid stack config (8 problems):\n  haai:namespace:")


def test_missing_tier_and_image_are_named() -> None:
    assert problems({"inference": [{"name": "x"}]}) == [
        "haai:tier: required key is missing",
        "haai:inference[0].image: required key is missing",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"tier": "qa"}, "haai:tier: must be 'dev', 'staging' or 'prod' (got \"qa\")"),
        ({"tier": "prod", "kubernetes_version": "1.20"},
         "haai:kubernetes_version: must be a supported minor version from 1.30 to 1.37 (got '1.20')"),
        ({"tier": "prod", "inference": [service(autoscaling={"min_replicas": 5, "max_replicas": 2})]},
         "haai:inference[0]: autoscaling.max_replicas (2) is below the minimum (5)"),
        ({"tier": "prod", "inference": [service(autoscaling={"target_cpu_utilization": None})]},
         "haai:inference[0].autoscaling: set target_cpu_utilization or metric: the autoscaler needs a signal"),
        ({"tier": "prod", "inference": [service(resources={"memory": "8Gi", "memory_limit": "4Gi"})]},
         "haai:inference[0].resources: memory_limit 4Gi is below the memory request 8Gi"),
        ({"tier": "prod", "inference": [service(pre_stop_sleep_seconds=60, termination_grace_period_seconds=30)]},
         "haai:inference[0]: pre_stop_sleep_seconds (60) must be shorter than termination_grace_period_seconds (30)"),
        ({"tier": "prod", "inference": [service(env={"DB_PASSWORD": "hunter2"})]},
         "haai:inference[0].env: DB_PASSWORD looks like a secret: move it to secret_env so it comes from a Secret"),
        ({"tier": "prod", "inference": [service(disruption={"max_unavailable": 1, "min_available": 2})]},
         "haai:inference[0].disruption: set exactly one of max_unavailable and min_available"),
        ({"tier": "prod", "inference": [service(disruption={"max_unavailable": "half"})]},
         "haai:inference[0].disruption.max_unavailable: must be a whole number >= 0 or a percentage like '25%' "
         "(got 'half')"),
        ({"tier": "prod", "inference": [service(), service()]},
         "haai:inference[1].name: duplicate name 'svc' (also at [0])"),
        ({"tier": "prod", "inference": [service(gpu_pool="nope")]},
         "haai:inference[0].gpu_pool: unknown pool 'nope' (pools: none defined)"),
        ({"tier": "prod", "gpu_pools": [{"name": "a", "gpus_per_node": 4}],
          "inference": [service(resources={"gpus": 8})]},
         "haai:inference[0].resources.gpus: asks for 8 GPUs but a node of pool 'a' has 4"),
        ({"tier": "prod", "gpu_pools": [{"name": "a"}, {"name": "b"}], "inference": [service(resources={"gpus": 1})]},
         "haai:inference[0].gpu_pool: needed: the service asks for 1 GPUs and there are 2 pools to choose from"),
        ({"tier": "prod", "redis": {"shards": 2}}, "haai:redis.shards: must be >= 3 (got 2)"),
        ({"tier": "prod", "redis": {"replicas_per_shard": 2, "zones": ["a", "b"]}},
         "haai:redis: replicas_per_shard 2 needs at least 3 zones so that no two members of a shard share a zone "
         "(got 2); add zones or list none to spread by node"),
        ({"tier": "prod", "redis": {"shards": 3, "zones": ["a", "b"]}},
         "haai:redis: with 2 zones one zone would hold 2 of 3 masters: losing it would leave 1, not a majority, "
         "so no failover could win a vote; use more zones or another shard count"),
        ({"tier": "prod", "redis": {"enabled": True}},
         "haai:redis.backup: needed in prod (tier prod): backups to S3 are on in prod; set backup.bucket"),
        ({"tier": "staging", "redis": {"backup": {"bucket": "Bad_Bucket"}}},
         "haai:redis.backup.bucket: must be an S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens "
         "(got 'Bad_Bucket')"),
        ({"tier": "staging", "redis": {"restore_from": "s3://acme/redis-backups/redis/2026-11-26"}},
         "haai:redis.restore_from: must name one backup: s3://<bucket>/<prefix>/<cluster>/<YYYYMMDDTHHMMSSZ> "
         "(got 's3://acme/redis-backups/redis/2026-11-26')"),
        ({"tier": "prod", "redis": {"enabled": True, "replicas_per_shard": 0, "backup": {"bucket": "acme-b"},
                                     "service_account_annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/b"}}},
         "haai:redis.replicas_per_shard: must be >= 1 outside dev (tier prod): a shard without a replica is lost "
         "with its node"),
        ({"tier": "prod", "redis": {"min_replicas_to_write": 2}},
         "haai:redis: min_replicas_to_write (2) exceeds replicas_per_shard (1): every write would be refused"),
        ({"tier": "prod", "redis": {"image": "redis"}},
         "haai:redis.image: image 'redis' has no tag: pin a version (e.g. redis:1.2.3) or a digest"),
        ({"tier": "prod", "redis": {"zones": ["a", "a", "b"]}},
         "haai:redis.zones: zones must be distinct (got ['a', 'a', 'b'])"),
        ({"tier": "prod", "redis": {"storage_size": "lots"}},
         "haai:redis.storage_size: 'lots' is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 8Gi)"),
    ],
)
def test_bad_values_have_exact_messages(raw: dict[str, Any], expected: str) -> None:
    assert problems(raw) == [expected]


# Written here, not read from the code: what each tier gives a service and Redis when a stack leaves them out.
TIER_EXPECTATIONS = {
    "dev": ({"replicas": 1, "anti_affinity": "preferred", "zone_spread": "preferred"},
            {"replicas_per_shard": 0, "storage_size": "1Gi"}),
    "staging": ({"replicas": 2, "anti_affinity": "required", "zone_spread": "required"},
                {"replicas_per_shard": 1, "storage_size": "10Gi"}),
    "prod": ({"replicas": 3, "anti_affinity": "required", "zone_spread": "required"},
             {"replicas_per_shard": 1, "storage_size": "20Gi"}),
}


@pytest.mark.parametrize("tier", ["dev", "staging", "prod"])
def test_tier_defaults_fill_missing_keys(tier: str) -> None:
    config = validate_stack_config({"tier": tier, "inference": [service()]})
    service_expected, redis_expected = TIER_EXPECTATIONS[tier]
    assert {k: getattr(config.inference[0], k) for k in service_expected} == service_expected
    assert {k: getattr(config.redis, k) for k in redis_expected} == redis_expected


def test_explicit_value_beats_tier_default() -> None:
    config = validate_stack_config({"tier": "dev", "inference": [service(replicas=4)]})
    assert config.inference[0].replicas == 4


def test_tier_defaults_to_the_stack_name_when_it_is_a_tier() -> None:
    capture = run_stack_config({"inference": [service()]}, stack="staging")
    assert capture.exports["tier"] == "staging"
    deployment = next(r for r in capture.resources if r.type_token == "kubernetes:apps/v1:Deployment")
    assert deployment.inputs["spec"]["replicas"] == 2  # staging's default


def test_tier_is_required_when_the_stack_name_is_not_a_tier() -> None:
    with pytest.raises(ConfigError, match="haai:tier: required key is missing"):
        run_stack_config({"inference": [service()]}, stack="sandbox")


def test_bad_config_registers_nothing() -> None:
    sink = Capture(project="ha-ai-stack", stack="test", preview=False)
    with pytest.raises(ConfigError):
        run_stack_config({"tier": "prod", "inference": [service(replicas=0)]}, sink=sink)
    assert sink.resources == []


def test_readme_generated_tables_are_current() -> None:
    from pathlib import Path

    from ha_ai_stack_tools.docs import with_generated_tables

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert readme == with_generated_tables(readme, root), "run: python -m ha_ai_stack_tools.docs --write-readme README.md"


class Bounded(BaseModel):
    at_least: int = Field(default=1, ge=1)
    above: int = Field(default=1, gt=0)
    at_most: int = Field(default=1, le=1)
    below: int = Field(default=1, lt=2)


def test_every_kind_of_bound_reads_as_its_comparison() -> None:
    """Each pydantic bound (a consumer's own Args may use any of them) becomes 'must be <op> <limit>'."""
    with pytest.raises(ValidationError) as caught:
        Bounded(at_least=0, above=0, at_most=2, below=2)
    assert problems_of(caught.value, Bounded) == [
        ("at_least", "must be >= 1 (got 0)"), ("above", "must be > 0 (got 0)"),
        ("at_most", "must be <= 1 (got 2)"), ("below", "must be < 2 (got 2)")]
    Bounded(at_least=1, above=1, at_most=1, below=1)  # each limit itself, or just inside it, passes


def test_an_unknown_key_inside_an_optional_section_gets_a_hint_from_that_section() -> None:
    raw = {"tier": "dev", "inference": [service(autoscaling={"max_replica": 4})]}
    assert problems(raw) == ["haai:inference[0].autoscaling.max_replica: unknown key (did you mean 'max_replicas'?)"]


def test_an_error_without_context_still_reads_as_its_message() -> None:
    """Custom validators may raise errors that carry no ``ctx``; the reason is then pydantic's message."""
    assert reason({"type": "value_error", "loc": ("name",), "msg": "Value error, taken", "input": "x"}, Bounded) == \
        "Value error, taken"
    assert reason({"type": "string_type", "loc": ("name",), "msg": "Input should be a valid string", "input": 3},
                  Bounded) == "must be a valid string (got 3)"
