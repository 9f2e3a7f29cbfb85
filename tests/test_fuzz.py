"""Generated stack configs either render schema-valid objects or raise the config error; nothing else."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ha_ai_stack.config import ConfigError, validate_stack_config
from ha_ai_stack_tools.render import manifests

from .schemas import validate_object

from .conftest import run_stack_config

MISSING = object()


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, or the key left out (MISSING), so tier defaults are exercised too."""
    return st.one_of(st.just(MISSING), strategy)


def fixed_dict(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not MISSING})


def mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid value, sometimes an invalid one, sometimes the key left out."""
    return maybe(st.sampled_from(valid * 8 + invalid))


quantities = st.sampled_from(["1", "500m", "2", "8Gi", "512Mi"] * 8 + ["0", "lots", "-1"])
pools = fixed_dict(
    name=st.sampled_from(["gpu-a"] * 8 + ["gpu-b", "Bad_Pool"]),
    gpus_per_node=mostly([None, 1, 4, 8], [0]),
    zones=maybe(st.lists(st.sampled_from(["us-east-1a", "us-east-1b", "us-east-1c"]), max_size=3, unique=True)),
    gpu_model=maybe(st.sampled_from(["A10G", "H100"])),
)
services = fixed_dict(
    name=st.sampled_from(["svc", "api", "chat"] * 8 + ["Bad_Name", "x" * 45]),
    image=st.sampled_from(["ghcr.io/acme/m:1.0", "registry:5000/m:2", "ghcr.io/acme/m@sha256:" + "b" * 64] * 8
                          + ["ghcr.io/acme/m:latest", "ghcr.io/acme/m"]),
    server=mostly(["triton", "vllm", "custom"], ["tgi"]),
    port=mostly([None, 8080, 9000], [0, 70000]),
    replicas=mostly([1, 2, 3, 5], [0, -1]),
    gpu_pool=mostly([None, "gpu-a"], ["gpu-b", "missing"]),
    use_redis=mostly([False, True], []),
    anti_affinity=mostly(["required", "preferred"], ["maybe"]),
    zone_spread=mostly(["required", "preferred"], ["always"]),
    model_load_seconds=mostly([60, 600, 3600], [0, 20000]),
    pre_stop_sleep_seconds=mostly([0, 5, 15], [200, -1]),
    termination_grace_period_seconds=mostly([30, 120, 300], [0]),
    resources=maybe(fixed_dict(cpu=maybe(quantities), memory=maybe(quantities), memory_limit=maybe(quantities),
                               gpus=mostly([0, 1, 2], [-1, 10]))),
    autoscaling=maybe(st.one_of(st.none(), fixed_dict(
        min_replicas=mostly([1, 3], [0]), max_replicas=mostly([6, 12], [0, 1]),
        target_cpu_utilization=mostly([50, 70], [None, 101]),
        metric=maybe(fixed_dict(type=st.sampled_from(["pods", "external"] * 8 + ["object"]),
                                name=st.just("gpu_util"), target_average_value=quantities))))),
    disruption=maybe(fixed_dict(max_unavailable=mostly([1, "25%"], ["half", -1, None]),
                                min_available=maybe(st.sampled_from([None] * 8 + [2, "50%"])))),
    env=maybe(st.dictionaries(st.sampled_from(["HF_HOME", "MODE"] * 8 + ["API_TOKEN", "1BAD"]), st.just("x"),
                              max_size=2)),
    typo=st.sampled_from([MISSING] * 15 + ["oops"]),
)
redis_sections = fixed_dict(
    enabled=mostly([True, False], ["yes"]),
    shards=mostly([3, 4, 6], [2]),
    replicas_per_shard=mostly([0, 1, 2], [-1, 6]),
    zones=maybe(st.lists(st.sampled_from(["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]),
                         max_size=4, unique=True)),
    storage_size=maybe(quantities),
    min_replicas_to_write=mostly([0, 1], [3]),
    metrics_exporter=maybe(st.booleans()),
    node_timeout_ms=mostly([2000, 3000, 15000], [100]),
)
stack_configs = fixed_dict(
    tier=st.sampled_from(["dev", "staging", "prod"] * 8 + ["qa"]),
    kubernetes_version=mostly(["1.30", "1.33", "1.37"], ["1.20", "2.1"]),
    namespace=mostly(["ai-serving", "ml"], ["Bad_NS"]),
    gpu_pools=maybe(st.lists(pools, max_size=2)),
    inference=maybe(st.lists(services, max_size=3)),
    redis=maybe(redis_sections),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_configs)
def test_generated_config_renders_valid_objects_or_raises_config_error(raw: dict[str, Any]) -> None:
    try:
        config = validate_stack_config(raw)
    except ConfigError as error:
        event("config error")
        assert error.problems and all(p.startswith("haai:") for p in error.problems)
        return
    event("rendered")
    capture = run_stack_config(raw)
    objects = manifests(capture)
    assert len([m for m in objects if m["kind"] == "Deployment"]) == len(config.inference)
    members = config.redis.shards * (config.redis.replicas_per_shard + 1) if config.redis.enabled else 0
    assert sum(m["spec"]["replicas"] for m in objects if m["kind"] == "StatefulSet") == members
    for manifest in objects:
        validate_object(manifest, config.kubernetes_version)
