"""Queries for the usage and billing report: Pro activity, meetings held and messages sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Integer, case, func, literal, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.store.schema import accounts, meetings, messages, pro_activity, users


async def insert_activity(
    conn: AsyncConnection,
    *,
    account_id: str,
    user_id: str,
    kind: str,
    meeting_id: str | None,
    at: datetime,
) -> bool:
    """Record a Pro activity with the user's current license; False if the account has no such user."""
    # INSERT … SELECT reads the license in the same statement, so a concurrent license change cannot
    # slip between reading it and writing the row.
    source = select(
        users.c.account_id,
        users.c.id,
        literal(kind),
        literal(meeting_id, pro_activity.c.meeting_id.type),
        users.c.license,
        literal(at, pro_activity.c.at.type),
    ).where(users.c.id == user_id, users.c.account_id == account_id)
    columns = ["account_id", "user_id", "kind", "meeting_id", "license", "at"]
    stmt = pro_activity.insert().from_select(columns, source).returning(pro_activity.c.id)
    return (await conn.execute(stmt)).first() is not None


async def account(conn: AsyncConnection, account_id: str) -> RowMapping | None:
    """Return an account's id, name and time zone."""
    stmt = select(accounts.c.id, accounts.c.name, accounts.c.time_zone).where(accounts.c.id == account_id)
    return (await conn.execute(stmt)).mappings().first()


async def pro_days(conn: AsyncConnection, account_id: str, midnights: Sequence[datetime]) -> list[RowMapping]:
    """Each (user_id, email, license, day) with Pro activity, ``day`` indexing the days between ``midnights``.

    ``midnights`` are the UTC instants at which the local days start, plus the end of the last day; the
    day is found in SQL by comparing with them, which is correct across DST changes on both engines
    and returns one row per user and day however many activities that day holds.
    """
    at = pro_activity.c.at
    last = len(midnights) - 2
    day = case(
        *((at < end, literal(i, Integer)) for i, end in enumerate(midnights[1:-1])),
        else_=literal(last, Integer),
    ).label("day")
    stmt = (
        select(pro_activity.c.user_id, users.c.email, users.c.license, day)
        .distinct()
        .join(users, users.c.id == pro_activity.c.user_id)
        .where(
            pro_activity.c.account_id == account_id,
            pro_activity.c.license == "pro",  # activity while Basic never makes a day billable
            at >= midnights[0],
            at < midnights[-1],
        )
    )
    return list((await conn.execute(stmt)).mappings())


async def registered_users(conn: AsyncConnection, account_id: str, end: datetime) -> int:
    """Count the account's users who had registered before ``end`` (suspended ones included)."""
    # registered_on is absent for users created already registered or suspended by older code paths;
    # their creation time stands in for it.
    since = func.coalesce(users.c.registered_on, users.c.created_at)
    stmt = (
        select(func.count())
        .select_from(users)
        .where(
            users.c.account_id == account_id,
            users.c.registration_status.in_(["registered", "suspended"]),
            since < end,
        )
    )
    return (await conn.execute(stmt)).scalar_one()


async def meetings_held(
    conn: AsyncConnection, account_id: str, start: datetime, end: datetime
) -> list[RowMapping]:
    """Meetings of the account that started in [start, end), with the organizer's address, by start."""
    stmt = (
        select(
            meetings.c.id,
            meetings.c.type,
            meetings.c.start_at,
            meetings.c.ended_at,
            meetings.c.attendee_count,
            users.c.email.label("organizer"),
        )
        .join(users, users.c.id == meetings.c.host_id)
        .where(meetings.c.account_id == account_id, meetings.c.start_at >= start, meetings.c.start_at < end)
        .order_by(meetings.c.start_at, meetings.c.id)
    )
    return list((await conn.execute(stmt)).mappings())


async def messages_sent(conn: AsyncConnection, account_id: str, start: datetime, end: datetime) -> int:
    """Count chat messages that the account's users (not webhooks or bots) sent in [start, end)."""
    stmt = (
        select(func.count())
        .select_from(messages)
        .join(users, users.c.id == messages.c.sender_id)
        .where(
            messages.c.sender_kind == "user",
            users.c.account_id == account_id,
            messages.c.created_at >= start,
            messages.c.created_at < end,
        )
    )
    return (await conn.execute(stmt)).scalar_one()
