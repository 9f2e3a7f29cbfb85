"""Every IAM document the stacks render is one IAM accepts: role policies through moto's IAM (which rejects
malformed documents as AWS does), trust policies against the grammar IAM documents for them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ha_ai_stack.cloud_identity import S3Location, backup_s3_policy, read_only_s3_policy, s3_locations

from .conftest import stack_capture

TRUST_STATEMENT_KEYS = {"Sid", "Effect", "Principal", "Action", "Condition"}


@pytest.fixture
def iam(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("iam")


def of_type(stack: str, token: str) -> list[dict[str, Any]]:
    return [r.inputs for r in stack_capture(stack).resources if r.type_token == token]


def test_trust_policies_follow_the_grammar() -> None:
    """prod makes the IAM roles (IRSA for the model fetch and backups, the EBS CSI driver, the EKS node role)."""
    for role in of_type("prod", "aws:iam/role:Role"):
        document = json.loads(role["assumeRolePolicy"])
        assert set(document) <= {"Version", "Statement"}, document
        for statement in document["Statement"]:
            assert set(statement) <= TRUST_STATEMENT_KEYS and statement["Effect"] in ("Allow", "Deny"), statement
            assert statement["Action"] in ("sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"), statement
            assert set(statement["Principal"]) <= {"Service", "Federated", "AWS"}, statement


def test_roles_and_their_policies_are_accepted_by_iam(iam: Any) -> None:
    roles = of_type("prod", "aws:iam/role:Role")
    for index, role in enumerate(roles):  # a role without a name is autonamed by the provider
        iam.create_role(RoleName=role.get("name") or f"autonamed-{index}",
                        AssumeRolePolicyDocument=role["assumeRolePolicy"])
    policies = of_type("prod", "aws:iam/rolePolicy:RolePolicy")
    for index, policy in enumerate(policies):
        iam.put_role_policy(RoleName=policy["role"], PolicyName=f"policy-{index}", PolicyDocument=policy["policy"])
        for statement in json.loads(policy["policy"])["Statement"]:
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
    assert (len(roles), len(policies)) == (5, 3)


def test_each_irsa_role_trusts_exactly_its_service_account_through_the_clusters_oidc_provider() -> None:
    # The mock answers eks.get_cluster("acme-prod") with this issuer (tools/capture.py, as EKS would).
    provider = "oidc.eks.us-east-1.amazonaws.com/id/" + hashlib.sha256(b"acme-prod").hexdigest()[:32].upper()

    def trusting(service_account: str) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
            "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{provider}"},
            "Condition": {"StringEquals": {f"{provider}:sub": f"system:serviceaccount:{service_account}",
                                           f"{provider}:aud": "sts.amazonaws.com"}}}]}

    trusts = {role.get("name"): json.loads(role["assumeRolePolicy"]) for role in of_type("prod", "aws:iam/role:Role")}
    assert trusts == {
        "haai-acme-prod-ebs-csi": trusting("kube-system:ebs-csi-controller-sa"),
        "haai-ai-serving-vllm-chat": trusting("ai-serving:vllm-chat"),
        "haai-ai-serving-triton": trusting("ai-serving:triton"),
        "haai-ai-serving-redis-backup": trusting("ai-serving:redis-backup"),
        None: {"Version": "2012-10-17", "Statement": [  # the EKS node role, autonamed
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}


def test_a_read_only_policy_grants_each_prefix_or_a_whole_bucket_and_lists_only_those() -> None:
    locations = s3_locations("--model-repository=s3://models/prod/triton",
                             "s3://weights/llama.manifest.json s3://whole-bucket")
    assert read_only_s3_policy(locations) == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [
            "arn:aws:s3:::models/prod/triton", "arn:aws:s3:::models/prod/triton/*",
            "arn:aws:s3:::weights/llama.manifest.json", "arn:aws:s3:::weights/llama.manifest.json/*",
            "arn:aws:s3:::whole-bucket/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::models",
         "Condition": {"StringLike": {"s3:prefix": ["prod/triton", "prod/triton/*"]}}},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::weights",
         "Condition": {"StringLike": {"s3:prefix": ["llama.manifest.json", "llama.manifest.json/*"]}}},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::whole-bucket",
         "Condition": {"StringLike": {"s3:prefix": ["*"]}}}]}


def test_each_irsa_role_is_tagged_with_the_service_account_that_may_assume_it() -> None:
    tags = {role["name"]: role.get("tags") for role in of_type("prod", "aws:iam/role:Role") if role.get("name")}
    assert tags == {"haai-acme-prod-ebs-csi": {"ha-ai-stack/service-account": "kube-system/ebs-csi-controller-sa"},
                    "haai-ai-serving-vllm-chat": {"ha-ai-stack/service-account": "ai-serving/vllm-chat"},
                    "haai-ai-serving-triton": {"ha-ai-stack/service-account": "ai-serving/triton"},
                    "haai-ai-serving-redis-backup": {"ha-ai-stack/service-account": "ai-serving/redis-backup"}}


WRITE = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]


def listing(bucket: str, *prefixes: str) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
            "Condition": {"StringLike": {"s3:prefix": list(prefixes)}}}


def test_a_backup_policy_writes_only_its_prefix_and_reads_the_restore_source() -> None:
    backup = S3Location("backups", "prod/redis")
    assert backup_s3_policy(backup, None)["Statement"] == [
        {"Effect": "Allow", "Action": WRITE, "Resource": ["arn:aws:s3:::backups/prod/redis/*"]},
        listing("backups", "prod/redis/*")]
    assert backup_s3_policy(backup, S3Location("backups", "staging/redis/20261126T010344Z"))["Statement"] == [
        {"Effect": "Allow", "Action": WRITE, "Resource": ["arn:aws:s3:::backups/prod/redis/*"]},
        {"Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": ["arn:aws:s3:::backups/staging/redis/20261126T010344Z/*"]},
        listing("backups", "prod/redis/*", "staging/redis/20261126T010344Z/*")]
    assert backup_s3_policy(backup, S3Location("old", "r/1"))["Statement"][2:] == [
        listing("backups", "prod/redis/*"), listing("old", "r/1/*")]


def test_a_restore_only_policy_cannot_write_or_delete_the_backups_it_restores() -> None:
    assert backup_s3_policy(None, S3Location("backups", "prod/redis/1")) == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::backups/prod/redis/1/*"]},
        listing("backups", "prod/redis/1/*")]}


def test_each_model_role_reads_exactly_what_its_server_and_model_fetch_name() -> None:
    """vllm-chat fetches its weights and their manifest (a sibling object, not under the weights' prefix);
    triton names its model repository in its args."""
    policies = {policy["role"]: json.loads(policy["policy"])["Statement"]
                for policy in of_type("prod", "aws:iam/rolePolicy:RolePolicy")}
    weights, manifest = "prod/llama-3.1-8b-instruct", "prod/llama-3.1-8b-instruct.manifest.json"
    assert policies["haai-ai-serving-vllm-chat"] == [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [
            f"arn:aws:s3:::acme-models/{weights}", f"arn:aws:s3:::acme-models/{manifest}",
            f"arn:aws:s3:::acme-models/{manifest}/*", f"arn:aws:s3:::acme-models/{weights}/*"]},
        listing("acme-models", weights, manifest, f"{manifest}/*", f"{weights}/*")]
    assert policies["haai-ai-serving-triton"] == [
        {"Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": ["arn:aws:s3:::acme-models/prod", "arn:aws:s3:::acme-models/prod/*"]},
        listing("acme-models", "prod", "prod/*")]
