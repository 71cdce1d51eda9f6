"""Settings every service reads from the environment (LABELMESH_*); each service extends them."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Where the infrastructure is and how this process identifies itself."""

    model_config = SettingsConfigDict(env_prefix="LABELMESH_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    mongo_uri: str = "mongodb://127.0.0.1:27017/"
    # Prefixes every database and consumer group, so two deployments (or test runs) can share a cluster.
    namespace: str = "labelmesh"
    http_host: str = "127.0.0.1"
    http_port: int = 0
    log_level: str = "INFO"
    # A failing batch is retried this many times before its events are isolated and dead-lettered.
    max_attempts: int = 3
    retry_backoff_s: float = 0.5

    def database_name(self, service: str) -> str:
        return f"{self.namespace}_{service}"

    def consumer_group(self, service: str) -> str:
        return f"{self.namespace}.{service}"
