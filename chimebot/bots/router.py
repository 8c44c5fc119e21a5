"""The bot router: reads the event log and queues deliveries for bots, once each, across restarts.

The event log is the outbox of the transactional-outbox pattern: every message, join and departure
is written to it in the same transaction as the change itself, so nothing a client was told is
committed can be missing from it. The router follows the log from a position kept in the database
(``log_cursors``) and, in one transaction, inserts the deliveries for a page of entries and moves the
position past them. A crash before that commit leaves the page to be read again; after it, the page
is done. Nodes that read the same page race on the position (a conditional UPDATE) and only one wins.
Writing nothing on the message path keeps webhooks as fast as before bots existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.background import cancel_and_wait
from chimebot.bots.events import Directory, Plan, bot_of, plan
from chimebot.bus import MEMBER_JOINED
from chimebot.clock import Clock
from chimebot.store import Store
from chimebot.store import bots as qb
from chimebot.store import messages as qm

log = logging.getLogger(__name__)

CURSOR = "bots"
PAGE = 500

# Called after each committed page: (the plan) -> None; tells senders about disabled bots, wakes the worker.
OnPlanned = Callable[[Plan], Awaitable[None]]


class Router:
    """Follows the event log and turns its entries into queued deliveries."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        domain: str,
        system_address: str,
        poll_seconds: float,
        on_planned: OnPlanned,
    ) -> None:
        self._store = store
        self._clock = clock
        self._domain = domain
        self._system = system_address
        self._poll = poll_seconds
        self._on_planned = on_planned
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Until a bot exists there is nothing to route, and the log is not read at all: a server
        # without bots pays one small query per poll. The first bot moves the position to the end
        # of the log in the same transaction that creates it (``fast_forward``).
        self._active = False

    async def place(self) -> None:
        """On a database that never had a router, start after the newest entry (bots get no history)."""
        async with self._store.transaction() as conn:
            await qb.start_cursor(conn, CURSOR, await qm.last_event_id(conn))

    def start(self) -> None:
        """Start following the log."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="chimebot-bot-router")

    async def stop(self) -> None:
        """Stop following the log (a page being committed is finished or rolled back, never half)."""
        await cancel_and_wait(self._task)
        self._task = None

    @property
    def active(self) -> bool:
        """Whether any bot exists (as far as this node knows): until then nothing is routed or sent."""
        return self._active

    def activate(self) -> None:
        """This node just declared bots: follow the log from now on."""
        self._active = True
        self._wake.set()

    def wake(self, _newest: int = 0) -> None:
        """Tell the router that the log grew (ignored while no bot exists: the poll looks for one)."""
        if self._active:
            self._wake.set()

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()
            try:
                while await self.route() == PAGE:
                    pass
            except Exception as exc:  # the database may be away; the next round reads the same page
                log.warning("routing events to bots failed: %s", exc)
                await asyncio.sleep(min(self._poll, 1.0))

    @staticmethod
    async def fast_forward(conn: AsyncConnection) -> None:
        """Inside the transaction that creates the first bot: nothing before it concerns a bot."""
        await qb.move_cursor(conn, CURSOR, await qm.last_event_id(conn))

    async def route(self) -> int:
        """Queue the deliveries of the next page of the log; return how many entries it had."""
        if not self._active:
            async with self._store.read() as conn:
                self._active = await qb.any_bot(conn)
            if not self._active:
                return 0
        async with self._store.snapshot() as conn:
            position = await qb.cursor(conn, CURSOR)
            if position is None:
                return 0
            rows = await qm.events_since(conn, position, limit=PAGE)
            if not rows:
                return 0
            room_ids = {r["event_room_id"] for r in rows}
            rooms = await qb.bots_by_room(conn, room_ids)
            # The membership as of the page's last entry: undo what was joined or left after it.
            for later in await qb.membership_after(conn, rows[-1]["event_id"], room_ids):
                if (name := bot_of(later)) is not None:
                    present = rooms.setdefault(later["room_id"], set())
                    (present.discard if later["type"] == MEMBER_JOINED else present.add)(name)
            rooms = {room: names for room, names in rooms.items() if names}
            if not rooms and not any(bot_of(r) for r in rows):  # no bot anywhere near: just move on
                directory = None
            else:
                bots = {b.name: b for b in await qb.all_bots(conn)}
                directory = Directory(
                    bots, rooms, await qb.addresses_of(conn, _people(rows)), self._domain, self._system
                )
        planned = plan(rows, directory, self._clock.now()) if directory else Plan()
        async with self._store.transaction() as conn:
            if not await qb.advance_cursor(conn, CURSOR, position, rows[-1]["event_id"]):
                return PAGE  # another node routed this page first; read on from where it left off
            await qb.insert_deliveries(conn, planned.deliveries)
        await self._on_planned(planned)
        return len(rows)


def _people(rows: Sequence[RowMapping]) -> set[str]:
    """The users whose addresses the page's events need: message senders, who added or removed bots."""
    ids = {r["sender_id"] for r in rows if r["sender_kind"] == "user"}
    for r in rows:
        if bot_of(r) is not None:
            payload = json.loads(r["payload"])
            ids.update(v for v in (payload.get("added_by"), payload.get("removed_by")) if v)
    return ids
