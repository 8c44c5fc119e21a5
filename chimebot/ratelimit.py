"""Per-key token buckets: the webhook rate limit (1 request/s per webhook by default)."""

from __future__ import annotations

from typing import Protocol

from chimebot.clock import Clock


class RateLimiter(Protocol):
    """Decides whether one more request for a key is allowed now."""

    async def take(self, key: str) -> float:
        """Take a token; return 0 when allowed, else the seconds until one is free."""
        ...

    async def give_back(self, key: str) -> None:
        """Return a token taken for a request that turned out not to count (a successful sign-in)."""
        ...


class TokenBuckets:
    """A token bucket per key in this process, refilled at ``rate`` per second up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Clock, *, max_keys: int = 100_000) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when last refilled)

    async def take(self, key: str) -> float:
        """Take a token for ``key``; return 0 when allowed, else the seconds until one is free."""
        now = self._clock.monotonic()
        tokens, then = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._buckets.clear()  # bounded memory; a full bucket is what a forgotten key gets anyway
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    async def give_back(self, key: str) -> None:
        """Return a token to ``key``'s bucket (never above the burst)."""
        if key in self._buckets:
            tokens, then = self._buckets[key]
            self._buckets[key] = (min(self._burst, tokens + 1.0), then)
