"""What bots receive: Amazon Chime's event shapes, and which event-log entries become which events.

Chime sent ``Invite``, ``Mention`` and ``Remove`` with these field names; ``Message`` (every message
in a bot's rooms) and ``MeetingStarted`` are chimebot's, in the same shape. Planning is a pure
function of log entries and room membership, so the router can run it between its reads and its
one write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chimebot.bus import MEETING_STARTED, MEMBER_JOINED, MEMBER_LEFT, MESSAGE_CREATED
from chimebot.models import BOT_ID_PREFIX, Bot, bot_address, iso

PERSISTENT = "Persistent"
SHORT_LIVED = "ShortLived"
# Events whose recipient may answer through a short-lived endpoint; an Invite carries a persistent one.
ANSWERABLE = {"Mention": SHORT_LIVED, "Message": SHORT_LIVED, "Invite": PERSISTENT}


def chime_event(event_type: str, sender: str, room_id: str, at: datetime, **extra: Any) -> dict[str, Any]:
    """An event in Chime's shape (without its endpoint, which is added when it is sent)."""
    return {
        "Sender": {"SenderId": sender, "SenderIdType": "EmailId"},
        "Discussion": {"DiscussionId": room_id, "DiscussionType": "Room"},
        "EventType": event_type,
        "EventTimestamp": iso(at),
    } | extra


def with_endpoint(event: Mapping[str, Any], kind: str, url: str) -> dict[str, Any]:
    """The event with its ``InboundHttpsEndpoint``, in the field order of Chime's examples."""
    shown = {k: event[k] for k in ("Sender", "Discussion", "EventType")}
    shown["InboundHttpsEndpoint"] = {"EndpointType": kind, "Url": url}
    return shown | {k: v for k, v in event.items() if k not in shown}


def mentioned(content: str, bot: Bot, domain: str) -> bool:
    """Whether a message @mentions the bot by address, name or display name, ignoring case."""
    if "@" not in content:
        return False
    address = bot_address(bot.name, domain)
    aliases = {address, address.split("@", 1)[0], bot.name, bot.display_name}
    return any(_mention_pattern(alias).search(content) for alias in aliases if alias)


def _mention_pattern(alias: str) -> re.Pattern[str]:
    # Not inside a word or an address before, and the alias not running on into a longer name after.
    return re.compile(rf"(?<![\w@])@{re.escape(alias)}(?![\w@-])", re.IGNORECASE)


@dataclass(slots=True)
class Plan:
    """What a page of the event log asks for: deliveries to queue, and senders to tell."""

    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # (user id, room id, message id, bot) for each mention of a disabled bot
    refusals: list[tuple[str, str, str, Bot]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Directory:
    """What planning needs to know besides the log: the bots, who is in which room, addresses."""

    bots: Mapping[str, Bot]
    rooms: Mapping[str, set[str]]  # bot names in each room, as of the last entry of the page
    addresses: Mapping[str, str]  # user id -> address
    domain: str
    system_address: str  # the sender of what the config did (joins from `[[bots]] rooms`)


def bot_of(row: Mapping[str, Any]) -> str | None:
    """The bot a membership entry is about, or None for a person."""
    if row["type"] not in (MEMBER_JOINED, MEMBER_LEFT) or not row["payload"]:
        return None
    user_id = json.loads(row["payload"]).get("user_id", "")
    return user_id[len(BOT_ID_PREFIX) :] if user_id.startswith(BOT_ID_PREFIX) else None


def plan(rows: Sequence[Mapping[str, Any]], directory: Directory, now: datetime) -> Plan:
    """Turn log entries (``store.messages.events_since`` rows) into deliveries, oldest first."""
    members = _membership(rows, directory.rooms)
    result = Plan()
    for row, present in zip(rows, members, strict=True):
        for bot_name, event in _events_of(row, present, directory, result):
            bot = directory.bots.get(bot_name)
            if bot is None or not bot.ready or event["EventType"] not in bot.events:
                continue
            result.deliveries.append(
                {
                    "bot_name": bot_name,
                    "room_id": row["event_room_id"],
                    "event_type": event["EventType"],
                    "event_id": row["event_id"],
                    "payload": json.dumps(event, separators=(",", ":")),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    return result


def _membership(rows: Sequence[Mapping[str, Any]], now: Mapping[str, set[str]]) -> list[frozenset[str]]:
    """The bots in each entry's room when the entry was written, from the membership after the page.

    Walking back from the end, a join means the bot was not there before it, a departure that it was.
    """
    state = {room: set(names) for room, names in now.items()}
    found: list[frozenset[str]] = [frozenset()] * len(rows)
    for i in range(len(rows) - 1, -1, -1):
        row = rows[i]
        room = state.setdefault(row["event_room_id"], set())
        found[i] = frozenset(room)
        if (name := bot_of(row)) is not None:
            (room.discard if row["type"] == MEMBER_JOINED else room.add)(name)
    return found


def _events_of(
    row: Mapping[str, Any], present: frozenset[str], directory: Directory, result: Plan
) -> list[tuple[str, dict[str, Any]]]:
    """The (bot, event) pairs one log entry causes."""
    room_id, at = row["event_room_id"], row["event_created_at"]
    kind = row["type"]
    if kind in (MEMBER_JOINED, MEMBER_LEFT):
        name = bot_of(row)
        if name is None:
            return []
        payload = json.loads(row["payload"])
        actor = payload.get("added_by") if kind == MEMBER_JOINED else payload.get("removed_by")
        sender = directory.addresses.get(actor or "", directory.system_address)
        event_type = "Invite" if kind == MEMBER_JOINED else "Remove"
        return [(name, chime_event(event_type, sender, room_id, at))]
    if kind == MEETING_STARTED and row["payload"]:
        meeting = json.loads(row["payload"])
        sender = meeting.get("organizer") or directory.system_address
        details = {
            "MeetingId": meeting.get("meeting_id"),
            "Topic": meeting.get("topic"),
            "StartTime": meeting.get("start_at"),
            "JoinUrl": meeting.get("join_url"),
        }
        event = chime_event("MeetingStarted", sender, room_id, at, Meeting=details)
        return [(name, event) for name in sorted(present)]
    if kind != MESSAGE_CREATED or row["id"] is None or row["sender_kind"] == "bot":
        return []  # bots do not hear bots: two bots answering each other would never stop
    content = row["content"]
    sender = directory.addresses.get(row["sender_id"]) if row["sender_kind"] == "user" else None
    sender = sender or f"{row['sender_id']}@webhooks.{directory.domain}"
    out = []
    for name in sorted(present):
        bot = directory.bots.get(name)
        if bot is None:
            continue
        extra = {"Message": content, "MessageId": row["id"]}
        if mentioned(content, bot, directory.domain):
            if not bot.enabled and row["sender_kind"] == "user":
                result.refusals.append((row["sender_id"], room_id, row["id"], bot))
            out.append((name, chime_event("Mention", sender, room_id, row["created_at"], **extra)))
        out.append((name, chime_event("Message", sender, room_id, row["created_at"], **extra)))
    return out
