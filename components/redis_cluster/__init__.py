"""RedisCluster: spec (Args), build (placement, shipped files, object builders), component (resources).

The scripts and redis.conf template in ``scripts/`` ship verbatim in the cluster's ConfigMap.
"""

from .build import Member, config_files, plan_members, redis_conf, statefulset_spec, topology_hash
from .component import RedisCluster
from .spec import RedisClusterArgs, RedisClusterSpec

__all__ = [
    "Member",
    "RedisCluster",
    "RedisClusterArgs",
    "RedisClusterSpec",
    "config_files",
    "plan_members",
    "redis_conf",
    "statefulset_spec",
    "topology_hash",
]
