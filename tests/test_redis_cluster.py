"""RedisCluster under Pulumi's mock runtime, in update and preview mode, and its topology planner."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pytest

from ha_ai_stack import InferenceService, InferenceServiceArgs, RedisCluster, RedisClusterArgs
from ha_ai_stack_tools.capture import SECRET_MASK, Capture
from ha_ai_stack.errors import ArgsError
from ha_ai_stack.redis_cluster import plan_members
from ha_ai_stack.redis_cluster.build import short_hash

from .conftest import objects_of, only, record_custom_timeouts, run_components

ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]


def build(preview: bool, **fields: Any) -> Capture:
    return run_components(lambda: RedisCluster("redis", RedisClusterArgs(namespace="data", **fields)), preview=preview)


@pytest.mark.parametrize(("shards", "replicas", "zones"), [(3, 1, 3), (3, 2, 3), (6, 1, 3), (5, 1, 3), (5, 2, 4), (4, 1, 4)])
def test_plan_keeps_shard_members_apart_and_masters_in_minority(shards: int, replicas: int, zones: int) -> None:
    spec = RedisClusterArgs(shards=shards, replicas_per_shard=replicas, zones=[f"z{i}" for i in range(zones)])
    members = plan_members("redis", spec)
    assert len(members) == shards * (replicas + 1)
    for shard in range(shards):
        shard_zones = [m.zone for m in members if m.shard == shard]
        assert len(set(shard_zones)) == len(shard_zones), f"shard {shard} shares a zone"
    masters = Counter(m.zone for m in members if m.role == "master")
    assert max(masters.values()) * 2 < shards  # a zone loss leaves a majority of masters to vote
    assert len({m.pod for m in members}) == len(members)


def test_the_topology_names_each_member_by_the_dns_name_its_statefulset_gives_it() -> None:
    capture = build(False, zones=ZONES)
    [config_map] = objects_of(capture, "ConfigMap")
    host = "{}.redis-headless.data.svc.cluster.local"
    assert config_map["data"]["topology.txt"] == "\n".join([
        "# shard role hostname (read by bootstrap.sh)",
        f"0 master {host.format('redis-us-east-1a-0')}", f"0 replica {host.format('redis-us-east-1b-0')}",
        f"1 master {host.format('redis-us-east-1b-1')}", f"1 replica {host.format('redis-us-east-1c-0')}",
        f"2 master {host.format('redis-us-east-1c-1')}", f"2 replica {host.format('redis-us-east-1a-1')}"]) + "\n"
    # The cluster DNS serves <pod>.<serviceName>.<namespace>.svc.cluster.local for each StatefulSet pod, while a
    # headless Service of that name exists.
    served = {f"{sts['metadata']['name']}-{ordinal}.{sts['spec']['serviceName']}.data.svc.cluster.local"
              for sts in objects_of(capture, "StatefulSet") for ordinal in range(sts["spec"]["replicas"])}
    headless = {s["metadata"]["name"] for s in objects_of(capture, "Service") if s["spec"].get("clusterIP") == "None"}
    assert {sts["spec"]["serviceName"] for sts in objects_of(capture, "StatefulSet")} <= headless
    hosts = [line.split()[2] for line in config_map["data"]["topology.txt"].splitlines()[1:]]
    assert sorted(hosts) == sorted(served)


def test_short_hash_is_of_canonical_json() -> None:
    canonical = hashlib.sha256(b'{"a": [2, 3], "b": 1}').hexdigest()[:10]  # keys sorted, json's default spacing
    assert short_hash({"b": 1, "a": [2, 3]}) == short_hash({"a": [2, 3], "b": 1}) == canonical
    assert short_hash({"a": [3, 2], "b": 1}) != short_hash({"a": [2, 3], "b": 1})


@pytest.mark.parametrize(("shards", "zones", "left"), [(4, 2, 2), (4, 3, 2), (6, 2, 3)])
def test_zone_counts_whose_loss_leaves_no_voting_majority_are_refused(shards: int, zones: int, left: int) -> None:
    with pytest.raises(ArgsError) as error:
        RedisClusterArgs(shards=shards, replicas_per_shard=1, zones=[f"z{i}" for i in range(zones)])
    assert f"losing it would leave {left}, not a majority" in str(error.value)


def test_objects_and_their_ha_settings(preview: bool) -> None:
    capture = build(preview, zones=ZONES, storage_size="50Gi", storage_class="gp3")
    statefulsets = objects_of(capture, "StatefulSet")
    assert [s["metadata"]["name"] for s in statefulsets] == [f"redis-{z}" for z in ZONES]
    for sts in statefulsets:
        spec = sts["spec"]
        assert spec["podManagementPolicy"] == "Parallel" and spec["replicas"] == 2
        assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
        claim = spec["volumeClaimTemplates"][0]["spec"]
        assert claim["resources"]["requests"]["storage"] == "50Gi" and claim["storageClassName"] == "gp3"
        zone = sts["metadata"]["name"].removeprefix("redis-")
        terms = spec["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [zone]
        assert "annotations" not in sts["metadata"]  # no skipAwait: the engine awaits every rollout
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["terminationGracePeriodSeconds"] == 90
        assert pod["volumes"][0]["configMap"]["name"] == only(capture, "ConfigMap")["metadata"]["name"]
        redis = pod["containers"][0]
        assert redis["lifecycle"]["preStop"]["exec"]["command"] == ["sh", "/etc/redis/pre-stop.sh"]
        assert {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}} \
            in redis["env"]
        assert all("value" not in e or "password" not in e["value"].lower() for e in redis["env"])
    headless = next(s for s in objects_of(capture, "Service") if s["metadata"]["name"] == "redis-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    pdb = only(capture, "PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": {
        "app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "redis"}}}


def test_password_is_generated_secret_and_never_in_the_config_map(preview: bool) -> None:
    capture = build(preview, zones=ZONES)
    [password] = capture.of_type("random:index/randomPassword:RandomPassword")
    assert password.inputs["length"] == 32
    secret = only(capture, "Secret")
    assert secret["stringData"] == (SECRET_MASK if preview else {"password": SECRET_MASK})
    data = only(capture, "ConfigMap")["data"]
    assert "requirepass" not in data["redis.conf"] and "masterauth" not in data["redis.conf"]
    assert "mock-" not in repr(capture.resources)


def test_redis_conf_settings() -> None:
    conf = only(build(False, zones=ZONES, node_timeout_ms=4000, require_full_coverage=True,
                      min_replicas_to_write=1, memory="4Gi", maxmemory_percent=50), "ConfigMap")["data"]["redis.conf"]
    lines = set(conf.splitlines())
    for expected in ("cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 4000",
                     "appendonly yes", "appendfsync everysec", "aof-use-rdb-preamble yes",
                     "cluster-require-full-coverage yes", "cluster-allow-reads-when-down no",
                     "cluster-preferred-endpoint-type hostname", "min-replicas-to-write 1",
                     f"maxmemory {2 * 1024 ** 3}", "maxmemory-policy noeviction"):
        assert expected in lines, expected
    assert any(line.startswith("save ") for line in lines)


def test_network_policy_ports() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in objects_of(build(False, zones=ZONES), "NetworkPolicy")}
    members = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "redis"}}}
    clients = {"podSelector": {"matchLabels": {"ha-ai-stack/redis-client": "true"}}}
    assert policies["redis"]["ingress"] == [
        {"from": [members, clients], "ports": [{"port": 6379, "protocol": "TCP"}]},
        {"from": [members], "ports": [{"port": 16379, "protocol": "TCP"}]},
    ]


def jobs(capture: Any) -> dict[str, Any]:
    return {r.name: r for r in capture.of_type("kubernetes:batch/v1:Job")}


def test_bootstrap_job_name_follows_the_topology(preview: bool) -> None:
    def job_name(**fields: Any) -> str:
        return jobs(build(preview, **fields))["redis-bootstrap"].inputs["metadata"]["name"]

    same = job_name(zones=ZONES)
    assert same.startswith("redis-bootstrap-")
    assert same == job_name(zones=ZONES, memory="4Gi")  # not a topology change
    assert same != job_name(zones=ZONES, shards=6)
    capture = build(preview, zones=ZONES)
    statefulsets = {r.urn for r in capture.of_type("kubernetes:apps/v1:StatefulSet")}
    assert statefulsets <= set(jobs(capture)["redis-bootstrap"].dependencies)


def test_zones_roll_one_after_another_and_every_await_outlasts_its_work(preview: bool) -> None:
    capture = build(preview, zones=ZONES, handover_timeout_seconds=60, member_ready_timeout_seconds=600)
    statefulsets = capture.of_type("kubernetes:apps/v1:StatefulSet")
    [config_map] = capture.of_type("kubernetes:core/v1:ConfigMap")
    assert [r.name for r in statefulsets] == [f"redis-{z}-sts" for z in ZONES]
    # Each zone waits for the previous zone's rollout, so the engine never rolls two zones at once.
    assert config_map.urn in statefulsets[0].dependencies
    for earlier, later in zip(statefulsets, statefulsets[1:]):
        assert earlier.urn in later.dependencies
        assert later.urn not in earlier.dependencies
    # 2 members per zone x (grace 90 s + ready 600 s) + 300 s slack = 1680 s, written out here.
    templates = objects_of(capture, "StatefulSet")
    startup = templates[0]["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 600
    job_specs = {j["metadata"]["name"].rsplit("-", 1)[0]: j["spec"] for j in objects_of(capture, "Job")}
    assert job_specs["redis-bootstrap"]["activeDeadlineSeconds"] == 1200
    assert {"name": "BOOTSTRAP_TIMEOUT", "value": "900"} in \
        job_specs["redis-bootstrap"]["template"]["spec"]["containers"][0]["env"]
    assert job_specs["redis-balance"]["activeDeadlineSeconds"] == 900


@pytest.mark.parametrize(("ready_seconds", "failures"), [(60, 12), (600, 120), (601, 121), (605, 121), (7200, 1440)])
def test_the_startup_probe_gives_a_member_at_least_its_ready_timeout(ready_seconds: int, failures: int) -> None:
    """The kubelet restarts a member after periodSeconds x failureThreshold of failed startup checks: never
    sooner than member_ready_timeout_seconds, and as a whole number (the API server takes no fraction)."""
    [sts] = objects_of(build(False, member_ready_timeout_seconds=ready_seconds), "StatefulSet")[:1]
    startup = sts["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert (startup["periodSeconds"], startup["failureThreshold"]) == (5, failures)
    assert type(startup["failureThreshold"]) is int


def test_custom_timeouts_follow_the_rollout_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = record_custom_timeouts(monkeypatch)
    build(False, zones=ZONES, handover_timeout_seconds=60, member_ready_timeout_seconds=600)
    assert seen["redis-us-east-1a-sts"] == ("1680s", "1680s")  # 2 x (90 + 600) + 300
    assert seen["redis-bootstrap"] == ("1200s", "1200s")  # BOOTSTRAP_TIMEOUT 900 + 300
    assert seen["redis-balance"] == ("900s", "900s")  # BALANCE_TIMEOUT 600 + 300
    assert "redis-restore" not in seen
    build(False, zones=ZONES, restore_from="s3://acme-redis-backups/prod/redis/20261126T010344Z")
    assert seen["redis-restore"] == ("3600s", "3600s")  # the restore Job's own deadline: downloads of every shard


def test_a_config_change_is_a_new_config_map_and_rolls_the_members(preview: bool) -> None:
    def names(**fields: Any) -> tuple[str, str, str]:
        capture = build(preview, zones=ZONES, **fields)
        config_map = only(capture, "ConfigMap")["metadata"]["name"]
        volume = objects_of(capture, "StatefulSet")[0]["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
        return config_map, volume, jobs(capture)["redis-balance"].inputs["metadata"]["name"]

    before = names()
    assert before[0] == before[1] and before[0].startswith("redis-config-")
    after = names(node_timeout_ms=4000)  # redis.conf changes
    assert after[0] == after[1] and after[0] != before[0]
    assert after[2] != before[2], "a new pod template runs a new balance Job"
    assert names(storage_size="30Gi")[0] == before[0]  # not in the ConfigMap


def test_balance_runs_after_the_rollout_and_on_a_schedule(preview: bool) -> None:
    capture = build(preview, zones=ZONES)
    balance = jobs(capture)["redis-balance"]
    statefulsets = {r.urn for r in capture.of_type("kubernetes:apps/v1:StatefulSet")}
    assert statefulsets | {jobs(capture)["redis-bootstrap"].urn} <= set(balance.dependencies)
    container = balance.inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sh", "/etc/redis/balance.sh"]
    [cron] = objects_of(capture, "CronJob")
    assert cron["spec"]["schedule"] == "*/10 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"] == container["command"]
    assert objects_of(build(preview, zones=ZONES, balance_schedule=None), "CronJob") == []
    labels = balance.inputs["spec"]["template"]["metadata"]["labels"]
    admin = next(p for p in objects_of(capture, "NetworkPolicy") if p["metadata"]["name"] == "redis-bootstrap")
    assert admin["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def test_without_zones_members_need_distinct_nodes(preview: bool) -> None:
    [sts] = objects_of(build(preview, replicas_per_shard=0), "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    affinity = sts["spec"]["template"]["spec"]["affinity"]
    assert "nodeAffinity" not in affinity
    assert "requiredDuringSchedulingIgnoredDuringExecution" in affinity["podAntiAffinity"]


def test_metrics_exporter_sidecar_is_pinned(preview: bool) -> None:
    containers = objects_of(build(preview, zones=ZONES, metrics_exporter=True), "StatefulSet")[0]["spec"]["template"][
        "spec"]["containers"]
    assert [c["name"] for c in containers] == ["redis", "metrics"]
    # Ready after 30 s of failed scrapes (Prometheus stops using it), restarted only after 60 s: a slow scrape
    # under load must not restart the exporter, and never the pod's Redis.
    health = {"httpGet": {"path": "/health", "port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 5,
              "successThreshold": 1}
    assert {key: value for key, value in containers[1].items() if key != "securityContext"} == {
        "name": "metrics", "image": "oliver006/redis_exporter:v1.62.0", "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "REDIS_ADDR", "value": "redis://127.0.0.1:6379"},
                {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}}],
        "ports": [{"name": "metrics", "containerPort": 9121, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}},
        "readinessProbe": {**health, "failureThreshold": 3}, "livenessProbe": {**health, "failureThreshold": 6}}


def test_connection_contract_reaches_inference_pods(preview: bool) -> None:
    def program() -> None:
        cluster = RedisCluster("redis", RedisClusterArgs(namespace="data", zones=ZONES))
        InferenceService("api", InferenceServiceArgs(image="ghcr.io/acme/api:1.0", namespace="data",
                                                     redis=cluster.connection))

    capture = run_components(program, preview=preview)
    api = next(d for d in objects_of(capture, "Deployment") if d["metadata"]["name"] == "api")
    pod = api["spec"]["template"]
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "password"}
    assert env["REDIS_CLUSTER_NODES"]["value"].startswith("redis-us-east-1a-0.redis-headless.data.svc.cluster.local:6379,")
    assert pod["metadata"]["labels"]["ha-ai-stack/redis-client"] == "true"


BACKUP = {"bucket": "acme-redis-backups", "prefix": "prod", "schedule": "15 */6 * * *", "retention": 14}
RESTORE_FROM = "s3://acme-redis-backups/prod/redis/20261126T010344Z"


def test_backups_are_a_cron_job_of_two_containers_on_a_scratch_volume_with_the_pods_identity(preview: bool) -> None:
    capture = build(preview, zones=ZONES, memory="8Gi", storage_class="gp3", backup=BACKUP,
                    service_account_annotations={"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/b"})
    cron = next(c for c in objects_of(capture, "CronJob") if c["metadata"]["name"] == "redis-backup")
    assert cron["spec"]["schedule"] == "15 */6 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    # The last good run's pod and log stay for a look, the last three failed ones for the alert's follow-up.
    assert (cron["spec"]["successfulJobsHistoryLimit"], cron["spec"]["failedJobsHistoryLimit"]) == (1, 3)
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [dump] = pod["initContainers"]
    [upload] = pod["containers"]
    assert dump["command"] == ["sh", "/etc/redis/backup.sh"] and dump["image"] == "redis:7.2.5"
    assert upload["command"] == ["python3", "/etc/redis/backup_s3.py", "upload"]
    assert upload["image"] == "public.ecr.aws/lambda/python:3.12.2025.01.14.14"
    password = {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}}
    shared = [password, {"name": "TOPOLOGY_FILE", "value": "/etc/redis/topology.txt"},
              {"name": "BACKUP_DIR", "value": "/backup"}]
    assert dump["env"] == shared
    assert upload["env"] == [
        {"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}, *shared,
        {"name": "BACKUP_BUCKET", "value": "acme-redis-backups"}, {"name": "BACKUP_PREFIX", "value": "prod"},
        {"name": "CLUSTER_NAME", "value": "redis"}, {"name": "BACKUP_RETENTION", "value": "14"}]
    # 3 shards x 8Gi member memory: room for every shard's RDB, on the members' class.
    [staging] = [v for v in pod["volumes"] if v["name"] == "staging"]
    claim = staging["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "24576Mi" and claim["storageClassName"] == "gp3"
    assert pod["serviceAccountName"] == "redis-backup" and pod["automountServiceAccountToken"] is False
    [account] = objects_of(capture, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/b"}
    assert account["automountServiceAccountToken"] is False  # the pods need no Kubernetes API token
    # HTTPS out for the S3 pods only; the members get no S3 egress without a restore.
    s3_policy = next(p for p in objects_of(capture, "NetworkPolicy") if p["metadata"]["name"] == "redis-s3")
    assert s3_policy["spec"]["podSelector"]["matchLabels"] == {"ha-ai-stack/redis-s3": "true"}
    assert s3_policy["spec"]["egress"][0] == {"ports": [{"port": 443, "protocol": "TCP"}]}
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["ha-ai-stack/redis-s3"] == "true"
    for sts in objects_of(capture, "StatefulSet"):
        assert "ha-ai-stack/redis-s3" not in sts["spec"]["template"]["metadata"]["labels"]
        assert "initContainers" not in sts["spec"]["template"]["spec"]


def test_no_backup_objects_without_backup_or_restore(preview: bool) -> None:
    capture = build(preview, zones=ZONES)
    assert [c["metadata"]["name"] for c in objects_of(capture, "CronJob")] == ["redis-balance"]
    assert objects_of(capture, "ServiceAccount") == []
    assert "redis-s3" not in [p["metadata"]["name"] for p in objects_of(capture, "NetworkPolicy")]


def test_a_restore_is_verified_by_a_job_before_any_member_starts_and_loaded_by_each_members_init(
        preview: bool) -> None:
    capture = build(preview, zones=ZONES, restore_from=RESTORE_FROM)
    restore = jobs(capture)["redis-restore"]
    statefulsets = capture.of_type("kubernetes:apps/v1:StatefulSet")
    assert restore.urn in statefulsets[0].dependencies  # the first zone waits for it; the others for that zone
    container = restore.inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python3", "/etc/redis/backup_s3.py", "verify-restore"]
    python_env = [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    password = {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}}
    topology = {"name": "TOPOLOGY_FILE", "value": "/etc/redis/topology.txt"}
    assert container["env"] == [*python_env, password, topology, {"name": "RESTORE_FROM", "value": RESTORE_FROM}]
    assert restore.inputs["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    for sts in objects_of(capture, "StatefulSet"):
        pod = sts["spec"]["template"]["spec"]
        [init] = pod["initContainers"]
        assert init["command"] == ["python3", "/etc/redis/backup_s3.py", "restore-member"]
        assert {"name": "data", "mountPath": "/data"} in init["volumeMounts"]
        assert init["env"] == [  # POD_NAME before POD_HOSTNAME: the kubelet expands $(VAR) from earlier entries only
            *python_env, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, password,
            topology, {"name": "RESTORE_FROM", "value": RESTORE_FROM},
            {"name": "POD_HOSTNAME", "value": "$(POD_NAME).redis-headless.data.svc.cluster.local"},
            {"name": "REDIS_DATA_DIR", "value": "/data"}]
        assert pod["serviceAccountName"] == "redis-backup"
        assert sts["spec"]["template"]["metadata"]["labels"]["ha-ai-stack/redis-s3"] == "true"
    other = jobs(build(preview, zones=ZONES, restore_from=RESTORE_FROM.replace("010344Z", "010345Z")))
    assert other["redis-restore"].inputs["metadata"]["name"] != restore.inputs["metadata"]["name"]
