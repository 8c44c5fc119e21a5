"""Fan-out of committed events to the stream clients of this node, in id order.

Each event is serialised to its JSON frame once; every interested subscription gets the same
string appended to its buffer, and its own sender task writes whatever accumulated (so under load
one wake-up sends many frames). A client that falls more than ``queue_size`` frames behind is
cut off with a close code that tells it to reconnect with ``since=<last id>``: a slow phone never
holds up the room, and the event log makes sure it misses nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chimebot.models import iso, message_json
from chimebot.store.log import CommittedEvent

MEMBER_JOINED = "member.joined"
MEMBER_LEFT = "member.left"
MESSAGE_CREATED = "message.created"


def event_frame(
    event_id: int, event_type: str, room_id: str, created_at: str, data: Mapping[str, Any] | None
) -> str:
    """Serialise one stream event (``created_at`` already in ISO 8601); the same text goes to every client."""
    return json.dumps(
        {"id": event_id, "type": event_type, "room_id": room_id, "created_at": created_at, "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """A committed event ready for delivery: what routing needs, and its frame."""

    id: int
    room_id: str
    type: str
    user_id: str | None
    frame: str

    @classmethod
    def from_committed(cls, event: CommittedEvent) -> Envelope:
        """Wrap an event the writer of this process just committed."""
        d = event.draft
        if d.message is not None:  # a message's event carries the message's own time
            data: Any = message_json(d.message)
            created = data["created_at"]
        else:
            data, created = d.payload, iso(d.created_at)
        return cls(
            event.id, d.room_id, d.type, d.user_id, event_frame(event.id, d.type, d.room_id, created, data)
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Envelope | None:
        """Wrap an event read back from the log (see ``store.messages.events_since``); None if void."""
        if row["type"] == MESSAGE_CREATED:
            if row["id"] is None:  # its message is gone (the room was deleted)
                return None
            data: Any = message_json(row)
        else:
            data = json.loads(row["payload"]) if row["payload"] else None
        created = iso(row["event_created_at"])
        frame = event_frame(row["event_id"], row["type"], row["event_room_id"], created, data)
        return cls(row["event_id"], row["event_room_id"], row["type"], row["event_user_id"], frame)


class Subscription:
    """One stream client's view of the bus: its rooms and the frames waiting to be sent."""

    __slots__ = ("_wake", "last_id", "limit", "overflowed", "pending", "room_ids", "user_id")

    def __init__(self, user_id: str, room_ids: Iterable[str], limit: int) -> None:
        self.user_id = user_id
        self.room_ids = set(room_ids)
        self.limit = limit
        self.pending: list[tuple[int, str]] = []
        self.overflowed = False
        self.last_id = 0
        self._wake = asyncio.Event()

    def offer(self, event_id: int, frame: str) -> None:
        """Queue a frame, or mark the subscription overflowed when the client is too far behind."""
        if self.overflowed:
            return
        if len(self.pending) >= self.limit:
            self.overflowed = True
            self.pending.clear()
        else:
            self.pending.append((event_id, frame))
        self._wake.set()

    async def take(self) -> list[tuple[int, str]]:
        """Wait for frames and return all that are waiting."""
        while not self.pending and not self.overflowed:
            self._wake.clear()
            await self._wake.wait()
        frames, self.pending = self.pending, []
        return frames


class Bus:
    """In-process publish/subscribe of stream events, indexed by room and by user."""

    def __init__(self) -> None:
        self._by_room: dict[str, set[Subscription]] = defaultdict(set)
        self._by_user: dict[str, set[Subscription]] = defaultdict(set)
        self.high = 0  # id of the newest event delivered; the feed keeps delivery in id order

    def subscribe(self, user_id: str, room_ids: Iterable[str], limit: int) -> Subscription:
        """Start buffering events of these rooms (and about this user) for a client."""
        sub = Subscription(user_id, room_ids, limit)
        self._by_user[user_id].add(sub)
        for room_id in sub.room_ids:
            self._by_room[room_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to a client."""
        _discard(self._by_user, sub.user_id, sub)
        for room_id in sub.room_ids:
            _discard(self._by_room, room_id, sub)

    def present(self, room_id: str) -> set[str]:
        """Return the ids of users with a live stream subscribed to a room."""
        return {sub.user_id for sub in self._by_room.get(room_id, ())}

    def deliver(self, envelopes: Iterable[Envelope]) -> None:
        """Hand events, in id order, to every subscription that should see them; older ids are skipped."""
        for env in envelopes:
            if env.id <= self.high:
                continue
            self.high = env.id
            if env.type == MEMBER_JOINED and env.user_id:
                for sub in self._by_user.get(env.user_id, ()):
                    sub.room_ids.add(env.room_id)
                    self._by_room[env.room_id].add(sub)
            room_subs = self._by_room.get(env.room_id, ())
            user_subs = self._by_user.get(env.user_id, ()) if env.user_id else ()
            for sub in room_subs:
                sub.offer(env.id, env.frame)
            for sub in user_subs:
                if sub not in room_subs:
                    sub.offer(env.id, env.frame)
            if env.type == MEMBER_LEFT and env.user_id:
                for sub in list(self._by_user.get(env.user_id, ())):
                    sub.room_ids.discard(env.room_id)
                    _discard(self._by_room, env.room_id, sub)


def _discard(index: dict[str, set[Subscription]], key: str, sub: Subscription) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]
