"""Stream sessions: a connected client gets every event of its rooms once, in id order.

A session subscribes to the bus first and reads the user's rooms and the newest event id from one
snapshot afterwards, so nothing that happens in between is lost: a join or leave is either in the
snapshot or recorded by the subscription, and an event is either read back from the log or
delivered live (ids tell duplicates apart).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.bus import Bus, Envelope, Subscription
from chimebot.config import StreamConfig
from chimebot.models import User
from chimebot.store import Store
from chimebot.store import messages as qm
from chimebot.store import rooms as qr

READY = "stream.ready"
RESET = "stream.reset"
REPLAY_PAGE = 500


def control_frame(kind: str, **fields: object) -> str:
    """A frame about the stream itself (no event id): ``stream.ready``, ``stream.reset``."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


class Streams:
    """Opens stream sessions and finds what a resuming client missed."""

    def __init__(self, store: Store, bus: Bus, config: StreamConfig) -> None:
        self._store = store
        self._bus = bus
        self._config = config

    async def open(self, user: User) -> tuple[Subscription, int]:
        """Subscribe a client; return its subscription and the newest event id when it joined."""
        sub = self._bus.subscribe(user.id, self._config.queue_size)
        try:
            async with self._store.snapshot() as conn:
                head = await qm.last_event_id(conn)
                rooms = await qr.room_ids_of(conn, user.id)
                self._bus.settle(sub, rooms, head)
        except BaseException:
            self._bus.unsubscribe(sub)
            raise
        return sub, head

    def close(self, sub: Subscription) -> None:
        """End a session."""
        self._bus.unsubscribe(sub)

    async def backlog(
        self, user: User, sub: Subscription, since: int, head: int
    ) -> AsyncIterator[tuple[int, str]]:
        """Yield ``(event id, frame)`` for each event after ``since`` the client should have, in order.

        When ``since`` is newer than anything in the log (a restored or replaced database) or the
        client missed more than ``replay_limit`` events, a ``stream.reset`` frame (with the id to
        continue from) stands for the events up to the session's start, and the client should reload
        history through the REST API; what came after still follows.
        """
        if since > head:
            yield head, control_frame(RESET, last_id=head, message="`since` is newer than the newest event")
            since = head
        elif head - since > self._config.replay_limit and await self._too_many(user, sub, since):
            message = f"more than {self._config.replay_limit} events were missed; reload history through REST"
            yield head, control_frame(RESET, last_id=head, message=message)
            since = head
        last = since
        while True:
            async with self._store.snapshot() as conn:
                rows = await self._page(conn, user, sub, since, last, REPLAY_PAGE)
            for row in rows:
                env = Envelope.from_row(row)
                if env is not None:
                    yield env.id, env.frame
            if len(rows) < REPLAY_PAGE:
                return
            last = rows[-1]["event_id"]

    async def _too_many(self, user: User, sub: Subscription, since: int) -> bool:
        """Tell whether more than ``replay_limit`` events are owed (ids are global, so count them)."""
        limit = self._config.replay_limit
        async with self._store.snapshot() as conn:
            return len(await self._page(conn, user, sub, since, since, limit + 1)) > limit

    async def _page(
        self, conn: AsyncConnection, user: User, sub: Subscription, since: int, after: int, limit: int
    ) -> list[RowMapping]:
        # Rooms left after `since` still owe the client their events up to the departure. They are
        # read for every page, after copying the subscription's rooms: a leave that the bus has
        # already applied (dropping the room) was committed before, so the log query sees it.
        rooms = set(sub.room_ids)
        left = await qm.rooms_left_since(conn, user.id, since)
        return await qm.events_since(conn, after, limit=limit, user_id=user.id, room_ids=rooms, left=left)
