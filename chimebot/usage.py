"""Usage and billing: record what makes a day an active Pro day, and report it per account and month."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.clock import Clock
from chimebot.config import BillingConfig
from chimebot.store import Store

ActivityKind = Literal["scheduled_meeting", "large_meeting", "recording", "dial_in"]


class UsageReport:
    """One account's usage in one month (placeholder; filled in by the usage work)."""

    def to_json(self) -> dict[str, Any]:
        """The report as the API shows it."""
        raise NotImplementedError

    def to_csv(self) -> str:
        """The report as CSV."""
        raise NotImplementedError


class Usage:
    """Records active-Pro-day activity and computes the monthly report."""

    def __init__(self, store: Store, clock: Clock, billing: BillingConfig) -> None:
        self._store = store
        self._clock = clock
        self._billing = billing

    async def record(
        self,
        conn: AsyncConnection,
        *,
        account_id: str,
        user_id: str,
        kind: ActivityKind,
        meeting_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record one activity inside the caller's transaction, with the user's license at that moment."""
        raise NotImplementedError

    async def report(self, account_id: str, month: str) -> UsageReport:
        """The report of an account for a month given as ``YYYY-MM`` (in the account's time zone)."""
        raise NotImplementedError
