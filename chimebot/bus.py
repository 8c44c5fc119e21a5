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

# One encoder for every frame: json.dumps with options builds a new encoder per call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

MEMBER_JOINED = "member.joined"
MEMBER_LEFT = "member.left"
MESSAGE_CREATED = "message.created"
MEMBER_UPDATED = "member.updated"
MEETING_STARTED = "meeting.started"  # a calendar meeting started; in its chat room and calendar rooms
WEBHOOK_FAILED = "webhook.failed"  # told to a room's administrators: a webhook's template failed


def notice_room(user_id: str) -> str:
    """The room of events meant for one user only: the user's own id, which no room has, so the
    stream gives them to that user alone (by their ``user_id``)."""
    return user_id


def event_frame(
    event_id: int, event_type: str, room_id: str, created_at: str, data: Mapping[str, Any] | None
) -> str:
    """Serialise one stream event (``created_at`` already in ISO 8601); the same text goes to every client."""
    return _encode(
        {"id": event_id, "type": event_type, "room_id": room_id, "created_at": created_at, "data": data}
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
    """One stream client's view of the bus: its rooms and the frames waiting to be sent.

    A subscription starts unsettled: it knows its user but not yet the user's rooms, and it
    records the user's membership events until ``Bus.settle`` hands it the rooms as of a snapshot.
    Subscribing before reading the rooms is what makes a join or leave that happens meanwhile
    count: it is either in the snapshot or recorded here, and ids tell which.
    """

    __slots__ = ("_wake", "changes", "limit", "overflowed", "pending", "room_ids", "user_id")

    def __init__(self, user_id: str, limit: int) -> None:
        self.user_id = user_id
        self.room_ids: set[str] = set()
        self.limit = limit
        self.pending: list[tuple[int, str]] = []
        self.overflowed = False
        self.changes: list[tuple[int, str, bool]] | None = []  # (event id, room, joined) until settled
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

    def subscribe(self, user_id: str, limit: int) -> Subscription:
        """Start following a user's membership; call ``settle`` once the user's rooms are known."""
        sub = Subscription(user_id, limit)
        self._by_user[user_id].add(sub)
        return sub

    def settle(self, sub: Subscription, room_ids: Iterable[str], as_of: int) -> None:
        """Give a subscription its rooms as of event ``as_of``, plus the changes recorded after it."""
        rooms = set(room_ids)
        for event_id, room_id, joined in sub.changes or ():
            if event_id > as_of:
                (rooms.add if joined else rooms.discard)(room_id)
        sub.changes = None
        sub.room_ids = rooms
        for room_id in rooms:
            self._by_room[room_id].add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to a client."""
        _discard(self._by_user, sub.user_id, sub)
        for room_id in sub.room_ids:
            _discard(self._by_room, room_id, sub)

    def deliver(self, envelopes: Iterable[Envelope]) -> None:
        """Hand events, in id order, to every subscription that should see them; older ids are skipped."""
        for env in envelopes:
            if env.id <= self.high:
                continue
            self.high = env.id
            if env.type == MEMBER_JOINED and env.user_id:
                self._follow(env, joined=True)
            room_subs = self._by_room.get(env.room_id, ())
            user_subs = self._by_user.get(env.user_id, ()) if env.user_id else ()
            for sub in room_subs:
                sub.offer(env.id, env.frame)
            for sub in user_subs:
                if sub not in room_subs:
                    sub.offer(env.id, env.frame)
            if env.type == MEMBER_LEFT and env.user_id:
                self._follow(env, joined=False)

    def _follow(self, env: Envelope, *, joined: bool) -> None:
        """Apply a membership event to the subscriptions of the user it is about."""
        for sub in list(self._by_user.get(env.user_id or "", ())):
            if sub.changes is not None:
                sub.changes.append((env.id, env.room_id, joined))
            elif joined:
                sub.room_ids.add(env.room_id)
                self._by_room[env.room_id].add(sub)
            else:
                sub.room_ids.discard(env.room_id)
                _discard(self._by_room, env.room_id, sub)


def _discard(index: dict[str, set[Subscription]], key: str, sub: Subscription) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]
