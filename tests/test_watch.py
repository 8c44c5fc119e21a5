"""The calendars service against a real folder of .ics files and a real SQLite database: what a sync
does when it fails half-way, meets a malformed object or a renamed file; and the iMIP sender check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from chimebot.clock import FakeClock
from chimebot.imip import ImipInbox, InvitationRefused
from chimebot.services import Services, build_services
from tests.conftest import make_config

DOMAIN = "chime.example.com"
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def event(
    uid: str, *, start: str = "20261201T100000Z", organizer: str = "admin@localhost", extra: str = ""
) -> str:
    """A one-off meeting inviting meet@, as a calendar app writes it."""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20261120T100000Z\r\nDTSTART:{start}\r\nDTEND:{start[:-5]}3000Z\r\n"
        f"SUMMARY:Review {uid}\r\nORGANIZER:mailto:{organizer}\r\nATTENDEE:mailto:bob@example.com\r\n"
        f"ATTENDEE:mailto:meet@{DOMAIN}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@dataclass
class World:
    """Services with one folder calendar "team", on a fake clock."""

    services: Services
    folder: Path
    clock: FakeClock

    async def states(self) -> dict[str, str]:
        """Occurrence key → state."""
        return {occ.key: occ.state for occ in await self.services.calendars.occurrences()}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    folder = tmp_path / "calendar"
    folder.mkdir()
    config = make_config(
        meetings={"address_domain": DOMAIN},
        calendars=[{"name": "team", "kind": "folder", "url": str(folder), "poll_seconds": 3600}],
    )
    clock = FakeClock(START)
    services = build_services(config, tmp_path / "data", clock)
    await services.start()
    await services.bootstrap()
    try:
        yield World(services, folder, clock)
    finally:
        await services.close()


async def test_a_sync_that_fails_after_the_poll_is_read_again_next_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calendars = world.services.calendars
    (world.folder / "a.ics").write_text(event("a"))
    await calendars.sync("team")
    assert await world.states() == {"a": "scheduled"}
    (world.folder / "a.ics").unlink()

    real = world.services.scheduler.deleted

    async def failing(*args: object, **kwargs: object) -> list[str]:
        raise OSError("disk full")

    monkeypatch.setattr(world.services.scheduler, "deleted", failing)
    with pytest.raises(OSError):
        await calendars.sync("team")
    monkeypatch.setattr(world.services.scheduler, "deleted", real)
    # The deletion was not lost with the failed sync: the next poll reports it again.
    report = await calendars.sync("team")
    assert report.deleted == 1
    assert await world.states() == {"a": "cancelled"}


async def test_an_object_the_library_chokes_on_is_skipped_and_reported(world: World) -> None:
    (world.folder / "good.ics").write_text(event("good"))
    # Two DTSTART lines: icalendar itself raises (not a calendar error) when reading it.
    (world.folder / "bad.ics").write_text(event("bad", extra="DTSTART:20261202T100000Z\r\n"))
    report = await world.services.calendars.sync("team")
    assert await world.states() == {"good": "scheduled"}
    assert len(report.problems) == 1 and report.problems[0].startswith("bad.ics: ")
    (status,) = await world.services.calendars.status()
    assert status.last_error is None and status.problems == report.problems


async def test_a_renamed_file_keeps_its_meeting(world: World) -> None:
    (world.folder / "old-name.ics").write_text(event("moved"))
    await world.services.calendars.sync("team")
    (world.folder / "old-name.ics").rename(world.folder / "new-name.ics")
    report = await world.services.calendars.sync("team")
    assert (report.changed, report.deleted) == (1, 1)
    assert await world.states() == {"moved": "scheduled"}


async def test_a_meeting_every_minute_is_not_called(world: World) -> None:
    (world.folder / "spam.ics").write_text(event("spam", extra="RRULE:FREQ=MINUTELY\r\n"))
    report = await world.services.calendars.sync("team")
    assert await world.states() == {}
    assert report.problems == ("spam.ics: spam: meetings repeating more often than hourly are not called",)


def imip_mail(sender: str, organizer: str) -> bytes:
    """An iMIP REQUEST from `sender` for an event organized by `organizer`."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = f"meet@{DOMAIN}"
    message["Subject"] = "Invitation: Review"
    message.set_content("An invitation.")
    ics = event("mailed", organizer=organizer).replace("VERSION:2.0\r\n", "VERSION:2.0\r\nMETHOD:REQUEST\r\n")
    message.add_alternative(ics, subtype="calendar", params={"method": "REQUEST"})
    return message.as_bytes()


async def test_imip_takes_only_the_organizers_own_mail(world: World) -> None:
    svc = world.services
    inbox = ImipInbox(svc.config, svc.store, svc.scheduler, svc.clock, svc.calendars)
    with pytest.raises(InvitationRefused, match="organized by admin@localhost but was sent by mallory@evil"):
        await inbox.receive(imip_mail("Mallory <mallory@evil.example>", "admin@localhost"))
    assert await world.states() == {}
    # The envelope sender counts too (a relay may rewrite From for forwarded mail).
    outcome = await inbox.receive(
        imip_mail("Relay <relay@lists.example>", "admin@localhost"), "admin@localhost"
    )
    assert outcome.startswith("REQUEST for mailed: 1 new")
    assert await world.states() == {"mailed": "scheduled"}
