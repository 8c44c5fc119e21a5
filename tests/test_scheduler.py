"""The scheduler on both engines: calls once at the start (or the lead), moves, cancels, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from calendars.invites import MeetingAddresses, MeetingOccurrence, interpret
from chimebot.clock import FakeClock, SystemClock
from chimebot.scheduler import FiredOccurrence, Scheduler
from chimebot.store import Store, database_url
from chimebot.store import occurrences as q

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # FakeClock's default start
START = T0 + timedelta(hours=1)
GRACE = timedelta(minutes=5)
ADDRESSES = MeetingAddresses("chime.example.com")


def occurrence(
    uid: str = "standup@example.com",
    start: datetime = START,
    *,
    sequence: int = 0,
    cancelled: bool = False,
    recurrence_id: datetime | None = None,
    pin: str | None = None,
) -> MeetingOccurrence:
    """A meeting occurrence as calendars.invites reports one."""
    key = uid if recurrence_id is None else f"{uid}|{recurrence_id:%Y-%m-%dT%H:%M:%SZ}"
    return MeetingOccurrence(
        key=key,
        uid=uid,
        recurrence_id=recurrence_id,
        start=start,
        end=start + timedelta(minutes=30),
        summary="Stand-up",
        organizer="ann@example.com",
        attendees=("ann@example.com", "bob@example.com", "meet@chime.example.com"),
        pin=pin,
        sequence=sequence,
        cancelled=cancelled,
    )


class Calls:
    """An on_fire that records what it was called with."""

    def __init__(self) -> None:
        self.fired: list[FiredOccurrence] = []
        self.event = asyncio.Event()

    async def __call__(self, occ: FiredOccurrence) -> None:
        """Record one call."""
        self.fired.append(occ)
        self.event.set()

    @property
    def keys(self) -> list[str]:
        """The keys called, in order."""
        return [occ.key for occ in self.fired]


@pytest.fixture
async def store(db_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated Store."""
    store = Store.open(database_url(db_url, tmp_path))
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def other_store(db_url: str, tmp_path: Path, store: Store) -> AsyncIterator[Store]:
    """A second Store on the same database: another node, or the server after a restart."""
    other = Store.open(database_url(db_url, tmp_path))
    try:
        yield other
    finally:
        await other.close()


@pytest.fixture
def clock() -> FakeClock:
    """The injected clock, at T0."""
    return FakeClock(T0)


def scheduler(store: Store, clock: FakeClock | SystemClock, calls: Calls, **kwargs: timedelta) -> Scheduler:
    """A scheduler with a 5-minute grace period."""
    return Scheduler(store, clock, grace=kwargs.pop("grace", GRACE), on_fire=calls, **kwargs)


async def stored(store: Store, key: str = "standup@example.com") -> q.StoredOccurrence:
    """The stored occurrence with this key."""
    async with store.read() as conn:
        occ = await q.get(conn, key)
    assert occ is not None
    return occ


def at(clock: FakeClock, moment: datetime) -> None:
    """Move the fake clock forward to `moment`."""
    clock.advance((moment - clock.now()).total_seconds())


# -- firing once -------------------------------------------------------------------------------------


async def test_fires_exactly_once_at_the_start(store: Store, clock: FakeClock) -> None:
    calls = Calls()
    sched = scheduler(store, clock, calls)
    result = await sched.apply("team", [occurrence(pin="1234567890")], complete=True)
    assert result.inserted == ("standup@example.com",)

    at(clock, START - timedelta(seconds=1))
    assert await sched.run_due() == []
    at(clock, START)
    fired = await sched.run_due()
    assert [o.key for o in fired] == calls.keys == ["standup@example.com"]
    assert fired[0].meeting_id == "1234567890"
    assert fired[0].attendees == ("ann@example.com", "bob@example.com", "meet@chime.example.com")
    clock.advance(30)
    assert await sched.run_due() == []
    row = await stored(store)
    assert (row.state, row.fired_at, row.start) == ("fired", START, START)
    assert calls.keys == ["standup@example.com"]


async def test_two_nodes_racing_fire_once(store: Store, other_store: Store, clock: FakeClock) -> None:
    calls = Calls()
    a, b = scheduler(store, clock, calls), scheduler(other_store, clock, calls)
    await a.apply("team", [occurrence(), occurrence("retro@example.com")], complete=True)
    at(clock, START)
    results = await asyncio.gather(*(node.run_due() for _ in range(5) for node in (a, b)))
    assert sorted(calls.keys) == ["retro@example.com", "standup@example.com"]
    assert sorted(o.key for fired in results for o in fired) == sorted(calls.keys)


async def test_claim_is_one_conditional_update(store: Store, clock: FakeClock) -> None:
    sched = scheduler(store, clock, Calls())
    await sched.apply("team", [occurrence()], complete=True)
    async with store.transaction() as conn:
        assert await q.claim(conn, "standup@example.com", START - timedelta(seconds=1), GRACE) is None
        assert await q.claim(conn, "standup@example.com", START + GRACE + timedelta(seconds=1), GRACE) is None
        claimed = await q.claim(conn, "standup@example.com", START + GRACE, GRACE)
        assert claimed is not None
        assert claimed.state == "fired"
        assert await q.claim(conn, "standup@example.com", START + GRACE, GRACE) is None


# -- changes from the calendar -----------------------------------------------------------------------


async def test_a_moved_start_moves_the_call(store: Store, clock: FakeClock) -> None:
    calls = Calls()
    sched = scheduler(store, clock, calls)
    await sched.start()
    try:
        await sched.apply("team", [occurrence()], complete=True)
        first = sched.jobs()["standup@example.com"]
        later = START + timedelta(hours=2)
        result = await sched.apply("team", [occurrence(start=later, sequence=1)], complete=True)
        assert result.updated == ("standup@example.com",)
        # The alarm moved by the same two hours (it rings on the wall clock, measured from the fake one).
        moved = sched.jobs()["standup@example.com"] - first
        assert abs(moved - timedelta(hours=2)) < timedelta(seconds=5)

        at(clock, START)
        assert await sched.run_due() == []
        at(clock, later)
        assert [o.start for o in await sched.run_due()] == [later]
        assert calls.keys == ["standup@example.com"]
    finally:
        await sched.stop()


async def test_a_cancelled_occurrence_is_not_called(store: Store, clock: FakeClock) -> None:
    calls = Calls()
    sched = scheduler(store, clock, calls)
    await sched.start()
    try:
        await sched.apply("team", [occurrence()], complete=True)
        assert "standup@example.com" in sched.jobs()
        await sched.apply("team", [occurrence(sequence=1, cancelled=True)], complete=True)
        assert sched.jobs() == {}
        row = await stored(store)
        assert (row.state, row.reason) == ("cancelled", "cancelled in the calendar")
        at(clock, START)
        assert await sched.run_due() == []
        assert calls.fired == []
    finally:
        await sched.stop()


async def test_an_occurrence_gone_from_a_complete_sync_is_cancelled(store: Store, clock: FakeClock) -> None:
    calls = Calls()
    sched = scheduler(store, clock, calls)
    await sched.apply("team", [occurrence(), occurrence("retro@example.com")], complete=True)

    # An incremental sync that does not mention an occurrence says nothing about it.
    await sched.apply("team", [occurrence("retro@example.com")], complete=False)
    assert (await stored(store)).state == "scheduled"
    # Another calendar's complete sync does not cancel this calendar's occurrences.
    await sched.apply("other", [], complete=True)
    assert (await stored(store)).state == "scheduled"

    result = await sched.apply("team", [occurrence("retro@example.com")], complete=True)
    assert result.cancelled == ("standup@example.com",)
    row = await stored(store)
    assert (row.state, row.reason) == ("cancelled", "no longer in calendar team")

    # An object deleted in an incremental sync cancels every instance of its UID.
    assert await sched.deleted("team", ["retro@example.com"]) == ["retro@example.com"]
    assert (await stored(store, "retro@example.com")).reason == "deleted from calendar team"

    at(clock, START)
    assert await sched.run_due() == []
    assert calls.fired == []


async def test_a_complete_sync_only_speaks_for_its_window(store: Store, clock: FakeClock) -> None:
    sched = scheduler(store, clock, Calls())
    far = START + timedelta(days=60)
    await sched.apply("team", [occurrence(), occurrence("far@example.com", far)], complete=True)
    await sched.apply("team", [occurrence()], complete=True, window=(T0, T0 + timedelta(days=30)))
    assert (await stored(store, "far@example.com")).state == "scheduled"


async def test_an_older_sequence_does_not_override(store: Store, clock: FakeClock) -> None:
    calls = Calls()
    sched = scheduler(store, clock, calls)
    await sched.apply("team", [occurrence(sequence=2)], complete=True)
    result = await sched.apply(
        "team", [occurrence(start=START + timedelta(hours=3), sequence=1)], complete=True
    )
    assert result.ignored == ("standup@example.com",)
    assert (await stored(store)).start == START

    # A late REQUEST (e.g. an iMIP mail that arrives after the CANCEL) does not revive it either.
    await sched.apply("team", [occurrence(sequence=3, cancelled=True)], complete=True)
    await sched.apply("mail", [occurrence(sequence=2)], complete=False)
    row = await stored(store)
    assert (row.state, row.sequence) == ("cancelled", 3)
    at(clock, START)
    assert await sched.run_due() == []
    assert calls.fired == []


async def test_the_same_invitation_from_two_sources_is_one_call(store: Store, clock: FakeClock) -> None:
    calls = Calls()
    sched = scheduler(store, clock, calls)
    await sched.apply("team", [occurrence()], complete=True)
    await sched.apply("mail", [occurrence()], complete=False)  # the iMIP copy of the same revision
    assert (await stored(store)).source == "team"
    at(clock, START)
    await sched.run_due()
    assert calls.keys == ["standup@example.com"]


async def test_a_recurring_series_with_a_cancelled_instance(store: Store, clock: FakeClock) -> None:
    ics = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:weekly@example.com
DTSTAMP:20260101T000000Z
DTSTART:20260105T100000Z
DTEND:20260105T103000Z
RRULE:FREQ=WEEKLY;COUNT=3
SUMMARY:Weekly
ORGANIZER:mailto:ann@example.com
ATTENDEE:mailto:meet@chime.example.com
ATTENDEE:mailto:bob@example.com
END:VEVENT
BEGIN:VEVENT
UID:weekly@example.com
DTSTAMP:20260101T000000Z
RECURRENCE-ID:20260112T100000Z
DTSTART:20260112T100000Z
DTEND:20260112T103000Z
STATUS:CANCELLED
SUMMARY:Weekly
ORGANIZER:mailto:ann@example.com
ATTENDEE:mailto:meet@chime.example.com
END:VEVENT
END:VCALENDAR
"""
    found = interpret(ics, ADDRESSES, start=T0, end=T0 + timedelta(days=30))
    assert found.problems == ()
    calls = Calls()
    sched = scheduler(store, clock, calls)
    await sched.apply("team", found.occurrences, complete=True)
    for week in range(3):
        at(clock, START + timedelta(weeks=week))
        await sched.run_due()
    assert [o.start for o in calls.fired] == [START, START + timedelta(weeks=2)]


# -- restarts, the grace period and the lead time ----------------------------------------------------


async def test_a_restart_after_the_call_does_not_call_again(
    store: Store, other_store: Store, clock: FakeClock
) -> None:
    calls = Calls()
    first = scheduler(store, clock, calls)
    await first.start()
    await first.apply("team", [occurrence()], complete=True)
    at(clock, START)
    await first.run_due()
    await first.stop()

    clock.advance(60)
    second = scheduler(other_store, clock, calls)
    await second.start()
    try:
        # The next sync still reports the occurrence: it is history, not scheduled again.
        result = await second.apply("team", [occurrence()], complete=True)
        assert result.ignored == ("standup@example.com",)
        assert await second.run_due() == []
        assert second.jobs() == {}
    finally:
        await second.stop()
    assert calls.keys == ["standup@example.com"]


async def test_down_through_the_start_but_within_the_grace_calls_at_start(
    store: Store, other_store: Store, clock: FakeClock
) -> None:
    calls = Calls()
    await scheduler(store, clock, calls).apply("team", [occurrence()], complete=True)
    at(clock, START + GRACE - timedelta(seconds=1))  # the server was down through the start

    restarted = scheduler(other_store, clock, calls)
    await restarted.start()
    try:
        assert calls.keys == ["standup@example.com"]
        assert (await stored(store)).fired_at == START + GRACE - timedelta(seconds=1)
    finally:
        await restarted.stop()


async def test_down_beyond_the_grace_records_a_miss(
    store: Store, other_store: Store, clock: FakeClock
) -> None:
    calls = Calls()
    await scheduler(store, clock, calls).apply("team", [occurrence()], complete=True)
    at(clock, START + GRACE + timedelta(seconds=1))

    restarted = scheduler(other_store, clock, calls)
    await restarted.start()
    try:
        assert calls.fired == []
        row = await stored(store)
        assert row.state == "missed"
        assert row.reason is not None
        assert "grace period" in row.reason
        # A missed call is history too: the next sync does not schedule it again.
        await restarted.apply("team", [occurrence()], complete=True)
        assert (await stored(store)).state == "missed"
    finally:
        await restarted.stop()


async def test_the_lead_time_calls_early(store: Store, clock: FakeClock) -> None:
    calls = Calls()
    sched = scheduler(store, clock, calls, lead=timedelta(minutes=2))
    await sched.apply("team", [occurrence()], complete=True)
    at(clock, START - timedelta(minutes=2, seconds=1))
    assert await sched.run_due() == []
    at(clock, START - timedelta(minutes=2))
    assert [o.start for o in await sched.run_due()] == [START]


async def test_a_failed_call_is_recorded_and_not_retried(store: Store, clock: FakeClock) -> None:
    attempts: list[str] = []

    async def broken(occ: FiredOccurrence) -> None:
        attempts.append(occ.key)
        raise RuntimeError("no route to the bus")

    sched = Scheduler(store, clock, grace=GRACE, on_fire=broken)
    await sched.apply("team", [occurrence()], complete=True)
    at(clock, START)
    await sched.run_due()
    await sched.run_due()
    assert attempts == ["standup@example.com"]
    row = await stored(store)
    assert row.state == "fired"
    assert row.reason is not None
    assert "no route to the bus" in row.reason


async def test_the_alarm_really_rings_on_the_real_clock(store: Store) -> None:
    calls = Calls()
    clock = SystemClock()
    sched = scheduler(store, clock, calls)
    await sched.start()
    try:
        start = clock.now() + timedelta(seconds=0.3)
        await sched.apply("team", [occurrence(start=start)], complete=True)
        assert calls.fired == []
        await asyncio.wait_for(calls.event.wait(), timeout=5)
        assert calls.keys == ["standup@example.com"]
        fired_at = calls.fired[0].fired_at
        assert fired_at is not None
        assert start <= fired_at < start + timedelta(seconds=2)
    finally:
        await sched.stop()
