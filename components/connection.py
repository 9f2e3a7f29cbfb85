"""The connection contract a Redis cluster hands to its clients."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RedisConnection(BaseModel):
    """How a client reaches a Redis Cluster. Produced by ``RedisCluster``, consumed by ``InferenceService``.

    The password is never here: only the Secret's name and key, so pods read it via ``secretKeyRef``.
    """

    # Attribute docstrings are the descriptions, for pydantic and for the component provider's schema alike.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    seed_hosts: list[str]
    """Stable DNS names of the cluster members, for client discovery."""
    port: int = Field(default=6379, ge=1, le=65535)
    """Client port."""
    password_secret_name: str
    """Secret that holds the password."""
    password_secret_key: str = "password"
    """Key of the password in that Secret."""
    member_selector: dict[str, str]
    """Labels of the Redis pods (the clients' egress target)."""
    client_labels: dict[str, str]
    """Labels a client pod needs to pass Redis' NetworkPolicy."""
    namespace: str
    """Namespace of the Redis pods (clients elsewhere reach them through a namespace selector)."""

    def seed_nodes(self) -> str:
        """The seed list as clients expect it: ``host:port,host:port``."""
        return ",".join(f"{host}:{self.port}" for host in self.seed_hosts)

    def get(self, key: str, default: Any = None) -> Any:
        """Read a field like a mapping key: how the component provider reads a complex output."""
        return getattr(self, key, default)
