"""Gateway settings (LABELMESH_GATEWAY_*)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from labelmesh.runtime.settings import CommonSettings
from services.gateway.domain.golden import DEFAULT_GOLDEN_RATE, DEFAULT_GOLDEN_WARMUP_TASKS, DEFAULT_SETTLED_GOLDEN_RATE


DEFAULT_ADMIN_TOKEN = "change-me-admin-token"  # a placeholder everyone can read: refused outside dev_mode


class GatewaySettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LABELMESH_GATEWAY_", extra="ignore")

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # The bootstrap credential for the admin role; annotators get their own tokens from CreateAnnotator.
    admin_token: SecretStr = SecretStr(DEFAULT_ADMIN_TOKEN)
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    lease_seconds: float = 300.0
    # A sweeper frees an expired lease only this long after its expiry, and submit/skip use it only before: their
    # writes to one lease never overlap, whichever replicas run them (services/gateway/queue.py).
    lease_grace_seconds: float = 10.0
    # How often expired leases go back to the queue; each sweep reads the leases in flight (one document each).
    sweep_seconds: float = 5.0
    # How often the gRPC health status is brought in line with readiness (MongoDB and the broker answer).
    health_check_s: float = 5.0
    # The outbox relay (labelmesh/runtime/outbox.py, services/gateway/relay.py): every relay_seconds, events stored at
    # least relay_after_s ago and still not published (the gateway died, or its publish failed, and nobody retried)
    # are published by the replica that claims them; a claim lasts at least relay_claim_s. relay_after_s is longer
    # than a database command may take before it fails (mongo_socket_timeout_s, 60 s), so a call still alive is
    # past the steps the relay would do for it, not in the middle of them.
    relay_seconds: float = 5.0
    # A relay pass that failed is tried again this long after, doubling while it keeps failing (gateway/jobs.py).
    relay_retry_s: float = 0.5
    relay_after_s: float = 90.0
    relay_claim_s: float = 60.0
    golden_rate: float = DEFAULT_GOLDEN_RATE
    # After golden_warmup_tasks tasks an annotator gets golden tasks at golden_settled_rate
    # (services/gateway/domain/golden.py).
    golden_settled_rate: float = DEFAULT_SETTLED_GOLDEN_RATE
    golden_warmup_tasks: int = DEFAULT_GOLDEN_WARMUP_TASKS
    # Keeps the golden schedule unpredictable: the draw is public code, so without a secret salt anyone could
    # compute which of their tasks are golden. Set it from a Secret in production.
    golden_salt: SecretStr = SecretStr("")
    # A laptop or a test may run with the placeholder admin token and no golden salt; nothing else may
    # (unsafe_defaults below). Set LABELMESH_GATEWAY_DEV_MODE=1 only where nobody but you reaches the gateway.
    dev_mode: bool = False
    max_batch_items: int = 5_000
    # One IngestStream holds its items in memory until it ends (they are checked together, so a bad item ingests
    # nothing): these bound that memory. Split bigger imports into several streams.
    max_stream_items: int = 100_000
    max_stream_bytes: int = 256 * 1024 * 1024
    # Per-caller rate limits (services/gateway/limits.py): calls per second and burst; a rate of 0 turns one off.
    ingest_rate: float = 20.0
    ingest_burst: float = 40.0
    lease_rate: float = 200.0
    lease_burst: float = 400.0
    flag_rate: float = 2.0
    flag_burst: float = 20.0
    max_text_chars: int = 100_000
    http_port: int = 9105

    def rate_limits(self) -> dict[str, tuple[float, float]]:
        return {"ingest": (self.ingest_rate, self.ingest_burst), "lease": (self.lease_rate, self.lease_burst),
                "flag": (self.flag_rate, self.flag_burst)}

    def unsafe_defaults(self) -> list[str]:
        """Why this gateway must not start outside dev_mode: a credential or secret left at a public value."""
        problems = []
        if self.admin_token.get_secret_value() == DEFAULT_ADMIN_TOKEN:
            problems.append(f"the admin token is the public placeholder {DEFAULT_ADMIN_TOKEN!r}: set "
                            "LABELMESH_GATEWAY_ADMIN_TOKEN")
        if not self.golden_salt.get_secret_value():
            problems.append("the golden salt is empty, so anyone can compute which of their tasks are golden: set "
                            "LABELMESH_GATEWAY_GOLDEN_SALT to a random secret")
        return problems
