"""Generated stack configs: every valid one renders schema-valid objects; one planted fault is named by its path.

The generator builds configs that are valid by construction (no cross-section conflicts). Half the
examples then get exactly one fault from a table (a path and a bad value); the config error must name
that path. A validator that rejected everything, or a fault that slipped through, fails the test.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ha_ai_stack.config import ConfigError, validate_stack_config
from ha_ai_stack_tools.render import manifests

from .conftest import run_stack_config
from .schemas import validate_object

ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
IMAGES = ["ghcr.io/acme/m:1.0", "registry:5000/m:2", "ghcr.io/acme/m@sha256:" + "b" * 64]
GPU_METRIC = {"type": "pods", "name": "DCGM_FI_DEV_GPU_UTIL", "target_average_value": "70"}


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    tier = draw(st.sampled_from(["dev", "staging", "prod"]))
    config: dict[str, Any] = {"tier": tier, "namespace": draw(st.sampled_from(["ai-serving", "ml"])),
                              "kubernetes_version": draw(st.sampled_from(["1.30", "1.33", "1.37"])),
                              "metrics": {"monitors": draw(st.booleans())}}
    has_pool = draw(st.booleans())
    if has_pool:
        config["gpu_pools"] = [{"name": "gpu-a", "gpus_per_node": draw(st.sampled_from([1, 4, 8])),
                                "zones": draw(st.sampled_from([[], ZONES]))}]
    redis = draw(st.booleans())
    if redis:
        zones = draw(st.sampled_from([[], ZONES]))
        # Over 3 zones, 4 shards would put 2 of 4 masters in one zone: no voting majority after its loss.
        config["redis"] = {"enabled": True, "shards": draw(st.sampled_from([3, 5, 6] if zones else [3, 4, 6])),
                           "replicas_per_shard": draw(st.sampled_from([0, 1] if tier == "dev" else [1])),
                           "zones": zones, "metrics_exporter": draw(st.booleans())}
        if tier == "prod" or draw(st.booleans()):  # backups are required in prod, optional elsewhere
            config["redis"]["backup"] = {"bucket": "acme-redis-backups", "retention": draw(st.integers(1, 30))}
            config["redis"]["service_account_annotations"] = {
                "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/backup"}
    services = []
    for name in draw(st.lists(st.sampled_from(["svc", "api", "chat"]), max_size=3, unique=True)):
        replicas = draw(st.integers(1, 5))
        service: dict[str, Any] = {
            "name": name, "image": draw(st.sampled_from(IMAGES)),
            "server": draw(st.sampled_from(["triton", "vllm", "custom"])), "replicas": replicas,
            "resources": {"gpus": draw(st.sampled_from([0, 1])) if has_pool else 0},
            "use_redis": redis and draw(st.booleans()),
            "anti_affinity": draw(st.sampled_from(["required", "preferred"])),
            "zone_spread": draw(st.sampled_from(["required", "preferred"])),
            "max_surge": draw(st.integers(1, 3))}
        if draw(st.booleans()):
            service["autoscaling"] = {"max_replicas": replicas + draw(st.integers(0, 6)),
                                      **({"metric": GPU_METRIC} if draw(st.booleans()) else {})}
        services.append(service)
    config["inference"] = services
    return config


def first_service(**fields: Any) -> Any:
    """Plant ``fields`` in the first service; False (not applicable) when there is none."""
    def plant(config: dict[str, Any]) -> bool:
        if not config["inference"]:
            return False
        config["inference"][0].update(fields)
        return True
    return plant


# One fault each: the key path it sits at (as the error names it), and how to plant it in a valid config.
FAULTS: list[tuple[str, Any]] = [
    ("haai:tier", lambda c: c.update(tier="qa")),
    ("haai:namespace", lambda c: c.update(namespace="Bad_NS")),
    ("haai:kubernetes_version", lambda c: c.update(kubernetes_version="1.20")),
    ("haai:inference[0].replicas", first_service(replicas=0)),
    ("haai:inference[0].image", first_service(image="ghcr.io/acme/m:latest")),
    ("haai:inference[0].name", first_service(name="Bad_Name")),
    ("haai:inference[0].server", first_service(server="tgi")),
    ("haai:inference[0].port", first_service(port=70000)),
    ("haai:inference[0].typo", first_service(typo=1)),
    ("haai:inference[0].env", first_service(env={"API_TOKEN": "x"})),
    ("haai:inference[0].max_surge", first_service(max_surge=0)),
    ("haai:redis.shards", lambda c: c.setdefault("redis", {"enabled": True}).update(shards=2)),
    ("haai:redis.storage_size", lambda c: c.setdefault("redis", {"enabled": True}).update(storage_size="lots")),
    ("haai:gpu_pools[0].name", lambda c: c.update(gpu_pools=[{"name": "GPU_A", "gpus_per_node": 1}])),
    ("haai:prerequisites[0].reason", lambda c: c.update(prerequisites=[{"kind": "Secret", "name": "s"}])),
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_configs(), st.one_of(st.none(), st.sampled_from(FAULTS)))
def test_valid_configs_render_and_a_planted_fault_is_named(config: dict[str, Any], fault: Any) -> None:
    if fault is None:
        event("valid: rendered")
        validated = validate_stack_config(copy.deepcopy(config))  # must not raise: valid by construction
        objects = manifests(run_stack_config(config))
        assert len([m for m in objects if m["kind"] == "Deployment"]) == len(validated.inference)
        members = (validated.redis.shards * (validated.redis.replicas_per_shard + 1)) if validated.redis.enabled else 0
        assert sum(m["spec"]["replicas"] for m in objects if m["kind"] == "StatefulSet") == members
        for manifest in objects:
            validate_object(manifest, validated.kubernetes_version)
        return
    path, plant = fault
    broken = copy.deepcopy(config)
    if plant(broken) is False:  # the fault needs a service and there is none
        event("fault not applicable")
        return
    event(f"fault: {path}")
    try:
        validate_stack_config(broken)
    except ConfigError as error:
        assert any(problem.startswith(path) for problem in error.problems), (path, error.problems)
    else:
        raise AssertionError(f"the planted fault at {path} was accepted")
