"""What the event log holds: events drafted inside a change, and events once committed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class EventDraft:
    """An event to record in the same transaction as the change that caused it."""

    room_id: str
    type: str
    created_at: datetime
    user_id: str | None = None
    message: dict[str, Any] | None = None  # the message row, for message.created
    payload: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    """An event that is durable, with the id the stream knows it by."""

    id: int
    draft: EventDraft
