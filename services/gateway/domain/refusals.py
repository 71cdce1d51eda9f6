"""A request the gateway's rules refuse, with the kind of refusal; the servicers map each kind to a gRPC status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

# invalid: INVALID_ARGUMENT, not_found: NOT_FOUND, precondition: FAILED_PRECONDITION, forbidden: PERMISSION_DENIED,
# exists: ALREADY_EXISTS, exhausted: RESOURCE_EXHAUSTED (services/gateway/api.py, STATUS).
Kind = Literal["invalid", "not_found", "precondition", "forbidden", "exists", "exhausted"]


Problems = list[tuple[str, str]]  # (field, why), as a google.rpc BadRequest lists them


class Refused(ValueError):
    """`fields`: each problem's (field, why), sent as a google.rpc BadRequest detail (services/gateway/api.py)."""

    def __init__(self, code: Kind, message: str, fields: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.fields = tuple(fields)


def invalid(problems: Problems) -> Refused:
    """INVALID_ARGUMENT for a request with one or more problems: the message says each, the detail names each field."""
    return Refused("invalid", "; ".join(why for _, why in problems), problems)
