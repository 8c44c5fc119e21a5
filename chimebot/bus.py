"""Fan-out of committed events to the stream clients of this node.

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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chimebot.models import iso, message_json
from chimebot.store.writer import CommittedEvent

MEMBER_JOINED = "member.joined"
MEMBER_LEFT = "member.left"
MESSAGE_CREATED = "message.created"


def event_frame(
    event_id: int, event_type: str, room_id: str, created_at: Any, data: Mapping[str, Any] | None
) -> str:
    """Serialise one stream event; the same text goes to every client."""
    return json.dumps(
        {"id": event_id, "type": event_type, "room_id": room_id, "created_at": iso(created_at), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def committed_frame(event: CommittedEvent) -> str:
    """The frame of an event the writer just committed."""
    d = event.draft
    data = message_json(d.message) if d.message is not None else d.payload
    return event_frame(event.id, d.type, d.room_id, d.created_at, data)


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

    def publish(self, events: Sequence[CommittedEvent]) -> None:
        """Deliver committed events, in id order, to every subscription that should see them."""
        for event in events:
            draft = event.draft
            if draft.type == MEMBER_JOINED and draft.user_id:
                for sub in self._by_user.get(draft.user_id, ()):
                    sub.room_ids.add(draft.room_id)
                    self._by_room[draft.room_id].add(sub)
            targets = set(self._by_room.get(draft.room_id, ()))
            if draft.user_id:
                targets.update(self._by_user.get(draft.user_id, ()))
            if not targets:
                continue
            frame = committed_frame(event)
            for sub in targets:
                sub.offer(event.id, frame)
            if draft.type == MEMBER_LEFT and draft.user_id:
                for sub in self._by_user.get(draft.user_id, ()):
                    sub.room_ids.discard(draft.room_id)
                    _discard(self._by_room, draft.room_id, sub)


def _discard(index: dict[str, set[Subscription]], key: str, sub: Subscription) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]
