"""At a calendar meeting's start: the meeting becomes active, attendees are rung, instructions posted.

``vet`` decides whether an occurrence may be called at all (SPEC §5: a Pro organizer known to
chimebot, using a meeting id that is theirs); it runs when a calendar reports an occurrence and again
at the start, since a license can change in between. ``fire`` is the scheduler's ``on_fire``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.bus import MEETING_STARTED
from chimebot.clock import Clock
from chimebot.mail import DeliveryFailed, Mailer, compose
from chimebot.models import Sender, User, iso
from chimebot.rooms import Rooms
from chimebot.store import Store
from chimebot.store import accounts as qa
from chimebot.store import meetings as qm
from chimebot.store import occurrences as qo
from chimebot.store.log import EventDraft
from chimebot.store.occurrences import StoredOccurrence
from chimebot.texts import MeetingTexts
from chimebot.usage import Usage

log = logging.getLogger(__name__)

MEETING_RING = "meeting.ring"
RING_SECONDS = 60  # SPEC §5: an unanswered ring expires after 60 s
SCHEDULER = Sender("bot", "scheduler", "Meeting scheduler")


def ring_room(meeting_id: str) -> str:
    """The event-log room of a meeting's rings: no client subscribes to it, each ring names its user."""
    return f"meeting:{meeting_id}"


class AutoCall:
    """Checks calendar occurrences and, at their start, calls them."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        rooms: Rooms,
        usage: Usage,
        texts: MeetingTexts,
        mailer: Mailer,
        *,
        sender: str,
        calendar_rooms: Mapping[str, Sequence[str]],
        operator: Callable[[], Awaitable[User]],
    ) -> None:
        self._store = store
        self._clock = clock
        self._rooms = rooms
        self._usage = usage
        self._texts = texts
        self._mailer = mailer
        self._sender = sender
        self._calendar_rooms = calendar_rooms
        self._operator = operator

    async def vet(self, pending: Sequence[StoredOccurrence]) -> None:
        """Reject the occurrences whose organizer may not schedule them (telling the organizer once
        per event), and schedule again those rejected before whose organizer now may."""
        now = self._clock.now()
        told: set[str] = set()
        for occ in pending:
            _, reason = await self._check(occ)
            async with self._store.transaction() as conn:
                if reason is None:
                    if occ.state == qo.REJECTED and await qo.reinstate(conn, occ.key, now):
                        log.info(
                            "occurrence %s is scheduled again: its organizer may now schedule it", occ.key
                        )
                    continue
                if occ.state == qo.REJECTED and occ.reason == reason:
                    continue
                await qo.reject(conn, occ.key, reason, now)
            log.warning("occurrence %s rejected: %s", occ.key, reason)
            if occ.uid not in told:
                told.add(occ.uid)
                await self._tell_organizer(occ, reason)

    async def fire(self, occ: StoredOccurrence) -> None:
        """Call a claimed occurrence: activate the meeting, ring attendees, post and mail the details."""
        organizer, reason = await self._check(occ)
        if organizer is None or reason is not None or occ.meeting_id is None:
            reason = reason or "the occurrence has no meeting id"
            async with self._store.transaction() as conn:
                await qo.reject_fired(conn, occ.key, f"not called: {reason}", self._clock.now())
            log.warning("occurrence %s not called: %s", occ.key, reason)
            await self._tell_organizer(occ, reason)
            return
        meeting_id = occ.meeting_id
        async with self._store.read() as conn:
            found = await qa.users_by_emails(conn, [*occ.attendees, organizer.email])
        callees = [user for user in found if user.registration_status == "registered"]
        known = {user.email for user in found}
        topic = occ.summary.strip() or "Meeting"
        now = self._clock.now()
        calendar_rooms = await self._calendar_room_ids(occ.source)

        async def change(conn: AsyncConnection) -> tuple[str, list[EventDraft]]:
            await qm.activate(
                conn, meeting_id, organizer.account_id, organizer.id, topic[:200], occ.start, now
            )
            await self._usage.record(
                conn,
                account_id=organizer.account_id,
                user_id=organizer.id,
                kind="scheduled_meeting",
                meeting_id=meeting_id,
            )
            room, events = await self._rooms.room_with(conn, organizer, f"Meeting {meeting_id}", callees)
            ring = self._ring(occ, meeting_id, topic, room.id)
            started = {
                "meeting_id": meeting_id,
                "topic": topic,
                "start_at": iso(occ.start),
                "organizer": organizer.email,
                "join_url": ring.get("join_url"),
            }
            for target in [room.id, *calendar_rooms]:  # for clients, and for bots of these rooms
                events.append(EventDraft(target, MEETING_STARTED, now, payload=started | {"room_id": target}))
            for user in callees:
                payload = ring | {"user_id": user.id, "muted": user.do_not_disturb}
                events.append(
                    EventDraft(ring_room(meeting_id), MEETING_RING, now, user_id=user.id, payload=payload)
                )
            return room.id, events

        room_id = await self._store.writer.run(change)
        instructions = self._texts.instructions(
            meeting_id=meeting_id, topic=topic, start=occ.start, organizer=occ.organizer
        )
        for target in [room_id, *calendar_rooms]:
            await self._rooms.post(target, SCHEDULER, instructions, "markdown")
        outsiders = [address for address in occ.attendees if address not in known]
        for address in outsiders:
            await self._mail(address, f"Meeting now: {topic}", self._join_text(occ, meeting_id, topic))
        log.info(
            "occurrence %s: meeting %s active, %d user(s) rung, %d invited by mail",
            occ.key,
            meeting_id,
            len(callees),
            len(outsiders),
        )

    # -- internals -------------------------------------------------------------------------------

    async def _check(self, occ: StoredOccurrence) -> tuple[User | None, str | None]:
        """The organizer, and why the occurrence may not be called (None: it may)."""
        if occ.organizer is None:
            return None, "the invitation names no organizer"
        async with self._store.read() as conn:
            organizer = await qa.user_by_email(conn, occ.organizer)
            owner = await qm.owner_of(conn, occ.meeting_id) if occ.meeting_id else None
        if organizer is None:
            return None, f"the organizer {occ.organizer} is not a chimebot user"
        if organizer.registration_status != "registered":
            return organizer, f"the organizer {occ.organizer} is {organizer.registration_status}"
        if organizer.license != "pro":
            return (
                organizer,
                f"the organizer {occ.organizer} has a Basic license; scheduling meetings needs Pro",
            )
        if owner is not None and owner != organizer.id:
            return organizer, f"meeting id {occ.meeting_id} belongs to someone other than {occ.organizer}"
        return organizer, None

    def _ring(self, occ: StoredOccurrence, meeting_id: str, topic: str, room_id: str) -> dict[str, Any]:
        """What every attendee's ring says."""
        return {
            "meeting_id": meeting_id,
            "topic": topic,
            "join_url": self._texts.join_url(meeting_id),
            "organizer": occ.organizer,
            "start": iso(occ.start),
            "end": iso(occ.end),
            "room_id": room_id,
            "occurrence": occ.key,
            "expires_at": iso(self._clock.now() + timedelta(seconds=RING_SECONDS)),
        }

    async def _calendar_room_ids(self, source: str) -> list[str]:
        """The rooms configured for the calendar an occurrence came from."""
        names = self._calendar_rooms.get(source, ())
        if not names:
            return []
        owner = await self._operator()
        return [(await self._rooms.ensure(owner, name)).id for name in names]

    def _join_text(self, occ: StoredOccurrence, meeting_id: str, topic: str) -> str:
        """The mail to an attendee who is not a user."""
        return (
            f'The meeting "{topic}" organized by {occ.organizer} is starting now.\n\n'
            + self._texts.instructions(
                meeting_id=meeting_id, topic=topic, start=occ.start, organizer=occ.organizer
            )
        )

    async def _tell_organizer(self, occ: StoredOccurrence, reason: str) -> None:
        """Mail the organizer why their meeting will not be called, if they are a user: anyone can
        put any address in ORGANIZER, and chimebot must not mail strangers on an invitation's say-so."""
        if occ.organizer is None:
            return
        async with self._store.read() as conn:
            if await qa.user_by_email(conn, occ.organizer) is None:
                return
        text = (
            f'Your meeting "{occ.summary or occ.uid}" invites the meeting address, but chimebot will not '
            f"call it: {reason}.\n\nAsk an administrator of your chimebot account for help."
        )
        await self._mail(occ.organizer, f"Not scheduled: {occ.summary or occ.uid}", text)

    async def _mail(self, to: str, subject: str, text: str) -> None:
        """Send one mail; a failure is logged, never raised (the call itself went out)."""
        # A calendar's SUMMARY may hold line breaks, which a mail header cannot.
        subject = " ".join(subject.split())[:150]
        try:
            await self._mailer.send(compose(self._sender, to, subject, text))
        except DeliveryFailed as exc:
            log.warning("mail to %s failed: %s", to, exc)
        except ValueError as exc:  # an address a header cannot hold (e.g. with a comma or a line break)
            log.warning("no mail to %r: %s", to, exc)
