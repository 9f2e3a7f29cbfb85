"""The connection contract a Redis cluster hands to its clients."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RedisConnection(BaseModel):
    """How a client reaches a Redis Cluster. Produced by ``RedisCluster``, consumed by ``InferenceService``.

    The password is never here: only the Secret's name and key, so pods read it via ``secretKeyRef``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed_hosts: list[str] = Field(description="Stable DNS names of cluster members, for client discovery.")
    port: int = Field(default=6379, ge=1, le=65535, description="Client port.")
    password_secret_name: str = Field(description="Secret that holds the password.")
    password_secret_key: str = Field(default="password", description="Key of the password in that Secret.")
    member_selector: dict[str, str] = Field(description="Labels of the Redis pods (egress target).")
    client_labels: dict[str, str] = Field(description="Labels a client pod needs to pass Redis' NetworkPolicy.")

    def seed_nodes(self) -> str:
        """The seed list as clients expect it: ``host:port,host:port``."""
        return ",".join(f"{host}:{self.port}" for host in self.seed_hosts)
