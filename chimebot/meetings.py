"""Meetings, as far as licenses and billing need them today; the meetings work builds on this."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.accounts import check_name
from chimebot.clock import Clock
from chimebot.errors import Conflict, Forbidden, NotFound
from chimebot.ids import new_meeting_id
from chimebot.models import User, iso
from chimebot.permissions import require_pro
from chimebot.store import Store
from chimebot.store import meetings as q
from chimebot.texts import MeetingTexts
from chimebot.usage import Usage

MeetingType = Literal["instant", "scheduled"]
ASSISTANT_TOPIC = "Scheduled meeting"  # the topic of a meeting id the scheduling assistant generates
_NEW_ID_ATTEMPTS = 5  # ids are random among 9·10⁹: a second attempt is already a rarity


@dataclass(frozen=True, slots=True)
class Meeting:
    """A meeting with its 10-digit id and host."""

    id: str
    account_id: str
    host_id: str
    type: MeetingType
    topic: str
    start_at: datetime

    def to_json(self, base_url: str) -> dict[str, Any]:
        """The meeting as the API shows it."""
        return {
            "id": self.id,
            "host_id": self.host_id,
            "type": self.type,
            "topic": self.topic,
            "start_at": iso(self.start_at),
            "join_url": f"{base_url}/meetings/{self.id}",
        }


class Meetings:
    """Creating meetings and starting recordings: Pro features, each checked by ``require_pro``."""

    def __init__(self, store: Store, clock: Clock, usage: Usage, texts: MeetingTexts) -> None:
        self._store = store
        self._clock = clock
        self._usage = usage
        self._texts = texts

    async def create(self, host: User, kind: MeetingType, topic: str, start_at: datetime | None) -> Meeting:
        """Create an instant meeting (now) or a scheduled one (at ``start_at``)."""
        require_pro(host, "instant meetings" if kind == "instant" else "scheduling meetings")
        start = self._clock.now() if kind == "instant" or start_at is None else start_at
        meeting = Meeting(
            new_meeting_id(), host.account_id, host.id, kind, check_name(topic, "a topic"), start
        )
        async with self._store.transaction() as conn:
            await q.insert_meeting(
                conn, meeting.id, meeting.account_id, host.id, kind, meeting.topic, start, self._clock.now()
            )
        return meeting

    async def start_recording(self, user: User, meeting_id: str) -> None:
        """Start recording a meeting the user hosts; a recording makes the day an active Pro day."""
        require_pro(user, "recording")
        async with self._store.transaction() as conn:
            row = await q.meeting_by_id(conn, meeting_id)
            if row is None or row["account_id"] != user.account_id:
                raise NotFound(f"there is no meeting {meeting_id!r} in your account")
            if row["host_id"] != user.id:
                raise Forbidden("only the meeting's host can record it")
            await self._usage.record(
                conn, account_id=user.account_id, user_id=user.id, kind="recording", meeting_id=meeting_id
            )

    async def assistant(self, host: User, *, personal: bool) -> dict[str, Any]:
        """A meeting id for a calendar invitation (the host's personal id, or a new one kept as the
        host's), the addresses to invite and the attendee invitation text (Pro)."""
        require_pro(host, "scheduling meetings")
        async with self._store.transaction() as conn:
            if personal:
                meeting_id = await q.personal_meeting_id(conn, host.id)
                if meeting_id is None:
                    raise NotFound("you have no personal meeting id")
            else:
                meeting_id = await self._new_meeting_id(conn, host)
        texts = self._texts
        return {
            "meeting_id": meeting_id,
            "personal": personal,
            "join_url": texts.join_url(meeting_id),
            "addresses": texts.addresses(meeting_id),
            "dial_in": texts.dial_in(meeting_id),
            "invitation": texts.invitation(
                meeting_id=meeting_id, host_name=host.display_name, host_email=host.email
            ),
        }

    async def owner_of(self, meeting_id: str) -> str | None:
        """The id of the user whose personal meeting id this is or who hosts the meeting, else None."""
        async with self._store.transaction() as conn:
            return await q.owner_of(conn, meeting_id)

    async def _new_meeting_id(self, conn: AsyncConnection, host: User) -> str:
        """Generate an id nobody owns and record it as the host's, so that ``pin+<id>@`` invitations
        to it are known to be the host's."""
        now = self._clock.now()
        for _ in range(_NEW_ID_ATTEMPTS):
            meeting_id = new_meeting_id()
            # The meetings table's key catches a clash with another meeting, not one with a personal id.
            if await q.owner_of(conn, meeting_id) is None:
                await q.insert_meeting(
                    conn, meeting_id, host.account_id, host.id, "scheduled", ASSISTANT_TOPIC, now, now
                )
                return meeting_id
        raise Conflict("could not find a free meeting id; try again")
