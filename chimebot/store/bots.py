"""Queries for bots, their rooms, the delivery outbox, the bot router's cursor and server keys."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.models import Bot
from chimebot.store.schema import (
    bot_deliveries,
    bots,
    events,
    log_cursors,
    room_bots,
    rooms,
    server_keys,
    users,
)

UNFINISHED = ("pending", "sending")


def _bot(row: RowMapping) -> Bot:
    return Bot(
        name=row["name"],
        display_name=row["display_name"],
        kind=row["kind"],
        endpoint=row["endpoint"],
        events=tuple(json.loads(row["events"])),
        signing=row["signing"],
        timeout_seconds=row["timeout_seconds"],
        digest=row["digest"],
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        verified_at=row["verified_at"],
        verify_error=row["verify_error"],
    )


# -- bots ----------------------------------------------------------------------------------------


async def all_bots(conn: AsyncConnection) -> list[Bot]:
    """Every bot, by name."""
    return [_bot(r) for r in (await conn.execute(select(bots).order_by(bots.c.name))).mappings()]


async def bot(conn: AsyncConnection, name: str) -> Bot | None:
    """One bot by name."""
    row = (await conn.execute(select(bots).where(bots.c.name == name))).mappings().first()
    return _bot(row) if row else None


async def any_bot(conn: AsyncConnection) -> bool:
    """Whether any bot was ever declared."""
    return (await conn.execute(select(bots.c.name).limit(1))).first() is not None


async def put_bot(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Insert a bot, or update the one of that name."""
    exists = (await conn.execute(select(bots.c.name).where(bots.c.name == values["name"]))).first()
    if exists:
        await conn.execute(update(bots).where(bots.c.name == values["name"]).values(values))
    else:
        await conn.execute(insert(bots).values(values))


async def mark_verified(conn: AsyncConnection, name: str, now: datetime) -> bool:
    """Record a passed verification; True only for the caller that turned an unverified bot verified."""
    stmt = update(bots).where(bots.c.name == name, bots.c.verified_at.is_(None))
    return (await conn.execute(stmt.values(verified_at=now, verify_error=None, updated_at=now))).rowcount == 1


async def update_bot(conn: AsyncConnection, name: str, values: dict[str, Any]) -> None:
    """Change some of a bot's columns."""
    await conn.execute(update(bots).where(bots.c.name == name).values(values))


# -- rooms ---------------------------------------------------------------------------------------


async def add_to_room(
    conn: AsyncConnection, room_id: str, name: str, added_by: str | None, now: datetime
) -> None:
    """Put a bot in a room."""
    await conn.execute(
        insert(room_bots).values(room_id=room_id, bot_name=name, added_by=added_by, joined_at=now)
    )


async def remove_from_room(conn: AsyncConnection, room_id: str, name: str) -> bool:
    """Take a bot out of a room; False if it was not there."""
    result = await conn.execute(
        delete(room_bots).where(room_bots.c.room_id == room_id, room_bots.c.bot_name == name)
    )
    return result.rowcount > 0


async def joined_at(conn: AsyncConnection, room_id: str, name: str) -> datetime | None:
    """When a bot joined a room, or None if it is not in it."""
    stmt = select(room_bots.c.joined_at).where(room_bots.c.room_id == room_id, room_bots.c.bot_name == name)
    return (await conn.execute(stmt)).scalar()


async def bots_in_room(conn: AsyncConnection, room_id: str) -> list[tuple[Bot, datetime]]:
    """The bots in a room, with when each joined."""
    stmt = (
        select(bots, room_bots.c.joined_at)
        .join(room_bots, room_bots.c.bot_name == bots.c.name)
        .where(room_bots.c.room_id == room_id)
        .order_by(bots.c.name)
    )
    return [(_bot(r), r["joined_at"]) for r in (await conn.execute(stmt)).mappings()]


async def bots_by_room(conn: AsyncConnection, room_ids: Collection[str]) -> dict[str, set[str]]:
    """The names of the bots in each of these rooms."""
    found: dict[str, set[str]] = defaultdict(set)
    if room_ids:
        stmt = select(room_bots.c.room_id, room_bots.c.bot_name).where(
            room_bots.c.room_id.in_(list(room_ids))
        )
        for room_id, name in await conn.execute(stmt):
            found[room_id].add(name)
    return found


async def membership_after(
    conn: AsyncConnection, after_id: int, room_ids: Collection[str]
) -> list[RowMapping]:
    """Joins and departures in these rooms after an event id, newest first (type, room_id, payload)."""
    if not room_ids:
        return []
    stmt = (
        select(events.c.type, events.c.room_id, events.c.payload)
        .where(
            events.c.id > after_id,
            events.c.room_id.in_(list(room_ids)),
            events.c.type.in_(("member.joined", "member.left")),
        )
        .order_by(events.c.id.desc())
    )
    return list((await conn.execute(stmt)).mappings())


async def rooms_of_bot(conn: AsyncConnection, name: str) -> list[tuple[str, str, str]]:
    """The rooms a bot is in, as (room id, account id, room name)."""
    stmt = (
        select(rooms.c.id, rooms.c.account_id, rooms.c.name)
        .join(room_bots, room_bots.c.room_id == rooms.c.id)
        .where(room_bots.c.bot_name == name)
        .order_by(rooms.c.name)
    )
    return [tuple(r) for r in await conn.execute(stmt)]  # type: ignore[misc]


async def addresses_of(conn: AsyncConnection, user_ids: Iterable[str]) -> dict[str, str]:
    """The addresses of these users, by id."""
    ids = list(set(user_ids))
    if not ids:
        return {}
    return {i: e for i, e in await conn.execute(select(users.c.id, users.c.email).where(users.c.id.in_(ids)))}


# -- the router's cursor and server keys ---------------------------------------------------------


async def cursor(conn: AsyncConnection, name: str) -> int | None:
    """Where a reader of the event log stands, or None if it never started."""
    return (await conn.execute(select(log_cursors.c.position).where(log_cursors.c.name == name))).scalar()


async def start_cursor(conn: AsyncConnection, name: str, position: int) -> None:
    """Place a new reader of the event log, unless it is placed (a concurrent start's stays)."""
    if await cursor(conn, name) is None:
        stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(log_cursors)
        await conn.execute(stmt.values(name=name, position=position).on_conflict_do_nothing())


async def advance_cursor(conn: AsyncConnection, name: str, old: int, new: int) -> bool:
    """Move a reader from ``old`` to ``new``; False if another node moved it first."""
    stmt = update(log_cursors).where(log_cursors.c.name == name, log_cursors.c.position == old)
    return (await conn.execute(stmt.values(position=new))).rowcount == 1


async def move_cursor(conn: AsyncConnection, name: str, position: int) -> None:
    """Put a reader of the event log at ``position``, wherever it was."""
    await conn.execute(update(log_cursors).where(log_cursors.c.name == name).values(position=position))


async def server_key(conn: AsyncConnection, name: str) -> str | None:
    """A key this server made for itself, or None."""
    return (await conn.execute(select(server_keys.c.value).where(server_keys.c.name == name))).scalar()


async def insert_server_key(conn: AsyncConnection, name: str, value: str, now: datetime) -> None:
    """Store a new server key (a concurrent start storing another fails on the primary key)."""
    await conn.execute(insert(server_keys).values(name=name, value=value, created_at=now))


# -- deliveries ----------------------------------------------------------------------------------


async def insert_deliveries(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Queue deliveries."""
    if rows:
        await conn.execute(insert(bot_deliveries), rows)


async def claim(conn: AsyncConnection, now: datetime, lease_until: datetime, limit: int) -> list[RowMapping]:
    """Mark due deliveries as being sent and return them: for each bot and room only the oldest
    unfinished one, and only for bots that are enabled and verified.

    A row left ``sending`` by a node that died is taken again once its lease has passed. While a
    row of a bot and room is being sent, no other row of theirs is taken (a replayed older row
    would otherwise be the oldest unfinished one and go out beside it).
    """
    d = bot_deliveries
    heads = select(func.min(d.c.id)).where(d.c.status.in_(UNFINISHED)).group_by(d.c.bot_name, d.c.room_id)
    ready = select(bots.c.name).where(bots.c.enabled, bots.c.verified_at.is_not(None))
    e = d.alias("sibling")
    busy = (
        select(e.c.id)
        .where(
            e.c.bot_name == d.c.bot_name,
            e.c.room_id == d.c.room_id,
            e.c.id != d.c.id,
            e.c.status == "sending",
            e.c.lease_until >= now,
        )
        .exists()
    )
    due = or_(
        and_(d.c.status == "pending", d.c.next_attempt_at <= now),
        and_(d.c.status == "sending", d.c.lease_until < now),
    )
    chosen = (
        select(d.c.id)
        .where(d.c.id.in_(heads), due, d.c.bot_name.in_(ready), ~busy)
        .order_by(d.c.id)
        .limit(limit)
    )
    stmt = (
        update(d)
        .where(d.c.id.in_(chosen.scalar_subquery()), due)
        .values(status="sending", lease_until=lease_until)
        .returning(d)
    )
    rows = list((await conn.execute(stmt)).mappings())
    return sorted(rows, key=lambda r: r["id"])


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest pending delivery is due."""
    d = bot_deliveries
    return (await conn.execute(select(func.min(d.c.next_attempt_at)).where(d.c.status == "pending"))).scalar()


async def finish(conn: AsyncConnection, delivery_id: int, lease: datetime, values: dict[str, Any]) -> bool:
    """Record an attempt's outcome, if the claim (its lease) is still the caller's; False if not."""
    d = bot_deliveries
    stmt = update(d).where(d.c.id == delivery_id, d.c.status == "sending", d.c.lease_until == lease)
    return (await conn.execute(stmt.values(values))).rowcount == 1


def _scoped(stmt: Any, account_id: str | None) -> Any:
    """Limit a query on deliveries to the rooms of one account (None: every account)."""
    if account_id is None:
        return stmt
    in_account = select(rooms.c.id).where(rooms.c.account_id == account_id)
    return stmt.where(bot_deliveries.c.room_id.in_(in_account))


async def deliveries(
    conn: AsyncConnection,
    name: str,
    *,
    account_id: str | None,
    status: str | None,
    before_id: int | None,
    limit: int,
) -> list[RowMapping]:
    """A bot's deliveries, newest first (only those of one account's rooms unless account_id is None)."""
    d = bot_deliveries
    stmt = select(d).where(d.c.bot_name == name)
    if status is not None:
        stmt = stmt.where(d.c.status == status)
    if before_id is not None:
        stmt = stmt.where(d.c.id < before_id)
    stmt = _scoped(stmt, account_id).order_by(d.c.id.desc()).limit(limit)
    return list((await conn.execute(stmt)).mappings())


async def delivery_counts(conn: AsyncConnection, account_id: str | None) -> dict[str, dict[str, int]]:
    """For each bot, how many deliveries are in each status."""
    d = bot_deliveries
    stmt = _scoped(select(d.c.bot_name, d.c.status, func.count()), account_id).group_by(
        d.c.bot_name, d.c.status
    )
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for name, status, count in await conn.execute(stmt):
        counts[name][status] = count
    return counts


async def replay(
    conn: AsyncConnection, name: str, ids: Collection[int] | None, *, account_id: str | None, now: datetime
) -> list[int]:
    """Queue failed deliveries again (these ids, or every failed one); return the ids queued."""
    d = bot_deliveries
    stmt = _scoped(select(d.c.id).where(d.c.bot_name == name, d.c.status == "failed"), account_id)
    if ids is not None:
        stmt = stmt.where(d.c.id.in_(list(ids)))
    chosen = [i for (i,) in await conn.execute(stmt)]
    if chosen:
        await conn.execute(
            update(d)
            .where(d.c.id.in_(chosen))
            .values(
                status="pending", attempts=0, first_attempt_at=None, next_attempt_at=now, lease_until=None
            )
        )
    return chosen
