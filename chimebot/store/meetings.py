"""Queries for meetings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.store.schema import meetings, users


async def insert_meeting(
    conn: AsyncConnection,
    meeting_id: str,
    account_id: str,
    host_id: str,
    kind: str,
    topic: str,
    start_at: datetime,
    at: datetime,
) -> None:
    """Create a meeting."""
    await conn.execute(
        meetings.insert().values(
            id=meeting_id,
            account_id=account_id,
            host_id=host_id,
            type=kind,
            topic=topic,
            start_at=start_at,
            created_at=at,
        )
    )


async def meeting_by_id(conn: AsyncConnection, meeting_id: str) -> RowMapping | None:
    """A meeting row by id."""
    return (await conn.execute(select(meetings).where(meetings.c.id == meeting_id))).mappings().first()


async def personal_meeting_id(conn: AsyncConnection, user_id: str) -> str | None:
    """A user's personal meeting id, or None if there is no such user."""
    query = select(users.c.personal_meeting_id).where(users.c.id == user_id)
    return (await conn.execute(query)).scalar_one_or_none()


async def owner_of(conn: AsyncConnection, meeting_id: str) -> str | None:
    """The user whose personal meeting id this is, else the host of the meeting with this id, else None."""
    personal = select(users.c.id).where(users.c.personal_meeting_id == meeting_id)
    owner = (await conn.execute(personal)).scalar_one_or_none()
    if owner is None:
        hosted = select(meetings.c.host_id).where(meetings.c.id == meeting_id)
        owner = (await conn.execute(hosted)).scalar_one_or_none()
    return owner


async def activate(
    conn: AsyncConnection,
    meeting_id: str,
    account_id: str,
    host_id: str,
    topic: str,
    start_at: datetime,
    at: datetime,
) -> None:
    """Make a scheduled meeting active at its start: create it, or reopen the id's meeting (a series)."""
    found = await meeting_by_id(conn, meeting_id)
    if found is None:
        await insert_meeting(conn, meeting_id, account_id, host_id, "scheduled", topic, start_at, at)
        return
    await conn.execute(
        meetings.update()
        .where(meetings.c.id == meeting_id)
        .values(topic=topic, start_at=start_at, ended_at=None, attendee_count=0)
    )
