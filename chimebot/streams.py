"""Stream sessions: a connected client gets every event of its rooms once, in id order.

A session subscribes to the bus first and reads the user's rooms and the newest event id from one
snapshot afterwards, so nothing that happens in between is lost: a join or leave is either in the
snapshot or recorded by the subscription, and an event is either read back from the log or
delivered live (ids tell duplicates apart).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

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
        except BaseException:
            self._bus.unsubscribe(sub)
            raise
        self._bus.settle(sub, rooms, head)
        return sub, head

    def close(self, sub: Subscription) -> None:
        """End a session."""
        self._bus.unsubscribe(sub)

    async def backlog(
        self, user: User, sub: Subscription, since: int, head: int
    ) -> AsyncIterator[tuple[int, str]]:
        """Yield ``(event id, frame)`` for each event after ``since`` the client should have, in order.

        A ``stream.reset`` frame (with the id to continue from) replaces the backlog when it is longer
        than ``replay_limit`` or when ``since`` is newer than anything in the log (a restored or
        replaced database): the client should then reload history through the REST API.
        """
        if since > head:
            yield head, control_frame(RESET, last_id=head, message="`since` is newer than the newest event")
            return
        async with self._store.read() as conn:
            # Rooms left after `since` still owe the client their events up to the departure.
            left = await qm.rooms_left_since(conn, user.id, since)
        limit = self._config.replay_limit
        if head - since > limit:  # ids are global, so this over-counts; count precisely only then
            async with self._store.read() as conn:
                missed = await qm.events_since(
                    conn, since, limit=limit + 1, user_id=user.id, room_ids=sub.room_ids, left=left
                )
            if len(missed) > limit:
                message = f"more than {limit} events were missed; reload history through the REST API"
                yield head, control_frame(RESET, last_id=head, message=message)
                return
        last = since
        while True:
            async with self._store.read() as conn:
                rows = await qm.events_since(
                    conn, last, limit=REPLAY_PAGE, user_id=user.id, room_ids=sub.room_ids, left=left
                )
            for row in rows:
                env = Envelope.from_row(row)
                if env is not None:
                    yield env.id, env.frame
            if len(rows) < REPLAY_PAGE:
                return
            last = rows[-1]["event_id"]
