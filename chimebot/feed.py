"""The feed: moves committed events from the log to this node's bus, strictly in id order.

Events committed by this process's writer are handed over at once when they directly follow the
last delivered id (the common case). Anything else, such as events written by another node or by
the command line, is read back from the log: on a doorbell from Redis when clustered, and by a slow
poll always. Reading the log is correct because commits happen in id order (a single writer per
process, SQLite's write lock, and an advisory lock on PostgreSQL): once id N is visible, every
smaller id that will ever exist is visible too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from chimebot.background import cancel_and_wait
from chimebot.bus import Bus, Envelope
from chimebot.store import Store
from chimebot.store import messages as qm
from chimebot.store.log import CommittedEvent

log = logging.getLogger(__name__)

PAGE = 500


class Doorbell(Protocol):
    """Tells the other nodes that events were committed, and hears them say the same."""

    async def start(self, on_ring: Callable[[int], None]) -> None:
        """Start listening; ``on_ring`` gets the newest event id another node committed."""
        ...

    def ring(self, event_id: int) -> None:
        """Announce (without waiting) that events up to ``event_id`` are committed."""
        ...

    async def stop(self) -> None:
        """Stop listening and release connections."""
        ...


class Feed:
    """Keeps the bus supplied with every committed event, once and in order."""

    def __init__(
        self, store: Store, bus: Bus, *, poll_seconds: float, doorbell: Doorbell | None = None
    ) -> None:
        self._store = store
        self._bus = bus
        self._poll = poll_seconds
        self._doorbell = doorbell
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Told the newest id whenever the log grew (the bot router follows the log on its own).
        self.listeners: list[Callable[[int], None]] = []

    async def start(self) -> None:
        """Begin after the newest event in the log, and start following it."""
        async with self._store.read() as conn:
            self._bus.high = max(self._bus.high, await qm.last_event_id(conn))
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="chimebot-feed")
        if self._doorbell is not None:
            await self._doorbell.start(self._on_ring)

    async def stop(self) -> None:
        """Stop following the log."""
        if self._doorbell is not None:
            await self._doorbell.stop()
        await cancel_and_wait(self._task)
        self._task = None

    def on_commit(self, events: Sequence[CommittedEvent]) -> None:
        """Take what this process's writer just committed (called in id order, after the commit)."""
        ids = [e.id for e in events]
        if ids[0] == self._bus.high + 1 and ids == list(range(ids[0], ids[0] + len(ids))):
            self._bus.deliver(Envelope.from_committed(e) for e in events)
        else:  # someone else committed in between: read the log to keep the order
            self._wake.set()
        if self._doorbell is not None:
            self._doorbell.ring(ids[-1])
        self._tell(ids[-1])

    def _on_ring(self, event_id: int) -> None:
        if event_id > self._bus.high:
            self._wake.set()
        self._tell(event_id)

    def _tell(self, event_id: int) -> None:
        for listener in self.listeners:
            listener(event_id)

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception as exc:  # the database may be away for a moment; the next round retries
                log.warning("reading the event log failed: %s", exc)
                await asyncio.sleep(min(self._poll, 1.0))

    async def catch_up(self) -> None:
        """Deliver every event in the log after the last one delivered."""
        while True:
            async with self._store.read() as conn:
                rows = await qm.events_since(conn, self._bus.high, limit=PAGE)
            if not rows:
                return
            self._bus.deliver(env for env in map(Envelope.from_row, rows) if env is not None)
            self._bus.high = max(self._bus.high, rows[-1]["event_id"])
            if len(rows) < PAGE:
                return
