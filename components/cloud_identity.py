"""AWS identities for pods (IRSA): least-privilege roles the stack makes on eks pools.

A pod assumes an IAM role through its ServiceAccount's ``eks.amazonaws.com/role-arn`` annotation and
the cluster's OIDC provider. IRSA rather than EKS Pod Identity: it works on every EKS version and
needs no extra agent add-on; the role's trust names exactly one ServiceAccount.

The role ARN is built from the account ID and the role's name (both known once the invokes
return), so it is a plain string the ServiceAccount can carry, not an Output.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi

S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/([^\s\"',]*))?")
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
EBS_CSI_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # without leading or trailing "/"; empty for the whole bucket

    def object_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}/{self.prefix + '/' if self.prefix else ''}*"


def s3_locations(*texts: str) -> list[S3Location]:
    """Every ``s3://bucket/prefix`` in a container's command, args or env values."""
    found = {S3Location(m[1], (m[2] or "").strip("/")) for text in texts for m in S3_URI.finditer(text)}
    return sorted(found, key=lambda location: (location.bucket, location.prefix))


def read_only_s3_policy(locations: list[S3Location]) -> dict[str, Any]:
    """GetObject under each prefix, and ListBucket limited to those prefixes: nothing else."""
    # A location is a prefix (every object under it) or one object (a manifest): both ARNs cover either.
    objects = {arn for loc in locations for arn in (loc.object_arn(), f"arn:aws:s3:::{loc.bucket}/{loc.prefix}")
               if loc.prefix} | {loc.object_arn() for loc in locations if not loc.prefix}
    statements: list[dict[str, Any]] = [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": sorted(objects)}]
    for bucket in sorted({loc.bucket for loc in locations}):
        prefixes = sorted({p for loc in locations if loc.bucket == bucket
                           for p in ((loc.prefix, f"{loc.prefix}/*") if loc.prefix else ("*",))})
        statements.append({"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
                           "Condition": {"StringLike": {"s3:prefix": prefixes}}})
    return {"Version": "2012-10-17", "Statement": statements}


def backup_s3_policy(backup: S3Location | None, restore: S3Location | None) -> dict[str, Any]:
    """Write, read and delete (retention) under the backup prefix; only read under the restore source; list both.

    A restore-only cluster gets no write or delete anywhere: the source of a restore is somebody's backups."""
    statements: list[dict[str, Any]] = []
    if backup is not None:
        statements.append({"Effect": "Allow",
                           "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                           "Resource": [backup.object_arn()]})
    if restore is not None:
        statements.append({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [restore.object_arn()]})
    locations = [loc for loc in (backup, restore) if loc is not None]
    for bucket in sorted({loc.bucket for loc in locations}):
        prefixes = sorted({f"{loc.prefix}/*" for loc in locations if loc.bucket == bucket})
        statements.append({"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
                           "Condition": {"StringLike": {"s3:prefix": prefixes}}})
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass(frozen=True)
class ClusterIdentity:
    """What IRSA needs from the account and the cluster."""

    account_id: str
    oidc_provider: str  # the issuer without https://

    def role_arn(self, role_name: str) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{role_name}"

    def trust_policy(self, namespace: str, service_account: str) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": f"arn:aws:iam::{self.account_id}:oidc-provider/{self.oidc_provider}"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{self.oidc_provider}:sub": f"system:serviceaccount:{namespace}:"
                                                                        f"{service_account}",
                                           f"{self.oidc_provider}:aud": "sts.amazonaws.com"}}}]}


def cluster_identity(aws: Any, cluster_name: str) -> ClusterIdentity:
    """Account and OIDC issuer, from two invokes (they run in preview too)."""
    account = aws.get_caller_identity().account_id
    cluster = aws.eks.get_cluster(name=cluster_name)
    issuer = cluster.identities[0].oidcs[0].issuer
    return ClusterIdentity(account_id=account, oidc_provider=issuer.removeprefix("https://"))


def irsa_role(aws: Any, logical_name: str, role_name: str, identity: ClusterIdentity, namespace: str,
              service_account: str, opts: pulumi.ResourceOptions, *, policy: dict[str, Any] | None = None,
              managed_policy_arn: str | None = None) -> Any:
    """A role only ``namespace/service_account`` can assume, with an inline or a managed policy."""
    role = aws.iam.Role(logical_name, name=role_name,
                        assume_role_policy=json.dumps(identity.trust_policy(namespace, service_account), sort_keys=True),
                        tags={"ha-ai-stack/service-account": f"{namespace}/{service_account}"}, opts=opts)
    child = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[role]))
    if policy is not None:
        aws.iam.RolePolicy(f"{logical_name}-policy", role=role.name, policy=json.dumps(policy, sort_keys=True),
                           opts=child)
    if managed_policy_arn is not None:
        aws.iam.RolePolicyAttachment(f"{logical_name}-policy", role=role.name, policy_arn=managed_policy_arn,
                                     opts=child)
    return role


def role_name(*parts: str) -> str:
    """An IAM role name (at most 64 characters) from its parts."""
    return "-".join(("haai", *parts))[:64]


def aws_provider(target: str) -> Any:
    """pulumi_aws, imported only where AWS resources are made; a clear error without the ``aws`` extra."""
    try:
        import pulumi_aws
    except ImportError:
        from .errors import ArgsError

        raise ArgsError(target, [("backend", "eks needs the AWS provider: pip install 'ha-ai-stack[aws]' "
                                             "(or pulumi-aws)")]) from None
    return pulumi_aws
