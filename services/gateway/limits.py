"""Per-caller rate limits (token buckets) for the gateway's costly or abusable RPCs.

The buckets live in this replica's memory, not in MongoDB: they are abuse protection, not correctness. With n
replicas behind a balancer a caller gets at most n times the rate, which still bounds them, and no document,
count or decision depends on a bucket (a replica restarting only forgives the callers it had limited).
Keeping them local costs no database command on the lease path.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc

Clock = Callable[[], float]
RETRY_AFTER_KEY = "retry-after-ms"  # trailing metadata a client may read to back off
MAX_CALLERS = 100_000  # buckets kept per replica; the least recently seen are forgotten (a full bucket, at worst)


@dataclass
class TokenBucket:
    """`rate` tokens per second up to `burst`; take() spends one if there is one."""

    rate: float
    burst: float
    tokens: float
    at: float

    def take(self, now: float, cost: float = 1.0) -> float:
        """0 when spent; otherwise the seconds until `cost` tokens will be there (nothing is spent)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate if self.rate > 0 else math.inf


class RateLimiter:
    """One bucket per (caller, action); a rate of 0 or less turns the limit off."""

    def __init__(self, limits: dict[str, tuple[float, float]], clock: Clock = time.monotonic,
                 max_callers: int = MAX_CALLERS) -> None:
        self.limits = limits
        self.clock = clock
        self.max_callers = max_callers
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()

    def wait(self, action: str, caller: str) -> float:
        """0 if the caller may go on now, else the seconds to wait before trying again."""
        rate, burst = self.limits[action]
        if rate <= 0:
            return 0.0
        now = self.clock()
        key = (caller, action)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, burst, burst, now)
            if len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    async def check(self, context: grpc.aio.ServicerContext, action: str, caller: str) -> None:
        """Abort with RESOURCE_EXHAUSTED and a retry hint (message and `retry-after-ms`) when over the limit."""
        wait = self.wait(action, caller)
        if wait > 0:
            ms = math.ceil(wait * 1000)
            rate, burst = self.limits[action]
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{action}: rate limit of {rate:g}/s (bursts of {burst:g}) reached; retry in {ms} ms",
                                trailing_metadata=((RETRY_AFTER_KEY, str(ms)),))
