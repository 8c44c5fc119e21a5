"""Auto-call end to end (SPEC §5): a calendar event that invites the meeting address is called at its start.

Real sources only: a Radicale CalDAV server, an .ics feed served by aiohttp, and invitations mailed to the
iMIP listener with smtplib. Time is the Harness's FakeClock; nothing sleeps to reach a start, the test sets
the clock and calls ``run_due`` itself. Rings are read from a real WebSocket stream and from the events
table, messages through the REST API, mails from the outbox folder.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import smtplib
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from calendars.ics_source import basic_auth
from chimebot.clock import FakeClock
from chimebot.config import Config
from chimebot.models import User
from chimebot.services import Services, build_services
from chimebot.store import schema
from chimebot.store.occurrences import StoredOccurrence
from tests.conftest import Harness, Radicale, make_config

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

DOMAIN = "chime.example.com"
MEET = f"meet@{DOMAIN}"
PUBLIC_URL = "https://chat.example.com"
ANN, BOB, DORA = "ann@example.com", "bob@example.com", "dora@example.com"
CAROL = "carol@outside.example"  # not a user
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # FakeClock's start
AT_10 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
AT_11 = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)
DAV_AUTH = {"Authorization": basic_auth("alice", "secret")}


# -- fixtures: a Radicale collection, an .ics feed, and the app watching both and listening for iMIP ------


class Feed:
    """An .ics feed over real HTTP whose body the test replaces."""

    def __init__(self) -> None:
        self.body = vcalendar()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(text=self.body, content_type="text/calendar")


@pytest.fixture
async def collection(radicale: Radicale) -> str:
    """A new, empty calendar collection on the Radicale server."""
    url = f"{radicale.base}/alice/{uuid.uuid4().hex[:8]}/"
    assert await dav("MKCALENDAR", url) == 201
    return url


@pytest.fixture
async def feed(aiohttp_server: Any) -> Feed:
    """The .ics feed, served on a loopback port."""
    served = Feed()
    app = web.Application()
    app.router.add_get("/team.ics", served.handle)
    served.url = str((await aiohttp_server(app)).make_url("/team.ics"))
    return served


@pytest.fixture
def app_config(db_url: str, collection: str, feed: Feed) -> Config:
    """Overrides conftest's: the CalDAV calendar "team" (with a room), the feed "feed", and iMIP."""
    return make_config(
        db_url,
        env={"TEAM_CALDAV_PASSWORD": "secret"},
        server={"public_url": PUBLIC_URL},
        meetings={
            "address_domain": DOMAIN,
            "dial_in": [{"number": "+1 206-555-0100", "label": "United States (toll)"}],
        },
        scheduler={"grace_minutes": 5},
        imip={"listen": "127.0.0.1:0"},
        calendars=[
            {
                "name": "team",
                "kind": "caldav",
                "url": collection,
                "username": "alice",
                "password_env": "TEAM_CALDAV_PASSWORD",
                "poll_seconds": 3600,  # the test syncs itself; the background loop only syncs at start
                "rooms": ["standups"],
            },
            {"name": "feed", "kind": "ics", "url": feed.url, "poll_seconds": 3600},
        ],
    )


@pytest.fixture
async def people(app: Harness) -> dict[str, tuple[User, str]]:
    """Ann (Pro, the organizer), Bob and Dora (users; Dora is in do-not-disturb), each with a token."""
    found = {email: await app.user(email) for email in (ANN, BOB, DORA)}
    resp = await app.client.patch(
        "/api/v1/me", json={"do_not_disturb": True}, headers=app.auth(found[DORA][1])
    )
    assert resp.status == 200, await resp.text()
    return found


# -- helpers ----------------------------------------------------------------------------------------------


def vevent(
    uid: str,
    start: datetime,
    *,
    summary: str = "Design review",
    organizer: str = ANN,
    attendees: tuple[str, ...] = (BOB, DORA, CAROL, MEET),
    sequence: int = 0,
    extra: str = "",
) -> str:
    """One VEVENT of 30 minutes, in UTC."""
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
        f"DTEND:{start + timedelta(minutes=30):%Y%m%dT%H%M%SZ}",
        f"SEQUENCE:{sequence}",
        f"SUMMARY:{summary}",
        f"ORGANIZER;CN=Organizer:mailto:{organizer}",
        f"ATTENDEE;CN={organizer};PARTSTAT=ACCEPTED:mailto:{organizer}",
        *[f"ATTENDEE;RSVP=TRUE:mailto:{a}" for a in attendees],
        *([extra] if extra else []),
        "END:VEVENT",
    ]
    return "\r\n".join(lines) + "\r\n"


def vcalendar(*events: str, method: str | None = None) -> str:
    """A VCALENDAR around these VEVENTs."""
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//chimebot tests//EN\r\n"
    if method:
        head += f"METHOD:{method}\r\n"
    return head + "".join(events) + "END:VCALENDAR\r\n"


async def dav(method: str, url: str, body: str | None = None) -> int:
    """One request to Radicale as alice; the status."""
    headers = {**DAV_AUTH, "Content-Type": "text/calendar"} if body else DAV_AUTH
    async with aiohttp.ClientSession() as http, http.request(method, url, data=body, headers=headers) as r:
        return r.status


async def put(collection: str, uid: str, *events: str) -> None:
    """Create or replace the calendar object of one UID."""
    assert await dav("PUT", f"{collection}{uid}.ics", vcalendar(*events)) in (201, 204)


def at(h: Harness, moment: datetime) -> None:
    """Move the fake clock forward to `moment`."""
    h.clock.advance((moment - h.clock.now()).total_seconds())


async def occurrences(h: Harness, source: str | None = None) -> list[StoredOccurrence]:
    """The stored occurrences, by start time."""
    return await h.services.calendars.occurrences(source=source)


async def ring_rows(services: Services) -> list[dict[str, Any]]:
    """Every meeting.ring in the event log, oldest first: its payload, and the event's room and user."""
    async with services.store.read() as conn:
        result = await conn.execute(
            sa.select(schema.events.c.room_id, schema.events.c.user_id, schema.events.c.payload)
            .where(schema.events.c.type == "meeting.ring")
            .order_by(schema.events.c.id)
        )
        return [
            {**json.loads(payload), "event_room_id": room_id, "event_user_id": user_id}
            for room_id, user_id, payload in result
        ]


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next stream frame of this type (skipping others), waiting at most 5 s for each frame."""
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        if frame["type"] == kind:
            return frame


async def room_id_named(h: Harness, token: str, name: str) -> str:
    """The id of the room of this name that the token's owner is in (REST)."""
    resp = await h.client.get("/api/v1/rooms", headers=h.auth(token))
    assert resp.status == 200, await resp.text()
    ids = [room["id"] for room in (await resp.json())["rooms"] if room["name"] == name]
    assert len(ids) == 1, (name, await resp.json())
    return ids[0]


async def history(h: Harness, token: str, room_id: str) -> list[dict[str, Any]]:
    """A room's messages through REST, newest first."""
    resp = await h.client.get(f"/api/v1/rooms/{room_id}/messages", headers=h.auth(token))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["messages"]


def mails(data_dir: Path) -> list[EmailMessage]:
    """The messages in the outbox folder (no SMTP host is configured), in the order written."""
    folder = data_dir / "outbox"
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def body(message: EmailMessage) -> str:
    """A plain-text mail's body."""
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()


def grouped(meeting_id: str) -> str:
    """A meeting id as the instructions print it: 123 456 7890."""
    return f"{meeting_id[:3]} {meeting_id[3:6]} {meeting_id[6:]}"


def assert_meeting_id(meeting_id: str | None) -> str:
    """A generated meeting id: 10 digits, no leading zero."""
    assert meeting_id is not None and re.fullmatch(r"[1-9][0-9]{9}", meeting_id), meeting_id
    return meeting_id


def imip(method: str, ics: str, sender: str, to: str = MEET) -> bytes:
    """An iMIP mail: plain text plus the text/calendar part with the iTIP method."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"{method.title()}: Design review"
    message.set_content("An invitation.")
    message.add_alternative(ics, subtype="calendar", params={"method": method})
    # smtplib sends bytes as they are: they must already end lines with CRLF, as mail clients do.
    return message.as_bytes(policy=email.policy.SMTP)


async def send(port: int, sender: str, rcpt: str, data: bytes) -> dict[str, Any]:
    """smtplib's sendmail in a thread (the listener runs on this loop); the refused recipients."""

    def run() -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost", timeout=10) as smtp:
            return smtp.sendmail(sender, [rcpt], data)

    return await asyncio.to_thread(run)


# -- CalDAV (Radicale): the whole flow ------------------------------------------------------------------


async def test_a_caldav_meeting_rings_its_users_posts_instructions_and_mails_the_outsider(
    app: Harness, people: dict[str, tuple[User, str]], collection: str, tmp_path: Path
) -> None:
    h = app
    (ann, ann_token), (bob, bob_token), (dora, dora_token) = people[ANN], people[BOB], people[DORA]
    await put(collection, "review", vevent("review", AT_10))
    await h.services.calendars.sync("team")
    [occ] = await occurrences(h, "team")
    assert (occ.key, occ.state, occ.start, occ.organizer) == ("review", "scheduled", AT_10, ANN)
    assert occ.attendees == (ANN, BOB, DORA, CAROL)  # the meeting address itself is not an attendee
    meeting_id = assert_meeting_id(occ.meeting_id)

    async with (
        h.client.ws_connect("/api/v1/stream", headers=h.auth(bob_token)) as bob_ws,
        h.client.ws_connect("/api/v1/stream", headers=h.auth(dora_token)) as dora_ws,
    ):
        for ws in (bob_ws, dora_ws):
            assert (await next_of(ws, "stream.ready"))["type"] == "stream.ready"
        at(h, AT_10 - timedelta(seconds=1))
        assert await h.services.scheduler.run_due() == []
        assert await ring_rows(h.services) == []
        at(h, AT_10)
        fired = await h.services.scheduler.run_due()
        assert [o.key for o in fired] == ["review"]
        bob_ring = await next_of(bob_ws, "meeting.ring")
        dora_ring = await next_of(dora_ws, "meeting.ring")

    meeting_room = await room_id_named(h, ann_token, f"Meeting {meeting_id}")
    assert bob_ring["room_id"] == f"meeting:{meeting_id}"
    assert bob_ring["data"] == {
        "meeting_id": meeting_id,
        "topic": "Design review",
        "join_url": f"{PUBLIC_URL}/meetings/{meeting_id}",
        "organizer": ANN,
        "start": "2026-01-05T10:00:00.000Z",
        "end": "2026-01-05T10:30:00.000Z",
        "room_id": meeting_room,
        "occurrence": "review",
        "expires_at": "2026-01-05T10:01:00.000Z",  # 60 s after the call
        "user_id": bob.id,
        "muted": False,
    }
    assert dora_ring["data"]["muted"] is True and dora_ring["data"]["user_id"] == dora.id
    assert dora_ring["data"]["meeting_id"] == meeting_id
    # The organizer is rung too; Carol is no user; each user exactly once.
    assert sorted(r["user_id"] for r in await ring_rows(h.services)) == sorted([ann.id, bob.id, dora.id])

    # The instructions in the meeting's chat (Bob, an attendee, is a member) and the calendar's room.
    standups = await room_id_named(h, h.token, "standups")
    for token, room_id in ((bob_token, meeting_room), (h.token, standups)):
        [message] = await history(h, token, room_id)
        assert message["sender"]["name"] == "Meeting scheduler", message
        text = message["content"]
        assert text.startswith("**Design review** starts at "), text
        assert "(organizer: ann@example.com)" in text
        assert f"- Join: {PUBLIC_URL}/meetings/{meeting_id}" in text
        assert f"- Meeting ID: {grouped(meeting_id)}" in text
        assert f"United States (toll): +1 206-555-0100, one tap `+1 206-555-0100,,{meeting_id}#`" in text

    # Carol, who is not a user, got the join link by mail; nobody else got mail.
    [mail] = mails(tmp_path)
    assert (mail["To"], mail["Subject"]) == (CAROL, "Meeting now: Design review")
    assert "organized by ann@example.com is starting now" in body(mail)
    assert f"{PUBLIC_URL}/meetings/{meeting_id}" in body(mail)

    [called] = await occurrences(h, "team")
    assert (called.state, called.fired_at) == ("fired", AT_10)
    # The meeting is active, hosted by the organizer.
    assert await h.services.meetings.owner_of(meeting_id) == ann.id
    # A later sync of the unchanged calendar and another alarm call nobody again.
    await h.services.calendars.sync("team")
    h.clock.advance(60)
    assert await h.services.scheduler.run_due() == []
    assert len(await ring_rows(h.services)) == 3


async def test_a_moved_meeting_is_called_at_the_new_time_with_the_same_id(
    app: Harness, people: dict[str, tuple[User, str]], collection: str
) -> None:
    h = app
    await put(collection, "moved", vevent("moved", AT_10))
    await h.services.calendars.sync("team")
    [before] = await occurrences(h, "team")
    meeting_id = assert_meeting_id(before.meeting_id)

    await put(collection, "moved", vevent("moved", AT_11, sequence=1))
    await h.services.calendars.sync("team")
    [after] = await occurrences(h, "team")
    assert (after.start, after.sequence, after.state, after.meeting_id) == (AT_11, 1, "scheduled", meeting_id)

    at(h, AT_10)
    assert await h.services.scheduler.run_due() == []
    at(h, AT_10 + timedelta(minutes=30))
    assert await h.services.scheduler.run_due() == []
    assert await ring_rows(h.services) == []
    at(h, AT_11)
    assert [o.key for o in await h.services.scheduler.run_due()] == ["moved"]
    rings = await ring_rows(h.services)
    assert len(rings) == 3 and {r["meeting_id"] for r in rings} == {meeting_id}
    assert {r["start"] for r in rings} == {"2026-01-05T11:00:00.000Z"}


async def test_a_weekly_series_skips_its_cancelled_instance_and_keeps_one_meeting_id(
    app: Harness, people: dict[str, tuple[User, str]], collection: str
) -> None:
    h = app
    master = vevent("weekly", AT_10, summary="Weekly", extra="RRULE:FREQ=WEEKLY;COUNT=4")
    cancelled = vevent(
        "weekly",
        AT_10 + timedelta(weeks=1),
        summary="Weekly",
        extra="RECURRENCE-ID:20260112T100000Z\r\nSTATUS:CANCELLED",
    )
    # The fourth instance is excluded with EXDATE.
    master = master.replace("RRULE:", "EXDATE:20260126T100000Z\r\nRRULE:")
    await put(collection, "weekly", master, cancelled)
    await h.services.calendars.sync("team")
    found = await occurrences(h, "team")
    assert [(o.key, o.state) for o in found] == [
        ("weekly|2026-01-05T10:00:00Z", "scheduled"),
        ("weekly|2026-01-12T10:00:00Z", "cancelled"),
        ("weekly|2026-01-19T10:00:00Z", "scheduled"),
    ]
    meeting_id = assert_meeting_id(found[0].meeting_id)
    assert {o.meeting_id for o in found} == {meeting_id}

    called = []
    for week in range(4):
        at(h, AT_10 + timedelta(weeks=week))
        called += [o.key for o in await h.services.scheduler.run_due()]
    assert called == ["weekly|2026-01-05T10:00:00Z", "weekly|2026-01-19T10:00:00Z"]
    rings = await ring_rows(h.services)
    assert [r["start"] for r in rings] == ["2026-01-05T10:00:00.000Z"] * 3 + ["2026-01-19T10:00:00.000Z"] * 3
    assert {r["meeting_id"] for r in rings} == {meeting_id}  # the series reopens its one meeting id


async def test_a_deleted_meeting_is_not_called(
    app: Harness, people: dict[str, tuple[User, str]], collection: str, tmp_path: Path
) -> None:
    h = app
    await put(collection, "gone", vevent("gone", AT_10))
    await h.services.calendars.sync("team")
    assert [o.state for o in await occurrences(h, "team")] == ["scheduled"]
    assert await dav("DELETE", f"{collection}gone.ics") in (200, 204)
    await h.services.calendars.sync("team")
    [occ] = await occurrences(h, "team")
    assert occ.state == "cancelled" and occ.reason == "deleted from calendar team"
    at(h, AT_10)
    assert await h.services.scheduler.run_due() == []
    assert await ring_rows(h.services) == [] and mails(tmp_path) == []


async def test_across_a_restart_the_meeting_is_called_exactly_once(
    app: Harness, app_config: Config, people: dict[str, tuple[User, str]], collection: str, tmp_path: Path
) -> None:
    h = app
    await put(collection, "once", vevent("once", AT_10))
    await h.services.calendars.sync("team")

    # The server restarted (or a second node runs) on the same database, with its own clock.
    clock = FakeClock()
    other = build_services(app_config, tmp_path / "other", clock)
    await other.start()
    try:
        await other.start_scheduling()  # continues from the stored sync state; syncs "team" once
        await other.calendars.sync("team")
        assert [(o.key, o.state) for o in await other.calendars.occurrences()] == [("once", "scheduled")]
        at(h, AT_10)
        clock.advance((AT_10 - clock.now()).total_seconds())
        first, second = await asyncio.gather(other.scheduler.run_due(), h.services.scheduler.run_due())
        assert sorted(o.key for o in first + second) == ["once"]  # one of the two claimed it
        # Later alarms on either, and a fresh sync on either, call nobody again.
        for services in (other, h.services):
            await services.calendars.sync("team")
            assert await services.scheduler.run_due() == []
    finally:
        await other.close()

    # A third start (within the grace period) still finds nothing to call.
    clock = FakeClock(AT_10 + timedelta(minutes=1))
    third = build_services(app_config, tmp_path / "third", clock)
    await third.start()
    try:
        await third.start_scheduling()  # start() runs run_due itself
        assert await third.scheduler.run_due() == []
    finally:
        await third.close()
    rings = await ring_rows(h.services)
    assert sorted(r["user_id"] for r in rings) == sorted(people[e][0].id for e in (ANN, BOB, DORA))
    [occ] = await occurrences(h, "team")
    assert (occ.state, occ.fired_at) == ("fired", AT_10)
    # Carol was mailed once, by whichever instance made the call.
    outsiders = [m for d in (tmp_path, tmp_path / "other", tmp_path / "third") for m in mails(d)]
    assert [m["To"] for m in outsiders] == [CAROL]


async def test_a_basic_organizer_is_rejected_nothing_rings_and_they_are_told(
    app: Harness, people: dict[str, tuple[User, str]], collection: str, tmp_path: Path
) -> None:
    h = app
    ann = people[ANN][0]
    resp = await h.client.patch(f"/api/v1/users/{ann.id}", json={"license": "basic"}, headers=h.auth())
    assert resp.status == 200, await resp.text()
    await put(collection, "basic", vevent("basic", AT_10))
    await h.services.calendars.sync("team")
    [occ] = await occurrences(h, "team")
    assert occ.state == "rejected"
    assert occ.reason == "the organizer ann@example.com has a Basic license; scheduling meetings needs Pro"
    [mail] = mails(tmp_path)
    assert (mail["To"], mail["Subject"]) == (ANN, "Not scheduled: Design review")
    assert "has a Basic license; scheduling meetings needs Pro" in body(mail)

    at(h, AT_10)
    assert await h.services.scheduler.run_due() == []
    assert await ring_rows(h.services) == []
    assert len(mails(tmp_path)) == 1  # no mail to Carol either
    [occ] = await occurrences(h, "team")
    assert occ.state == "rejected"


# -- meeting ids: pin+<id>@ ---------------------------------------------------------------------------


async def personal_id(h: Harness, token: str) -> str:
    """The token owner's personal meeting id (REST)."""
    resp = await h.client.get("/api/v1/me", headers=h.auth(token))
    assert resp.status == 200
    return (await resp.json())["personal_meeting_id"]


async def test_pin_with_the_organizers_personal_id_uses_it(
    app: Harness, people: dict[str, tuple[User, str]], collection: str
) -> None:
    h = app
    ann_id = await personal_id(h, people[ANN][1])
    pin = f"pin+{ann_id}@{DOMAIN}"
    await put(collection, "pin", vevent("pin", AT_10, attendees=(BOB, pin)))
    await h.services.calendars.sync("team")
    [occ] = await occurrences(h, "team")
    assert (occ.state, occ.meeting_id, occ.attendees) == ("scheduled", ann_id, (ANN, BOB))
    at(h, AT_10)
    assert [o.meeting_id for o in await h.services.scheduler.run_due()] == [ann_id]
    rings = await ring_rows(h.services)
    assert len(rings) == 2 and {(r["meeting_id"], r["event_room_id"]) for r in rings} == {
        (ann_id, f"meeting:{ann_id}")
    }
    assert sorted(r["event_user_id"] for r in rings) == sorted([people[ANN][0].id, people[BOB][0].id])


async def test_pin_with_someone_elses_personal_id_is_rejected(
    app: Harness, people: dict[str, tuple[User, str]], collection: str, tmp_path: Path
) -> None:
    h = app
    bob_id = await personal_id(h, people[BOB][1])
    pin = f"pin+{bob_id}@{DOMAIN}"
    await put(collection, "theft", vevent("theft", AT_10, attendees=(BOB, pin)))
    await h.services.calendars.sync("team")
    [occ] = await occurrences(h, "team")
    assert occ.state == "rejected" and occ.meeting_id == bob_id
    assert occ.reason == f"meeting id {bob_id} belongs to someone other than ann@example.com"
    [mail] = mails(tmp_path)
    assert mail["To"] == ANN and f"meeting id {bob_id} belongs to someone other than" in body(mail)
    at(h, AT_10)
    assert await h.services.scheduler.run_due() == []
    assert await ring_rows(h.services) == []


# -- an .ics feed over HTTP -----------------------------------------------------------------------------


async def test_an_ics_feed_meeting_rings_and_its_cancellations_do_not(
    app: Harness, people: dict[str, tuple[User, str]], feed: Feed
) -> None:
    h = app
    bob, bob_token = people[BOB]
    called = vevent("feed-a", AT_10, summary="Feed sync")
    feed.body = vcalendar(
        called,
        vevent("feed-b", AT_11, summary="Cancelled later"),
        vevent("feed-c", AT_11, summary="Removed later"),
    )
    await h.services.calendars.sync("feed")
    found = await occurrences(h, "feed")
    assert [(o.key, o.state) for o in found] == [
        ("feed-a", "scheduled"),
        ("feed-b", "scheduled"),
        ("feed-c", "scheduled"),
    ]
    meeting_id = assert_meeting_id(found[0].meeting_id)
    assert len({o.meeting_id for o in found}) == 3  # meet@ gives each event its own id

    async with h.client.ws_connect("/api/v1/stream", headers=h.auth(bob_token)) as ws:
        await next_of(ws, "stream.ready")
        at(h, AT_10)
        assert [o.key for o in await h.services.scheduler.run_due()] == ["feed-a"]
        ring = await next_of(ws, "meeting.ring")
    assert ring["room_id"] == f"meeting:{meeting_id}"
    assert (ring["data"]["topic"], ring["data"]["user_id"], ring["data"]["muted"]) == (
        "Feed sync",
        bob.id,
        False,
    )

    # B is cancelled in the feed (a new SEQUENCE with STATUS:CANCELLED), C disappears from it.
    feed.body = vcalendar(
        called, vevent("feed-b", AT_11, summary="Cancelled later", sequence=1, extra="STATUS:CANCELLED")
    )
    await h.services.calendars.sync("feed")
    states = {o.key: (o.state, o.reason) for o in await occurrences(h, "feed")}
    assert states == {
        "feed-a": ("fired", None),
        "feed-b": ("cancelled", "cancelled in the calendar"),
        "feed-c": ("cancelled", "deleted from calendar feed"),
    }
    at(h, AT_11)
    assert await h.services.scheduler.run_due() == []
    assert {r["meeting_id"] for r in await ring_rows(h.services)} == {meeting_id}


# -- iMIP over SMTP ----------------------------------------------------------------------------------------


async def test_imip_request_rings_cancel_removes_and_only_the_organizer_may_cancel(
    app: Harness, people: dict[str, tuple[User, str]]
) -> None:
    h = app
    bob, bob_token = people[BOB]
    port = h.services.imip.port
    assert port is not None

    # A REQUEST for the 10:00 meeting and one for 11:00, both from Ann.
    ten = vevent("mail-10@example.com", AT_10, summary="Mailed")
    eleven = vevent("mail-11@example.com", AT_11, summary="Mailed later")
    for event in (ten, eleven):
        assert await send(port, ANN, MEET, imip("REQUEST", vcalendar(event, method="REQUEST"), ANN)) == {}
    found = await occurrences(h, "imip")
    assert [(o.key, o.state, o.organizer) for o in found] == [
        ("mail-10@example.com", "scheduled", ANN),
        ("mail-11@example.com", "scheduled", ANN),
    ]

    # Mallory cannot cancel Ann's meeting: 550, naming the organizer; nothing changes.
    forged = vevent("mail-11@example.com", AT_11, organizer="mallory@example.com", sequence=5)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await send(
            port,
            "mallory@example.com",
            MEET,
            imip("CANCEL", vcalendar(forged, method="CANCEL"), "mallory@example.com"),
        )
    assert refused.value.smtp_code == 550
    assert b"organized by ann@example.com" in refused.value.smtp_error
    assert [o.state for o in await occurrences(h, "imip")] == ["scheduled", "scheduled"]

    # Mail to any address other than meet@ or pin+<id>@ is refused at RCPT TO.
    with pytest.raises(smtplib.SMTPRecipientsRefused) as rcpt:
        await send(port, ANN, f"bob@{DOMAIN}", imip("REQUEST", vcalendar(ten, method="REQUEST"), ANN))
    [(code, reply)] = rcpt.value.recipients.values()
    assert code == 550 and b"is not a meeting address" in reply

    # Ann's CANCEL of the 11:00 meeting is taken.
    cancel = vevent("mail-11@example.com", AT_11, summary="Mailed later", sequence=1)
    assert await send(port, ANN, MEET, imip("CANCEL", vcalendar(cancel, method="CANCEL"), ANN)) == {}
    states = {o.key: (o.state, o.reason) for o in await occurrences(h, "imip")}
    assert states == {
        "mail-10@example.com": ("scheduled", None),
        "mail-11@example.com": ("cancelled", "cancelled by the organizer (iMIP CANCEL)"),
    }

    async with h.client.ws_connect("/api/v1/stream", headers=h.auth(bob_token)) as ws:
        await next_of(ws, "stream.ready")
        at(h, AT_10)
        assert [o.key for o in await h.services.scheduler.run_due()] == ["mail-10@example.com"]
        ring = await next_of(ws, "meeting.ring")
    meeting_id = assert_meeting_id(found[0].meeting_id)
    assert ring["data"]["meeting_id"] == meeting_id and ring["data"]["topic"] == "Mailed"
    assert ring["data"]["user_id"] == bob.id
    at(h, AT_11)
    assert await h.services.scheduler.run_due() == []
    assert {r["meeting_id"] for r in await ring_rows(h.services)} == {meeting_id}
