"""Settings every service reads from the environment; each service extends them with its own prefix."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# How long an event of a project not yet known waits for its project.configured (topics are not ordered with
# each other, so an item can be read before its project), counted once per project and process
# (labelmesh.runtime.projects); then the event is dead-lettered with the reason.
PROJECT_WAIT_S = 15.0
# How long the inbox remembers an applied event id (labelmesh.runtime.inbox): far longer than any redelivery
# (an uncommitted batch comes back within a session timeout; a restart after a day's outage still within a
# week). Resetting a group's offsets to events older than this applies them again, as for a new consumer.
INBOX_RETENTION_S = 7 * 24 * 3600.0
# How often each process deletes what is past that window (a filtered delete: a scan on FerretDB 1.24).
INBOX_PRUNE_EVERY_S = 3600.0


def shared(default: Any, env: str) -> Any:
    """A setting every service reads under the same name (LABELMESH_<ENV>), whatever its own prefix."""
    return Field(default, validation_alias=f"LABELMESH_{env}")


class CommonSettings(BaseSettings):
    """Where the infrastructure is and how this process identifies itself.

    Shared settings are LABELMESH_KAFKA_BOOTSTRAP and friends; a service's own settings (and its HTTP
    port) carry its prefix, e.g. LABELMESH_ROUTER_HTTP_PORT.
    """

    model_config = SettingsConfigDict(env_prefix="LABELMESH_", extra="ignore", populate_by_name=True)

    kafka_bootstrap: str = shared("127.0.0.1:9092", "KAFKA_BOOTSTRAP")
    mongo_uri: str = shared("mongodb://127.0.0.1:27017/", "MONGO_URI")
    # Prefixes every database and consumer group, so two deployments (or test runs) can share a cluster.
    namespace: str = shared("labelmesh", "NAMESPACE")
    # Prepended to every topic name; lets isolated environments (tests, staging) share one cluster.
    topic_prefix: str = shared("", "TOPIC_PREFIX")
    log_level: str = shared("INFO", "LOG_LEVEL")
    # A failing batch is retried this many times before its events are isolated and dead-lettered.
    max_attempts: int = shared(3, "MAX_ATTEMPTS")
    retry_backoff_s: float = shared(0.5, "RETRY_BACKOFF_S")
    project_wait_s: float = shared(PROJECT_WAIT_S, "PROJECT_WAIT_S")
    inbox_retention_s: float = shared(INBOX_RETENTION_S, "INBOX_RETENTION_S")
    inbox_prune_every_s: float = shared(INBOX_PRUNE_EVERY_S, "INBOX_PRUNE_EVERY_S")
    # How long the broker waits for a consumer's heartbeat before giving its partitions away. Kafka's own
    # default since 3.0 is 45 s; aiokafka's 10 s let a CPU-starved service (2 cores, a model training in a
    # thread) lose its partitions mid-batch and handle the batch twice.
    session_timeout_ms: int = shared(30_000, "SESSION_TIMEOUT_MS")
    # A database reply that has not come after this long is an error (the batch is redelivered), not a
    # wait forever: under load FerretDB 1.24 sometimes never answers a command, and a service parked on it
    # stopped consuming for good (bench/pipeline_throughput.py, SIGUSR1 task dumps of the router).
    mongo_socket_timeout_s: float = shared(60.0, "MONGO_SOCKET_TIMEOUT_S")
    http_host: str = shared("127.0.0.1", "HTTP_HOST")
    http_port: int = 0

    def database_name(self, service: str) -> str:
        return f"{self.namespace}_{service}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def consumer_group(self, service: str) -> str:
        return f"{self.namespace}.{service}"
