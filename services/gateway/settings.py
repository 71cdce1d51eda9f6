"""Gateway settings (LABELMESH_GATEWAY_*)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from labelmesh.runtime.settings import CommonSettings


class GatewaySettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LABELMESH_GATEWAY_", extra="ignore")

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # The bootstrap credential for the admin role; annotators get their own tokens from CreateAnnotator.
    admin_token: SecretStr = SecretStr("change-me-admin-token")
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    lease_seconds: float = 300.0
    # A sweeper frees an expired lease only this long after its expiry, and submit/skip use it only before: their
    # writes to one lease never overlap, whichever replicas run them (services/gateway/queue.py).
    lease_grace_seconds: float = 10.0
    # How often expired leases go back to the queue; each sweep reads the leases in flight (one document each).
    sweep_seconds: float = 5.0
    golden_rate: float = 0.05
    # After golden_warmup_tasks tasks an annotator gets golden tasks at golden_settled_rate (services/gateway/golden.py).
    golden_settled_rate: float = 0.02
    golden_warmup_tasks: int = 400
    # Keeps the golden schedule unpredictable: the draw is public code, so without a secret salt anyone could
    # compute which of their tasks are golden. Set it from a Secret in production.
    golden_salt: SecretStr = SecretStr("")
    max_batch_items: int = 5_000
    max_text_chars: int = 100_000
    http_port: int = 9105
