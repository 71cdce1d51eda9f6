"""Bearer tokens and roles: tokens are stored only as SHA-256 hashes (they are random, so no slow hash is needed)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemas.keys import ALL_PROJECTS


class Role(StrEnum):
    ANNOTATOR = "annotator"
    EXPERT = "expert"
    ADMIN = "admin"


@dataclass(frozen=True)
class Caller:
    annotator_id: str
    role: Role
    projects: frozenset[str] = frozenset({ALL_PROJECTS})  # the projects the caller may lease, label and flag in

    def member_of(self, project: str) -> bool:
        return self.role is Role.ADMIN or ALL_PROJECTS in self.projects or project in self.projects


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    """The token from `authorization: Bearer <token>` call metadata, if any."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def token_expired(annotator: dict[str, Any], now_s: float) -> bool:
    """Whether the annotator's token is past its expiry (expires_unix_ms; none: it never expires)."""
    expires = annotator.get("expires_unix_ms")
    return expires is not None and now_s * 1000 >= expires
