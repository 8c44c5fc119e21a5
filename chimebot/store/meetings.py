"""Queries for meetings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.store.schema import meetings


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
