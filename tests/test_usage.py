"""The usage and billing report on both engines: active Pro days, the cap, time zones, licenses, CSV."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from chimebot.clock import FakeClock
from chimebot.errors import Invalid, NotFound
from chimebot.models import Room, User
from chimebot.services import Services, build_services
from chimebot.store import accounts as qa
from chimebot.store import rooms as qr
from chimebot.store import schema
from chimebot.usage import ActivityKind, Usage
from tests.conftest import Harness, make_config

# Every test runs once on SQLite and once on a fresh PostgreSQL database.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)  # when the test accounts and users are created
LA = "America/Los_Angeles"


def utc(text: str) -> datetime:
    """An aware UTC datetime from ``2026-03-02T10:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@asynccontextmanager
async def running(db_url: str, tmp_path: Path, clock: FakeClock, **sections: Any) -> AsyncIterator[Env]:
    """Started services on a migrated database, with their Usage service."""
    config = make_config(db_url, **sections)
    services = build_services(config, tmp_path, clock)
    await services.start()  # no bootstrap: each test makes the accounts it needs, in their time zones
    try:
        yield Env(services, services.usage)
    finally:
        await services.close()


class Env:
    """Services plus helpers that put accounts, users and activity in the database."""

    def __init__(self, services: Services, usage: Usage) -> None:
        self.services = services
        self.usage = usage

    async def account(self, time_zone: str = "UTC", name: str = "Acme") -> str:
        """Create an account in a time zone and return its id."""
        account_id = str(uuid.uuid4())
        async with self.services.store.transaction() as conn:
            await qa.insert_account(conn, account_id, name, T0, time_zone=time_zone)
        return account_id

    async def user(
        self,
        account_id: str,
        email: str,
        *,
        license: str = "pro",
        status: str = "registered",
        at: datetime = T0,
    ) -> User:
        """Create a user of an account."""
        user = User(str(uuid.uuid4()), account_id, email, email, False, license, status)  # type: ignore[arg-type]
        async with self.services.store.transaction() as conn:
            await qa.insert_user(conn, user, at)
        return user

    async def set_license(self, user: User, license: str) -> None:
        """Change a user's license, as an administrator would."""
        async with self.services.store.transaction() as conn:
            users = schema.users
            await conn.execute(sa.update(users).where(users.c.id == user.id).values(license=license))

    async def activity(self, user: User, *moments: str, kind: ActivityKind = "scheduled_meeting") -> None:
        """Record Pro activity of a user at each UTC moment (``2026-03-02T10:00``)."""
        async with self.services.store.transaction() as conn:
            for moment in moments:
                await self.usage.record(
                    conn, account_id=user.account_id, user_id=user.id, kind=kind, at=utc(moment)
                )


@pytest.fixture
def clock() -> FakeClock:
    """A clock in mid-March 2026."""
    return FakeClock(utc("2026-03-15T12:00"))


@pytest.fixture
async def env(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Env]:
    """Running services with default prices (3.00 a day, capped at 15.00 a month)."""
    async with running(db_url, tmp_path, clock) as env:
        yield env


# -- charges -----------------------------------------------------------------------------------------


async def test_cap_reached_after_five_days(env: Env) -> None:
    account = await env.account()
    six = await env.user(account, "six@example.com")
    five = await env.user(account, "five@example.com")
    await env.activity(six, *(f"2026-03-{d:02d}T10:00" for d in (2, 3, 4, 5, 6, 9)))
    await env.activity(five, *(f"2026-03-{d:02d}T10:00" for d in (2, 3, 4, 5, 6)))

    report = await env.usage.report(account, "2026-03")

    assert [u.email for u in report.users] == ["five@example.com", "six@example.com"]
    capped = report.users[1]
    assert capped.active_day_count == 6
    assert capped.charge == Decimal("15.00")  # not 18.00
    assert capped.capped is True
    # Exactly at the cap is not "capped": the cap did not lower anything.
    assert report.users[0].charge == Decimal("15.00")
    assert report.users[0].capped is False
    assert report.total == Decimal("30.00")
    assert [(d.day, d.active_users, d.charge) for d in report.days] == [
        (date(2026, 3, 2), 2, Decimal("6.00")),
        (date(2026, 3, 3), 2, Decimal("6.00")),
        (date(2026, 3, 4), 2, Decimal("6.00")),
        (date(2026, 3, 5), 2, Decimal("6.00")),
        (date(2026, 3, 6), 2, Decimal("6.00")),
        (date(2026, 3, 9), 1, Decimal("0.00")),  # the sixth day is free
    ]
    data = report.to_json()
    assert data["users"][1]["charge"] == "15.00"
    assert data["users"][1]["capped"] is True
    assert data["days"][-1] == {"date": "2026-03-09", "active_users": 1, "charge": "0.00"}
    assert data["total"] == "30.00"


async def test_cap_not_reached_and_one_day_counts_once(env: Env) -> None:
    account = await env.account()
    alice = await env.user(account, "alice@example.com")
    bob = await env.user(account, "bob@example.com")
    # Three activities on 10 March (its first and last second included) make one day.
    await env.activity(alice, "2026-03-10T00:00", "2026-03-11T09:00")
    await env.activity(alice, "2026-03-10T12:00", kind="recording")
    await env.activity(alice, "2026-03-10T23:59:59", kind="dial_in")
    await env.activity(bob, "2026-03-10T15:00", kind="large_meeting")

    report = await env.usage.report(account, "2026-03")

    assert report.active_users == 2
    alice_row, bob_row = report.users
    assert alice_row.active_days == (date(2026, 3, 10), date(2026, 3, 11))
    assert alice_row.charge == Decimal("6.00")
    assert alice_row.capped is False
    assert bob_row.active_days == (date(2026, 3, 10),)
    assert bob_row.charge == Decimal("3.00")
    assert [(d.day, d.active_users, d.charge) for d in report.days] == [
        (date(2026, 3, 10), 2, Decimal("6.00")),
        (date(2026, 3, 11), 1, Decimal("3.00")),
    ]
    assert report.total == Decimal("9.00")
    assert json.loads(json.dumps(report.to_json()))["users"][0]["active_days"] == ["2026-03-10", "2026-03-11"]


async def test_months_and_days_are_those_of_the_account_zone(env: Env, clock: FakeClock) -> None:
    account = await env.account(LA)
    user = await env.user(account, "pat@example.com")
    await env.activity(
        user,
        "2026-03-01T07:30",  # 28 Feb 23:30 PST
        "2026-03-01T08:00",  # 1 Mar 00:00 PST
        "2026-03-09T07:30",  # 9 Mar 00:30 PDT (DST began on the 8th; a fixed -8 would say the 8th)
        "2026-04-01T05:00",  # 31 Mar 22:00 PDT
        "2026-04-01T07:00",  # 1 Apr 00:00 PDT
    )

    march = await env.usage.report(account, "2026-03")
    assert march.users[0].active_days == (date(2026, 3, 1), date(2026, 3, 9), date(2026, 3, 31))
    assert march.users[0].charge == Decimal("9.00")
    assert march.to_json()["period"] == {
        "start": "2026-03-01T08:00:00.000Z",
        "end": "2026-04-01T07:00:00.000Z",
    }
    assert march.to_json()["account"]["time_zone"] == LA

    february = await env.usage.report(account, "2026-02")
    assert february.users[0].active_days == (date(2026, 2, 28),)
    assert february.total == Decimal("3.00")

    april = await env.usage.report(account, "2026-04")
    assert april.users[0].active_days == (date(2026, 4, 1),)
    assert april.total == Decimal("3.00")

    # Without a month: the current one where the account is (still 31 March in Los Angeles).
    clock.advance((utc("2026-04-01T05:00") - clock.now()).total_seconds())
    assert (await env.usage.report(account)).month == "2026-03"
    clock.advance(2 * 3600)
    assert (await env.usage.report(account)).month == "2026-04"


async def test_activity_while_basic_is_not_charged(env: Env) -> None:
    account = await env.account()
    user = await env.user(account, "sam@example.com")
    await env.activity(user, "2026-03-02T10:00", "2026-03-03T10:00")
    await env.set_license(user, "basic")
    await env.activity(user, "2026-03-04T10:00", "2026-03-05T10:00")
    await env.set_license(user, "pro")
    await env.activity(user, "2026-03-06T10:00")

    report = await env.usage.report(account, "2026-03")
    row = report.users[0]
    assert row.active_days == (date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 6))
    assert row.active_day_count == 3
    assert row.charge == Decimal("9.00")
    assert row.license == "pro"

    # A later change to Basic does not rewrite the month: the license at each moment counted.
    await env.set_license(user, "basic")
    again = await env.usage.report(account, "2026-03")
    assert again.users[0].license == "basic"
    assert again.users[0].charge == Decimal("9.00")


async def test_prices_come_from_the_config(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    billing = {"price_per_day": 2.5, "monthly_cap": 10.0, "currency": "EUR"}
    async with running(db_url, tmp_path, clock, billing=billing) as env:
        account = await env.account()
        few = await env.user(account, "few@example.com")
        many = await env.user(account, "many@example.com")
        await env.activity(few, "2026-03-02T10:00", "2026-03-03T10:00", "2026-03-04T10:00")
        await env.activity(many, *(f"2026-03-{d:02d}T10:00" for d in (2, 3, 4, 5, 6)))

        report = await env.usage.report(account, "2026-03")

    few_row, many_row = report.users
    assert few_row.charge == Decimal("7.50")
    assert many_row.charge == Decimal("10.00")
    assert many_row.capped is True
    assert [d.charge for d in report.days] == [
        Decimal("5.00"),
        Decimal("5.00"),
        Decimal("5.00"),
        Decimal("2.50"),
        Decimal("0.00"),
    ]
    data = report.to_json()
    assert (data["currency"], data["price_per_day"], data["monthly_cap"], data["total"]) == (
        "EUR",
        "2.50",
        "10.00",
        "17.50",
    )


async def test_bad_months_are_refused(env: Env) -> None:
    account = await env.account()
    for month in (
        "2026-13",
        "26-01",
        "",
        "2026-00",
        "2026-3",
        "2026-03-01",
        " 2026-03",
        "\uff12\uff10\uff12\uff16-03"  # full-width digits,
        "0000-01",
    ):
        with pytest.raises(Invalid, match="YYYY-MM"):
            await env.usage.report(account, month)
    with pytest.raises(NotFound):
        await env.usage.report("no-such-account", "2026-03")


async def test_record_uses_now_and_the_current_license(env: Env, clock: FakeClock) -> None:
    account = await env.account()
    other = await env.account(name="Other")
    user = await env.user(account, "kim@example.com", license="basic")
    async with env.services.store.transaction() as conn:
        await env.usage.record(
            conn, account_id=account, user_id=user.id, kind="dial_in", meeting_id="1234567890"
        )
    async with env.services.store.read() as conn:
        rows = (await conn.execute(sa.select(schema.pro_activity))).mappings().all()
    assert [(r["kind"], r["meeting_id"], r["license"], r["at"]) for r in rows] == [
        ("dial_in", "1234567890", "basic", utc("2026-03-15T12:00"))
    ]
    # A user of another account is refused, and the caller's transaction rolls back.
    with pytest.raises(NotFound):
        async with env.services.store.transaction() as conn:
            await env.usage.record(conn, account_id=other, user_id=user.id, kind="recording")
    assert (await env.usage.report(account, "2026-03")).users == ()


# -- shapes and the rest of the report ---------------------------------------------------------------


async def test_csv_matches_the_json(env: Env) -> None:
    account = await env.account()
    six = await env.user(account, "six@example.com")
    two = await env.user(account, "two@example.com")
    sly = await env.user(account, "=sum(a1)@example.com")  # a formula, were it not neutralised
    await env.activity(six, *(f"2026-03-{d:02d}T10:00" for d in (2, 3, 4, 5, 6, 9)))
    await env.activity(two, "2026-03-20T10:00", "2026-03-21T10:00")
    await env.activity(sly, "2026-03-31T10:00")

    report = await env.usage.report(account, "2026-03")
    data = report.to_json()
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))

    assert rows == [
        {
            "user_id": sly.id,
            "email": "'=sum(a1)@example.com",
            "license": "pro",
            "active_days": "1",
            "active_day_dates": "2026-03-31",
            "charge": "3.00",
            "capped": "false",
            "currency": "USD",
        },
        {
            "user_id": six.id,
            "email": "six@example.com",
            "license": "pro",
            "active_days": "6",
            "active_day_dates": "2026-03-02;2026-03-03;2026-03-04;2026-03-05;2026-03-06;2026-03-09",
            "charge": "15.00",
            "capped": "true",
            "currency": "USD",
        },
        {
            "user_id": two.id,
            "email": "two@example.com",
            "license": "pro",
            "active_days": "2",
            "active_day_dates": "2026-03-20;2026-03-21",
            "charge": "6.00",
            "capped": "false",
            "currency": "USD",
        },
        {
            "user_id": "total",
            "email": "",
            "license": "",
            "active_days": "9",
            "active_day_dates": "",
            "charge": "24.00",
            "capped": "",
            "currency": "USD",
        },
    ]
    for row, user in zip(rows, data["users"], strict=False):
        assert row["charge"] == user["charge"]
        assert row["active_day_dates"].split(";") == user["active_days"]
    assert data["users"][0]["email"] == "=sum(a1)@example.com"  # the JSON keeps the address as it is
    assert rows[-1]["charge"] == data["total"] == "24.00"


async def test_meetings_messages_and_registered_users_stay_in_the_month_and_account(env: Env) -> None:
    account = await env.account(LA)
    other = await env.account(LA, name="Other")
    host = await env.user(account, "host@example.com")
    await env.user(account, "away@example.com", status="suspended")
    await env.user(account, "invited@example.com", status="unregistered")
    await env.user(account, "late@example.com", at=utc("2026-04-02T12:00"))  # registered in April
    stranger = await env.user(other, "stranger@example.com")

    async with env.services.store.transaction() as conn:
        meetings = schema.meetings

        async def meeting(
            meeting_id: str, user: User, kind: str, start: str, ended: str | None, attendees: int
        ) -> None:
            await conn.execute(
                meetings.insert().values(
                    id=meeting_id,
                    account_id=user.account_id,
                    host_id=user.id,
                    type=kind,
                    topic="Weekly",
                    start_at=utc(start),
                    ended_at=utc(ended) if ended else None,
                    attendee_count=attendees,
                    created_at=T0,
                )
            )

        await meeting("1000000001", host, "scheduled", "2026-03-10T17:00", "2026-03-10T17:45:20", 4)
        await meeting("1000000002", host, "instant", "2026-04-01T05:00", None, 2)  # 31 Mar local, running
        await meeting("1000000003", host, "scheduled", "2026-03-01T07:30", "2026-03-01T08:00", 3)  # 28 Feb
        await meeting("1000000004", stranger, "scheduled", "2026-03-10T17:00", "2026-03-10T18:00", 5)

        room = Room(str(uuid.uuid4()), account, "ops", T0)
        their_room = Room(str(uuid.uuid4()), other, "ops", T0)
        await qr.insert_room(conn, room)
        await qr.insert_room(conn, their_room)

        async def message(room_id: str, kind: str, sender_id: str, at: str) -> None:
            await conn.execute(
                schema.messages.insert().values(
                    id=str(uuid.uuid4()),
                    room_id=room_id,
                    sender_kind=kind,
                    sender_id=sender_id,
                    sender_name="someone",
                    content="hello",
                    format="text",
                    created_at=utc(at),
                )
            )

        await message(room.id, "user", host.id, "2026-03-02T18:00")
        await message(room.id, "user", host.id, "2026-03-20T18:00")
        await message(room.id, "user", host.id, "2026-04-01T05:00")  # 31 Mar local
        await message(room.id, "user", host.id, "2026-03-01T07:30")  # 28 Feb local
        await message(room.id, "webhook", "hook-1", "2026-03-02T18:00")
        await message(their_room.id, "user", stranger.id, "2026-03-02T18:00")

    report = await env.usage.report(account, "2026-03")

    assert [m.to_json() for m in report.meetings] == [
        {
            "id": "1000000001",
            "start": "2026-03-10T17:00:00.000Z",
            "type": "scheduled",
            "organizer": "host@example.com",
            "duration_minutes": 45,
            "attendee_count": 4,
        },
        {
            "id": "1000000002",
            "start": "2026-04-01T05:00:00.000Z",
            "type": "instant",
            "organizer": "host@example.com",
            "duration_minutes": None,
            "attendee_count": 2,
        },
    ]
    assert report.messages_sent == 3
    assert report.registered_users == 2  # host and the suspended user; not the invited or the late one
    assert report.active_users == 0
    assert report.total == Decimal("0.00")

    february = await env.usage.report(account, "2026-02")
    assert [m.id for m in february.meetings] == ["1000000003"]
    assert february.messages_sent == 1
    assert (await env.usage.report(account, "2026-04")).registered_users == 3


async def test_the_report_over_http_as_json_and_csv(app: Harness) -> None:
    account_id, auth = app.admin.account_id, app.auth()
    meeting = await app.services.meetings.create(app.admin, "instant", "standup", None)
    async with app.services.store.transaction() as conn:  # a recording, as POST …/recording records it
        await app.services.usage.record(
            conn, account_id=account_id, user_id=app.admin.id, kind="recording", meeting_id=meeting.id
        )
    url = f"/api/v1/accounts/{account_id}/usage?month=2026-01"  # the FakeClock's month
    resp = await app.client.get(url, headers=auth)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["month"], report["total"], report["active_users"]) == ("2026-01", "3.00", 1)
    assert [(u["email"], u["active_days"]) for u in report["users"]] == [("admin@localhost", ["2026-01-05"])]
    assert [m["id"] for m in report["meetings"]] == [meeting.id]

    for query, accept in (("&format=csv", {}), ("", {"Accept": "text/csv"})):
        resp = await app.client.get(url + query, headers=auth | accept)
        assert resp.status == 200 and resp.content_type == "text/csv"
        assert resp.headers["Content-Disposition"] == f'attachment; filename="usage-{account_id}-2026-01.csv"'
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
        assert [(r["email"], r["active_days"], r["charge"]) for r in rows] == [
            ("admin@localhost", "1", "3.00"),
            ("", "1", "3.00"),
        ]
    for query, word in (("format=xml", "format"), ("month=2026-13", "YYYY-MM")):
        resp = await app.client.get(f"/api/v1/accounts/{account_id}/usage?{query}", headers=auth)
        body = await resp.json()
        assert (resp.status, body["error"]) == (400, "invalid") and word in body["message"], body
