"""Stack-wide rules: default-deny networking, Redis Cluster HA, and inference pods reaching Redis."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .library.prerequisites import (
    PREREQUISITES_CONFIG_MAP,
    Prerequisite,
    declared_from_config_map,
    provided_by,
    references_of,
)

from .catalog import Rule, setting
from .k8s import NETWORK_POLICY, dig, matches, namespace_of, object_name, pod_template

EXEMPT = {"exemptNamespaces": {"type": "array", "items": {"type": "string"}, "default": ["kube-system"],
                               "description": "System namespaces whose add-ons a default deny would break."}}
REDIS_REPLICAS = {"minReplicasPerShard": {"type": "integer", "minimum": 0, "default": 1}}
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"


def _workload_pods(resources: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """(resource, pod template) for every workload."""
    pods = []
    for resource in resources:
        template = pod_template(resource.resource_type, resource.props)
        if template is not None:
            pods.append((resource, template))
    return pods


def _policies(resources: list[Any]) -> list[dict[str, Any]]:
    return [r.props for r in resources if r.resource_type == NETWORK_POLICY]


def _default_deny(args: Any, report: Any) -> None:
    exempt = set(setting(args, "exemptNamespaces", EXEMPT))
    namespaces = {namespace_of(r.props) for r, _ in _workload_pods(args.resources)} - exempt
    for namespace in sorted(namespaces):
        deny = [p for p in _policies(args.resources) if namespace_of(p) == namespace
                and dig(p, "spec", "podSelector") in ({}, None)
                and not dig(p, "spec", "ingress") and not dig(p, "spec", "egress")
                and "Ingress" in (dig(p, "spec", "policyTypes") or [])]
        if not deny:
            report(f"namespace {namespace} runs workloads but has no default-deny NetworkPolicy.")


def _redis_clusters(resources: list[Any]) -> list[tuple[Any, dict[str, str]]]:
    """(ConfigMap, data) of every Redis Cluster: a ConfigMap whose redis.conf enables cluster mode."""
    return [(r, r.props.get("data") or {}) for r in resources if r.resource_type == CONFIG_MAP
            and "cluster-enabled yes" in str((r.props.get("data") or {}).get("redis.conf", "")).splitlines()]


def _redis_ha(args: Any, report: Any) -> None:
    minimum_replicas = setting(args, "minReplicasPerShard", REDIS_REPLICAS)
    for config_map, data in _redis_clusters(args.resources):
        name = object_name(config_map.props)
        members = [line.split() for line in str(data.get("topology.txt", "")).splitlines()
                   if line and not line.startswith("#")]
        shards: dict[str, list[str]] = defaultdict(list)
        for shard, role, host in members:
            shards[shard].append(host.split(".", 1)[0])
        if len(shards) < 3:
            report(f"{name}: {len(shards)} masters; a Redis Cluster needs at least 3 to keep a failover quorum.",
                   config_map.urn)
        for shard, pods in sorted(shards.items()):
            if len(pods) - 1 < minimum_replicas:
                report(f"{name}: shard {shard} has {len(pods) - 1} replicas; the tier needs {minimum_replicas}.",
                       config_map.urn)
        conf = str(data.get("redis.conf", "")).splitlines()
        if "appendonly yes" not in conf:
            report(f"{name}: appendonly is off, so a restart loses every write since the last snapshot.",
                   config_map.urn)
        statefulsets = [r for r in args.resources if r.resource_type == STATEFULSET
                        and namespace_of(r.props) == namespace_of(config_map.props)
                        and any(v.get("configMap", {}).get("name") == dig(config_map.props, "metadata", "name")
                                for v in dig(r.props, "spec", "template", "spec", "volumes") or [])]
        for sts in statefulsets:
            if not dig(sts.props, "spec", "volumeClaimTemplates"):
                report(f"{object_name(sts.props)}: Redis data is not on a PersistentVolumeClaim.", sts.urn)
            env = [e for c in dig(sts.props, "spec", "template", "spec", "containers") or []
                   for e in c.get("env") or []]
            passwords = [e for e in env if e.get("name") == "REDIS_PASSWORD"]
            if not passwords or not all(dig(e, "valueFrom", "secretKeyRef") for e in passwords):
                report(f"{object_name(sts.props)}: Redis auth must come from a Secret (REDIS_PASSWORD via "
                       f"secretKeyRef in every container).", sts.urn)
        zone_of = {}
        for sts in statefulsets:
            terms = dig(sts.props, "spec", "template", "spec", "affinity", "nodeAffinity",
                        "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms") or []
            zones = [v for t in terms for e in t.get("matchExpressions") or [] for v in e.get("values") or []]
            for ordinal in range(int(dig(sts.props, "spec", "replicas", default=1))):
                zone_of[f"{dig(sts.props, 'metadata', 'name')}-{ordinal}"] = tuple(zones)
        for shard, pods in sorted(shards.items()):
            zones = [zone_of.get(pod) for pod in pods]
            if all(zones) and len(set(zones)) < len(zones):
                report(f"{name}: members of shard {shard} share a zone ({', '.join(pods)}).", config_map.urn)


def _allows(policy: dict[str, Any], direction: str, peer_labels: dict[str, str], peer_namespace: str,
            own_namespace: str, port: int) -> bool:
    """Does one NetworkPolicy rule list of ``direction`` ('ingress' from / 'egress' to) admit the peer on ``port``?"""
    peers_key = "from" if direction == "ingress" else "to"
    for rule in dig(policy, "spec", direction) or []:
        ports = rule.get("ports") or []
        if ports and not any(int(p.get("port", port)) == port for p in ports if not isinstance(p.get("port"), str)):
            continue
        peers = rule.get(peers_key)
        if not peers:
            return True
        for peer in peers:
            if "ipBlock" in peer:
                continue
            namespace_ok = (matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": peer_namespace})
                            if "namespaceSelector" in peer else peer_namespace == own_namespace)
            if namespace_ok and matches(peer.get("podSelector"), peer_labels):
                return True
    return False


def _reachable(policies: list[dict[str, Any]], direction: str, pod_labels: dict[str, str], namespace: str,
               peer_labels: dict[str, str], peer_namespace: str, port: int) -> bool:
    """Kubernetes semantics: unselected pods allow all; selected pods allow what any selecting policy allows."""
    policy_type = "Ingress" if direction == "ingress" else "Egress"
    selecting = [p for p in policies if namespace_of(p) == namespace
                 and policy_type in (dig(p, "spec", "policyTypes") or [])
                 and matches(dig(p, "spec", "podSelector"), pod_labels)]
    return not selecting or any(_allows(p, direction, peer_labels, peer_namespace, namespace, port) for p in selecting)


def _redis_reachable(args: Any, report: Any) -> None:
    policies = _policies(args.resources)
    pods = _workload_pods(args.resources)
    clusters = {namespace_of(r.props): r for r, _ in _redis_clusters(args.resources)}
    for client, template in pods:
        env = [e for c in dig(template, "spec", "containers") or [] for e in c.get("env") or []]
        if not any(e.get("name") == "REDIS_CLUSTER_NODES" for e in env):
            continue
        client_labels = dig(template, "metadata", "labels") or {}
        namespace = namespace_of(client.props)
        members = [(r, t) for r, t in pods if r.resource_type == STATEFULSET and namespace_of(r.props) == namespace
                   and namespace in clusters]
        if not members:
            report(f"{object_name(client.props)} is configured for Redis but no Redis Cluster runs in {namespace}.",
                   client.urn)
            continue
        redis_labels = dig(members[0][1], "metadata", "labels") or {}
        if not _reachable(policies, "egress", client_labels, namespace, redis_labels, namespace, 6379):
            report(f"{object_name(client.props)}: its NetworkPolicies block egress to Redis on 6379 (an outage).",
                   client.urn)
        if not _reachable(policies, "ingress", redis_labels, namespace, client_labels, namespace, 6379):
            report(f"{object_name(client.props)}: Redis' NetworkPolicies block ingress from it on 6379 (an outage).",
                   client.urn)


def _manifests(resources: list[Any]) -> list[tuple[Any, str, Any]]:
    """(resource, kind, props) of every Kubernetes object in the stack."""
    return [(r, str(r.props.get("kind")), r.props) for r in resources
            if r.resource_type.startswith("kubernetes:") and r.props.get("kind")]


def _references_resolve(args: Any, report: Any) -> None:
    objects = _manifests(args.resources)
    declared: list[Prerequisite] = []
    home = None
    for _, kind, props in objects:
        if kind == "ConfigMap" and dig(props, "metadata", "name") == PREREQUISITES_CONFIG_MAP:
            declared += declared_from_config_map(props.get("data") or {})
            home = dig(props, "metadata", "namespace")
    provided = provided_by([(kind, props) for _, kind, props in objects], declared, home)
    for resource, kind, props in objects:
        for reference in references_of(str(props.get("apiVersion") or ""), kind, props):
            if not provided.resolves(reference):
                report(f"{kind} {object_name(props)}: {reference.path} names {reference.describe()}, which the "
                       f"stack does not create and no prerequisite declares.", resource.urn)


RULES = [
    Rule("references-resolve", "Every name an object references (PriorityClass, StorageClass, Secret and key, "
         "ConfigMap, ServiceAccount, PVC, IngressClass, CRD, HPA metrics) is created by the stack, well known, or "
         "declared as a prerequisite.",
         "create it in the stack, or declare it under haai:prerequisites with a one-line reason.",
         "none (Kubernetes admission and kubelet errors at run time)", _references_resolve, stack=True),
    Rule("namespace-default-deny", "Every namespace with workloads has a default-deny NetworkPolicy.",
         "add a NetworkPolicy with podSelector: {} and policyTypes [Ingress, Egress] and no rules.",
         "Polaris missingNetworkPolicy; kube-score pod-networkpolicy; Kyverno add-networkpolicy", _default_deny,
         stack=True, config=EXEMPT),
    Rule("redis-cluster-ha", "Redis Clusters have >= 3 masters, the tier's replicas per shard, AOF persistence on "
         "PVCs, auth from a Secret, and shard members in distinct zones.",
         "use RedisCluster with replicas_per_shard >= 1 over >= members-per-shard zones.", "none", _redis_ha,
         stack=True, config=REDIS_REPLICAS),
    Rule("inference-reaches-redis", "Pods configured for Redis can reach it on 6379 under every NetworkPolicy "
         "(a policy that blocks them is an outage).",
         "give the pods the Redis client label and an egress rule to the Redis pods.", "none", _redis_reachable,
         stack=True),
]
