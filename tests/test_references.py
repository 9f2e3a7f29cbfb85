"""What the prod stack needs from its cluster: every reference resolves, checked by the pack over gRPC.

Each case changes a copy of a rendered stack (or its config) in one place and asserts the exact
finding, or none. The five defects the prerequisites issue found are reintroduced into prod one by one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ha_ai_stack import ConfigError
from ha_ai_stack.prerequisites import (Prerequisite, Reference, prerequisites_config_map_data, provided_by,
                                       references_of)
from ha_ai_stack_tools.capture import CapturedResource
from ha_ai_stack_tools.policy_check import analyze, configure, tier_config

from .conftest import policy_pack, PROJECT_ROOT, run_stack_config, stack_capture, stack_config

PACK = PROJECT_ROOT / "policies"
POLICY = "references-resolve"


@pytest.fixture(scope="module")
def pack() -> Iterator[Any]:
    with policy_pack(PACK) as stub:
        configure(stub, tier_config(PACK, "prod"))
        yield stub


def prod_config() -> dict[str, Any]:
    return stack_config("prod")


def prod_on_an_existing_pool() -> dict[str, Any]:
    """prod on a GPU pool the stack does not make (no AWS pool), with only the service that reads no S3."""
    config = prod_config()
    config["gpu_pools"] = [{"name": "gpu-a10g", "gpus_per_node": 4}]
    config["inference"] = [entry for entry in config["inference"] if entry["name"] == "ai-inference-service"]
    return config


def messages(pack: Any, resources: list[CapturedResource]) -> list[str]:
    return sorted(f.message for f in analyze(pack, resources) if f.policy == POLICY)


def rendered(config: dict[str, Any]) -> list[CapturedResource]:
    return run_stack_config(config, stack="prod").resources


def without_prerequisite(config: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    changed = copy.deepcopy(config)
    changed["prerequisites"] = [p for p in changed["prerequisites"] if (p["kind"], p.get("name", "")) != (kind, name)]
    return changed


def test_prod_resolves_everything(pack: Any) -> None:
    assert messages(pack, stack_capture("prod").resources) == []


# The five defects, each put back into a copy of prod.
def test_defect_priority_class_not_created(pack: Any) -> None:
    config = prod_config()
    del config["priority_classes"]
    assert messages(pack, rendered(config)) == [
        "Deployment ai-serving/triton: spec.template.spec.priorityClassName names PriorityClass inference-critical, "
        "which the stack does not create and no prerequisite declares."]


def test_defect_storage_class_not_created(pack: Any) -> None:
    config = prod_config()
    config["redis"] = {**config["redis"], "create_storage_class": False}
    found = messages(pack, rendered(config))
    assert len(found) == 3  # one per zone StatefulSet
    assert found[0] == ("StatefulSet ai-serving/redis-us-east-1a: spec.volumeClaimTemplates[0].spec.storageClassName "
                        "names StorageClass gp3, which the stack does not create and no prerequisite declares.")
    config["prerequisites"].append({"kind": "StorageClass", "name": "gp3", "reason": "the platform's gp3 class"})
    assert messages(pack, rendered(config)) == []


def test_defect_secret_not_declared(pack: Any) -> None:
    assert messages(pack, rendered(without_prerequisite(prod_config(), "Secret", "huggingface"))) == [
        "Deployment ai-serving/vllm-chat: spec.template.spec.containers[0].env[2].valueFrom.secretKeyRef names "
        "Secret ai-serving/huggingface, key token, which the stack does not create and no prerequisite declares."]


def test_defect_secret_declared_without_the_key(pack: Any) -> None:
    config = prod_config()
    next(p for p in config["prerequisites"] if p["kind"] == "Secret")["keys"] = ["hf-token"]
    assert messages(pack, rendered(config)) == [
        "Deployment ai-serving/vllm-chat: spec.template.spec.containers[0].env[2].valueFrom.secretKeyRef names "
        "Secret ai-serving/huggingface, key token, which the stack does not create and no prerequisite declares."]


def test_defect_cloud_credentials_are_made_on_eks_and_demanded_elsewhere() -> None:
    """Caught before the policy: on an eks pool the stack makes Triton's read-only role; elsewhere the
    config must name one."""
    capture = stack_capture("prod")
    [role] = [r for r in capture.resources if r.name == "prod-triton-role"]
    [policy] = [r for r in capture.resources if r.name == "prod-triton-role-policy"]
    assert json.loads(policy.inputs["policy"])["Statement"] == [
        {"Action": ["s3:GetObject"], "Effect": "Allow",
         "Resource": ["arn:aws:s3:::acme-models/prod", "arn:aws:s3:::acme-models/prod/*"]},
        {"Action": ["s3:ListBucket"], "Condition": {"StringLike": {"s3:prefix": ["prod", "prod/*"]}},
         "Effect": "Allow", "Resource": "arn:aws:s3:::acme-models"}]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert list(trust["Condition"]["StringEquals"].values()) == ["sts.amazonaws.com",
                                                                 "system:serviceaccount:ai-serving:triton"]
    [sa] = [r.inputs for r in capture.resources if r.name == "triton-sa"]
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/"
                                                                           "haai-ai-serving-triton"}
    config = prod_config()
    config["gpu_pools"] = [{"name": "gpu-a10g", "gpus_per_node": 4}]  # an existing pool: no role made
    with pytest.raises(ConfigError, match=r"haai:inference\[1\].service_account_annotations: the service reads "
                                          r"s3://acme-models/prod and runs on pool 'gpu-a10g' \(backend existing\): "
                                          r"give the IAM role its pods assume as `eks.amazonaws.com/role-arn`"):
        run_stack_config(config, stack="prod")


def test_defect_hpa_metric_not_served(pack: Any) -> None:
    """The GPU metric is now served by the stack's own adapter rules; without them the policy, and before it the
    config, say so."""
    without_rules = [r for r in copy.deepcopy(stack_capture("prod").resources)
                     if r.inputs.get("metadata", {}).get("name") != "ha-ai-stack-adapter-rules"]
    assert messages(pack, without_rules) == [
        "HorizontalPodAutoscaler ai-serving/triton: spec.metrics[1].pods.metric.name names PodsMetric "
        "DCGM_FI_DEV_GPU_UTIL, which the stack does not create and no prerequisite declares."]
    config = prod_config()
    config["metrics"] = {"gpu": False}
    with pytest.raises(ConfigError, match="nothing serves the pods metric 'DCGM_FI_DEV_GPU_UTIL'"):
        run_stack_config(config, stack="prod")
    assert messages(pack, rendered(without_prerequisite(prod_config(), "APIService", "v1beta1.metrics.k8s.io"))) == [
        "HorizontalPodAutoscaler ai-serving/triton: spec.metrics[0] names APIService v1beta1.metrics.k8s.io, which "
        "the stack does not create and no prerequisite declares."]
    assert messages(pack, rendered(without_prerequisite(prod_config(), "APIService",
                                                        "v1beta1.custom.metrics.k8s.io"))) == [
        "HorizontalPodAutoscaler ai-serving/triton: spec.metrics[1] names APIService v1beta1.custom.metrics.k8s.io, "
        "which the stack does not create and no prerequisite declares."]


# Every other kind of reference: a firing case and a quiet one, on a rendered object changed in one field.
def edit(kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> list[CapturedResource]:
    resources = copy.deepcopy(stack_capture("prod").resources)
    change(next(r.inputs for r in resources if r.inputs.get("kind") == kind
                and r.inputs.get("metadata", {}).get("name") == name))
    return resources


def pod(body: dict[str, Any]) -> dict[str, Any]:
    return body["spec"]["template"]["spec"]


@pytest.mark.parametrize(("case", "kind", "name", "change", "expected"), [
    ("ServiceAccount missing", "Deployment", "triton", lambda b: pod(b).update(serviceAccountName="model-reader"),
     "spec.template.spec.serviceAccountName names ServiceAccount ai-serving/model-reader"),
    ("ServiceAccount default", "Deployment", "triton", lambda b: pod(b).update(serviceAccountName="default"), None),
    ("ConfigMap volume missing", "Deployment", "triton",
     lambda b: pod(b)["volumes"].append({"name": "c", "configMap": {"name": "triton-models"}}),
     "spec.template.spec.volumes[3].configMap.name names ConfigMap ai-serving/triton-models"),
    ("ConfigMap volume created", "Deployment", "triton",
     lambda b: pod(b)["volumes"].append({"name": "c", "configMap": {"name": "ha-ai-stack-prerequisites"}}), None),
    ("Secret volume missing", "Deployment", "triton",
     lambda b: pod(b)["volumes"].append({"name": "s", "secret": {"secretName": "tls"}}),
     "spec.template.spec.volumes[3].secret.secretName names Secret ai-serving/tls"),
    ("Secret volume created", "Deployment", "triton",
     lambda b: pod(b)["volumes"].append({"name": "s", "secret": {"secretName": "redis-auth"}}), None),
    ("PVC missing", "Deployment", "triton",
     lambda b: pod(b)["volumes"].append({"name": "p", "persistentVolumeClaim": {"claimName": "models"}}),
     "persistentVolumeClaim.claimName names PersistentVolumeClaim ai-serving/models"),
    ("envFrom missing", "Deployment", "triton",
     lambda b: pod(b)["containers"][0].update(envFrom=[{"secretRef": {"name": "ngc"}}]),
     "spec.template.spec.containers[0].envFrom[0].secretRef names Secret ai-serving/ngc"),
    ("envFrom optional", "Deployment", "triton",
     lambda b: pod(b)["containers"][0].update(envFrom=[{"secretRef": {"name": "ngc", "optional": True}}]), None),
    ("created Secret, missing key", "StatefulSet", "redis-us-east-1a",
     lambda b: pod(b)["containers"][0]["env"][3]["valueFrom"]["secretKeyRef"].update(key="pass"),
     "names Secret ai-serving/redis-auth, key pass"),
    ("system PriorityClass", "Deployment", "triton",
     lambda b: pod(b).update(priorityClassName="system-cluster-critical"), None),
    ("unknown PriorityClass", "Deployment", "triton", lambda b: pod(b).update(priorityClassName="batch-low"),
     "names PriorityClass batch-low"),
    ("default StorageClass", "StatefulSet", "redis-us-east-1a",
     lambda b: b["spec"]["volumeClaimTemplates"][0]["spec"].pop("storageClassName"),
     "names DefaultStorageClass the cluster's default StorageClass"),
])
def test_each_kind_of_reference(pack: Any, case: str, kind: str, name: str, change: Any, expected: str | None) -> None:
    found = messages(pack, edit(kind, name, change))
    if expected is None:
        assert found == [], case
    else:
        assert len(found) == 1 and expected in found[0], (case, found)


def test_custom_resources_need_their_crd(pack: Any) -> None:
    staging = stack_capture("staging").resources
    configure(pack, tier_config(PACK, "staging"))
    try:
        assert messages(pack, staging) == []
        without = copy.deepcopy(staging)
        for resource in without:
            if resource.inputs.get("metadata", {}).get("name") == "ha-ai-stack-prerequisites":
                items = json.loads(resource.inputs["data"]["prerequisites.json"])
                resource.inputs["data"]["prerequisites.json"] = json.dumps(
                    [i for i in items if not i.get("name", "").endswith((".karpenter.sh", ".karpenter.k8s.aws"))])
        assert messages(pack, without) == [
            "EC2NodeClass gpu-a10g: apiVersion names CustomResourceDefinition ec2nodeclasses.karpenter.k8s.aws, which "
            "the stack does not create and no prerequisite declares.",
            "NodePool gpu-a10g: apiVersion names CustomResourceDefinition nodepools.karpenter.sh, which the stack "
            "does not create and no prerequisite declares."]
    finally:
        configure(pack, tier_config(PACK, "prod"))


def test_references_of_an_ingress_and_a_pvc() -> None:
    ingress = references_of("networking.k8s.io/v1", "Ingress",
                            {"metadata": {"name": "web", "namespace": "ml"}, "spec": {"ingressClassName": "alb"}})
    assert ingress == [Reference("IngressClass", "alb", None, "spec.ingressClassName")]
    claim = references_of("v1", "PersistentVolumeClaim", {"metadata": {"name": "c", "namespace": "ml"}, "spec": {}})
    assert claim == [Reference("DefaultStorageClass", "", None, "spec.storageClassName")]
    named = {"metadata": {"name": "c", "namespace": "ml"}, "spec": {"storageClassName": "gp3"}}
    assert references_of("v1", "PersistentVolumeClaim", named) == [
        Reference("StorageClass", "gp3", None, "spec.storageClassName")]
    provided = provided_by([], [Prerequisite(kind="IngressClass", name="alb", reason="AWS LB controller")], "ml")
    assert provided.resolves(ingress[0]) and not provided.resolves(claim[0])
    default_class = {"metadata": {"name": "gp3", "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}}}
    assert provided_by([("StorageClass", default_class)], [], "ml").resolves(claim[0])
    other_class = {"metadata": {"name": "gp2", "annotations": {"storageclass.kubernetes.io/is-default-class": "false"}}}
    assert not provided_by([("StorageClass", other_class)], [], "ml").resolves(claim[0])


def test_references_of_a_pod_env_from_both_sources_and_an_external_metric() -> None:
    deployment = {"metadata": {"name": "web", "namespace": "ml"}, "spec": {"template": {"spec": {"containers": [{
        "name": "server", "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "SPARE", "valueFrom": {"configMapKeyRef": {"name": "extra", "key": "k", "optional": True}}}],
        "envFrom": [{"secretRef": {"name": "creds"}}, {"configMapRef": {"name": "tuning"}},
                    {"configMapRef": {"name": "maybe", "optional": True}}]}]}}}}
    found = [r for r in references_of("apps/v1", "Deployment", deployment) if r.kind in ("Secret", "ConfigMap")]
    assert found == [
        Reference("Secret", "hf", "ml", "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef", "token"),
        Reference("ConfigMap", "settings", "ml", "spec.template.spec.containers[0].env[1].valueFrom.configMapKeyRef",
                  "mode"),
        Reference("Secret", "creds", "ml", "spec.template.spec.containers[0].envFrom[0].secretRef"),
        Reference("ConfigMap", "tuning", "ml", "spec.template.spec.containers[0].envFrom[1].configMapRef")]
    hpa = {"metadata": {"name": "web", "namespace": "ml"}, "spec": {"metrics": [
        {"type": "External", "external": {"metric": {"name": "queue_depth"}, "target": {"type": "AverageValue"}}}]}}
    assert references_of("autoscaling/v2", "HorizontalPodAutoscaler", hpa) == [
        Reference("ExternalMetric", "queue_depth", None, "spec.metrics[0].external.metric.name"),
        Reference("APIService", "v1beta1.external.metrics.k8s.io", None, "spec.metrics[0]")]


def test_a_prerequisite_declared_without_keys_resolves_any_key_and_keeps_keys_the_stack_knows() -> None:
    token = Reference("Secret", "hf", "ml", "env", "token")
    anything = provided_by([], [Prerequisite(kind="Secret", name="hf", reason="platform team")], "ml")
    assert anything.resolves(token)
    listed = provided_by([], [Prerequisite(kind="Secret", name="hf", keys=["other"], reason="platform team")], "ml")
    assert not listed.resolves(token)
    made = [("Secret", {"metadata": {"name": "hf", "namespace": "ml"}, "data": {"other": "eA=="}})]
    both = provided_by(made, [Prerequisite(kind="Secret", name="hf", reason="also declared")], "ml")
    assert not both.resolves(token) and both.resolves(Reference("Secret", "hf", "ml", "env", "other"))


def test_the_prerequisites_config_map_text_is_canonical() -> None:
    declared = [Prerequisite(kind="ConfigMap", name="cfg", keys=["x"], reason="r"),
                Prerequisite(kind="Secret", name="hf", keys=["token"], reason="r"),
                Prerequisite(kind="PriorityClass", name="p", reason="r")]
    # Ordered by each item's canonical JSON (keys sorted), which starts with its "keys" list.
    expected = ('[\n  {\n    "keys": [\n      "token"\n    ],\n    "kind": "Secret",\n    "name": "hf",\n    "reason": "r"\n  },\n'
                '  {\n    "keys": [\n      "x"\n    ],\n    "kind": "ConfigMap",\n    "name": "cfg",\n    "reason": "r"\n  },\n'
                '  {\n    "keys": [],\n    "kind": "PriorityClass",\n    "name": "p",\n    "reason": "r"\n  }\n]\n')
    assert prerequisites_config_map_data(declared) == {"prerequisites.json": expected}
    assert prerequisites_config_map_data(declared[::-1]) == {"prerequisites.json": expected}


def test_prerequisites_are_validated_with_paths() -> None:
    config = prod_config()
    config["prerequisites"] = [{"kind": "Secret", "name": "Bad_Name", "reason": "x"},
                               {"kind": "PriorityClass", "name": "p", "namespace": "ml", "reason": "x"},
                               {"kind": "Secret", "name": "s"}]
    with pytest.raises(ConfigError) as raised:
        run_stack_config(config, stack="prod")
    assert raised.value.problems == [
        "haai:prerequisites[0]: 'Bad_Name' is not a valid DNS subdomain: lowercase letters, digits, '-' and '.', each "
        "part starting and ending with a letter or digit",
        "haai:prerequisites[1]: PriorityClass is not namespaced: drop namespace",
        "haai:prerequisites[2].reason: required key is missing"]


def test_shared_cluster_objects_are_applied_server_side() -> None:
    capture = stack_capture("prod")
    types = {r.type_token for r in capture.resources if r.inputs.get("kind") in ("PriorityClass", "StorageClass")}
    assert types == {"kubernetes:scheduling.k8s.io/v1:PriorityClassPatch", "kubernetes:storage.k8s.io/v1:StorageClassPatch"}
    [storage] = [r.inputs for r in capture.resources if r.inputs.get("kind") == "StorageClass"]
    assert (storage["provisioner"], storage["volumeBindingMode"], storage["reclaimPolicy"],
            storage["allowVolumeExpansion"], storage["parameters"]["encrypted"]) == (
        "ebs.csi.aws.com", "WaitForFirstConsumer", "Retain", True, "true")
    staging = [r.inputs for r in stack_capture("staging").resources if r.inputs.get("kind") == "StorageClass"]
    assert staging[0]["reclaimPolicy"] == "Delete"  # Retain is for prod
    [addon] = [r.inputs for r in capture.resources if r.type_token == "aws:eks/addon:Addon"]
    assert addon["addonName"] == "aws-ebs-csi-driver" and addon["clusterName"] == "acme-prod"
    assert addon["serviceAccountRoleArn"].endswith(":role/haai-acme-prod-ebs-csi")
    config = prod_config()
    config["gpu_pools"][0]["eks"]["ebs_csi_driver"] = "present"
    assert not [r for r in run_stack_config(config, stack="prod").resources if r.type_token == "aws:eks/addon:Addon"]


def test_redis_volumes_ask_for_our_class_on_aws_and_the_clusters_default_elsewhere() -> None:
    def classes(config: dict[str, Any]) -> tuple[list[str], set[str | None]]:
        capture = run_stack_config(config, stack="prod")
        made = [r.inputs["metadata"]["name"] for r in capture.resources if r.inputs.get("kind") == "StorageClass"]
        asked = {claim["spec"].get("storageClassName") for r in capture.resources if r.inputs.get("kind") == "StatefulSet"
                 for claim in r.inputs["spec"]["volumeClaimTemplates"]}
        return made, asked

    config = prod_config()
    del config["redis"]["storage_class"]  # an eks pool: the stack makes its encrypted gp3 class and asks for it
    assert classes(config) == (["redis-gp3"], {"redis-gp3"})
    config = prod_on_an_existing_pool()  # no AWS pool: the cluster's default class
    del config["redis"]["storage_class"]
    config["redis"]["service_account_annotations"] = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/backup"}
    assert classes(config) == ([], {None})


def test_the_ebs_csi_driver_is_installed_only_for_redis_volumes() -> None:
    def addons(config: dict[str, Any]) -> list[str]:
        return sorted(r.name for r in run_stack_config(config, stack="prod").resources
                      if r.type_token in ("aws:eks/addon:Addon", "aws:iam/role:Role") and "ebs-csi" in r.name)

    config = prod_config()
    assert addons(config) == ["prod-acme-prod-ebs-csi-driver", "prod-acme-prod-ebs-csi-role"]
    config["redis"] = {"enabled": False}
    for entry in config["inference"]:
        entry.pop("use_redis", None)
    assert addons(config) == []


def test_redis_backups_get_a_role_for_their_prefix_only_on_eks_and_demand_one_elsewhere() -> None:
    capture = stack_capture("prod")
    [role] = [r for r in capture.resources if r.name == "prod-redis-backup-role"]
    [policy] = [r for r in capture.resources if r.name == "prod-redis-backup-role-policy"]
    assert json.loads(policy.inputs["policy"])["Statement"] == [
        {"Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"], "Effect": "Allow",
         "Resource": ["arn:aws:s3:::acme-redis-backups/prod/redis/*"]},
        {"Action": ["s3:ListBucket"], "Condition": {"StringLike": {"s3:prefix": ["prod/redis/*"]}},
         "Effect": "Allow", "Resource": "arn:aws:s3:::acme-redis-backups"}]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert list(trust["Condition"]["StringEquals"].values()) == ["sts.amazonaws.com",
                                                                 "system:serviceaccount:ai-serving:redis-backup"]
    [sa] = [r.inputs for r in capture.resources if r.name == "redis-backup-sa"]
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/"
                                                                           "haai-ai-serving-redis-backup"}
    config = prod_on_an_existing_pool()
    with pytest.raises(ConfigError, match=r"haai:redis.service_account_annotations: the Redis backups use S3 and no "
                                          r"eks pool is there to make their role"):
        run_stack_config(config, stack="prod")
    config["redis"]["service_account_annotations"] = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/backup"}
    run_stack_config(config, stack="prod")


def test_a_restore_without_backups_gets_a_read_only_role() -> None:
    config = prod_config()
    config["tier"] = "staging"  # prod demands backups
    del config["redis"]["backup"]
    config["redis"]["restore_from"] = "s3://acme-redis-backups/prod/redis/20261126T010344Z"
    [policy] = [r for r in run_stack_config(config, stack="prod").resources if r.name == "prod-redis-backup-role-policy"]
    assert json.loads(policy.inputs["policy"])["Statement"] == [
        {"Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": ["arn:aws:s3:::acme-redis-backups/prod/redis/20261126T010344Z/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::acme-redis-backups",
         "Condition": {"StringLike": {"s3:prefix": ["prod/redis/20261126T010344Z/*"]}}}]
