"""Injected time: everything that asks "what time is it" takes a Clock, so tests never sleep."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from chimebot.errors import Invalid


class Clock(Protocol):
    """A source of wall time (UTC) and of monotonic seconds."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware in UTC."""
        ...

    def monotonic(self) -> float:
        """Return seconds from an arbitrary origin that never go backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current time in UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()


class FakeClock:
    """A clock that only moves when told to, for tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        """Return the fake current time."""
        return self._now

    def monotonic(self) -> float:
        """Return the fake monotonic time."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


def parse_utc(value: str, name: str) -> datetime:
    """Parse an ISO 8601 time with a zone (``2026-03-01T09:00:00Z``) into UTC; Invalid names ``name``."""
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise Invalid(f"`{name}` needs a time zone, like 2026-03-01T09:00:00Z or +01:00")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise Invalid(f"`{name}` must be an ISO 8601 time like 2026-03-01T09:00:00Z") from None
