"""Queries for message history and the stream's event log."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.store.schema import events, messages


async def history(
    conn: AsyncConnection, room_id: str, *, limit: int, before_seq: int | None
) -> list[RowMapping]:
    """Return up to ``limit`` messages of a room older than ``before_seq``, newest first."""
    stmt = select(messages).where(messages.c.room_id == room_id)
    if before_seq is not None:
        stmt = stmt.where(messages.c.seq < before_seq)
    stmt = stmt.order_by(messages.c.seq.desc()).limit(limit)
    return list((await conn.execute(stmt)).mappings())


async def message_by_id(conn: AsyncConnection, message_id: str) -> RowMapping | None:
    """Find a message by its public id."""
    return (await conn.execute(select(messages).where(messages.c.id == message_id))).mappings().first()


async def last_event_id(conn: AsyncConnection) -> int:
    """Return the id of the newest event, or 0."""
    return (await conn.execute(select(func.coalesce(func.max(events.c.id), 0)))).scalar_one()


async def events_since(
    conn: AsyncConnection,
    since: int,
    *,
    limit: int,
    user_id: str | None = None,
    room_ids: Collection[str] = (),
    left: Mapping[str, int] | None = None,
) -> list[RowMapping]:
    """Events after ``since``, oldest first, with their messages joined.

    With ``user_id``: a stream client's view, the events of ``room_ids``, of the rooms in ``left``
    up to the id given (when the user left them), and those about the user. Without: every event
    (the feed that serves all clients of a node).
    """
    # The join brings message.created events their message, which is stored once, not copied.
    cols = [
        events.c.id.label("event_id"),
        events.c.room_id.label("event_room_id"),
        events.c.type,
        events.c.user_id.label("event_user_id"),
        events.c.payload,
        events.c.created_at.label("event_created_at"),
        *[c for c in messages.c if c.name != "seq"],
    ]
    stmt = select(*cols).select_from(events.outerjoin(messages, messages.c.id == events.c.message_id))
    stmt = stmt.where(events.c.id > since)
    if user_id is not None:
        scope = [events.c.user_id == user_id]
        if room_ids:
            scope.append(events.c.room_id.in_(list(room_ids)))
        for room_id, upto in (left or {}).items():
            scope.append(and_(events.c.room_id == room_id, events.c.id <= upto))
        stmt = stmt.where(or_(*scope))
    return list((await conn.execute(stmt.order_by(events.c.id).limit(limit))).mappings())


async def rooms_left_since(conn: AsyncConnection, user_id: str, since: int) -> dict[str, int]:
    """The rooms a user left after event ``since``, each with the id of the last such departure."""
    stmt = (
        select(events.c.room_id, func.max(events.c.id))
        .where(events.c.user_id == user_id, events.c.type == "member.left", events.c.id > since)
        .group_by(events.c.room_id)
    )
    return {room_id: upto for room_id, upto in await conn.execute(stmt)}
