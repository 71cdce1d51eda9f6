"""A request the gateway's rules refuse, with the kind of refusal; the servicers map each kind to a gRPC status."""

from __future__ import annotations

from typing import Literal

# invalid: INVALID_ARGUMENT, not_found: NOT_FOUND, precondition: FAILED_PRECONDITION, forbidden: PERMISSION_DENIED,
# exists: ALREADY_EXISTS, exhausted: RESOURCE_EXHAUSTED (services/gateway/api.py, STATUS).
Kind = Literal["invalid", "not_found", "precondition", "forbidden", "exists", "exhausted"]


class Refused(ValueError):
    def __init__(self, code: Kind, message: str) -> None:
        super().__init__(message)
        self.code = code
