"""Queries for rooms and their members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.models import Member, Room
from chimebot.store.schema import room_members, rooms, users


def _room(row: RowMapping) -> Room:
    return Room(row["id"], row["account_id"], row["name"], row["created_at"])


def _member(row: RowMapping) -> Member:
    return Member(
        row["room_id"],
        row["user_id"],
        row["email"],
        row["display_name"],
        bool(row["is_admin"]),
        row["joined_at"],
    )


_members = select(
    room_members.c.room_id,
    room_members.c.user_id,
    users.c.email,
    users.c.display_name,
    room_members.c.is_admin,
    room_members.c.joined_at,
).join(users, users.c.id == room_members.c.user_id)


async def insert_room(conn: AsyncConnection, room: Room) -> None:
    """Create a room."""
    await conn.execute(
        rooms.insert().values(
            id=room.id, account_id=room.account_id, name=room.name, created_at=room.created_at
        )
    )


async def room_by_id(conn: AsyncConnection, room_id: str, *, lock: bool = False) -> Room | None:
    """Find a room; ``lock`` holds its row until the transaction ends (PostgreSQL; SQLite locks the file)."""
    stmt = select(rooms).where(rooms.c.id == room_id)
    if lock:  # NO KEY UPDATE: it still lets message inserts reference the room meanwhile
        stmt = stmt.with_for_update(key_share=True)
    row = (await conn.execute(stmt)).mappings().first()
    return _room(row) if row else None


async def room_by_name(conn: AsyncConnection, account_id: str, name: str) -> Room | None:
    """Find a room of an account by its exact name."""
    stmt = select(rooms).where(rooms.c.account_id == account_id, rooms.c.name == name)
    row = (await conn.execute(stmt)).mappings().first()
    return _room(row) if row else None


async def rooms_of(conn: AsyncConnection, user_id: str) -> list[Room]:
    """List the rooms a user is a member of, by name."""
    stmt = (
        select(rooms)
        .join(room_members, room_members.c.room_id == rooms.c.id)
        .where(room_members.c.user_id == user_id)
        .order_by(rooms.c.name)
    )
    return [_room(r) for r in (await conn.execute(stmt)).mappings()]


async def room_ids_of(conn: AsyncConnection, user_id: str) -> set[str]:
    """Return the ids of the rooms a user is a member of."""
    stmt = select(room_members.c.room_id).where(room_members.c.user_id == user_id)
    return set((await conn.execute(stmt)).scalars())


async def room_ids_in_account(conn: AsyncConnection, user_id: str, account_id: str) -> list[str]:
    """The rooms of one account that a user is a member of."""
    stmt = (
        select(room_members.c.room_id)
        .join(rooms, rooms.c.id == room_members.c.room_id)
        .where(room_members.c.user_id == user_id, rooms.c.account_id == account_id)
        .order_by(room_members.c.room_id)
    )
    return list((await conn.execute(stmt)).scalars())


async def members(conn: AsyncConnection, room_id: str) -> list[Member]:
    """List a room's members, administrators first."""
    stmt = _members.where(room_members.c.room_id == room_id).order_by(
        room_members.c.is_admin.desc(), users.c.email
    )
    return [_member(r) for r in (await conn.execute(stmt)).mappings()]


async def member(conn: AsyncConnection, room_id: str, user_id: str) -> Member | None:
    """Return one membership, if the user is in the room."""
    stmt = _members.where(room_members.c.room_id == room_id, room_members.c.user_id == user_id)
    row = (await conn.execute(stmt)).mappings().first()
    return _member(row) if row else None


async def count_admins(conn: AsyncConnection, room_id: str) -> int:
    """Return how many administrators a room has."""
    stmt = (
        select(func.count())
        .select_from(room_members)
        .where(room_members.c.room_id == room_id, room_members.c.is_admin.is_(True))
    )
    return (await conn.execute(stmt)).scalar_one()


async def insert_member(
    conn: AsyncConnection, room_id: str, user_id: str, is_admin: bool, at: datetime
) -> None:
    """Add a user to a room."""
    await conn.execute(
        room_members.insert().values(room_id=room_id, user_id=user_id, is_admin=is_admin, joined_at=at)
    )


async def set_member_admin(conn: AsyncConnection, room_id: str, user_id: str, is_admin: bool) -> None:
    """Make a member a room administrator, or not."""
    await conn.execute(
        update(room_members)
        .where(room_members.c.room_id == room_id, room_members.c.user_id == user_id)
        .values(is_admin=is_admin)
    )


async def delete_member(conn: AsyncConnection, room_id: str, user_id: str) -> None:
    """Remove a user from a room."""
    await conn.execute(
        delete(room_members).where(room_members.c.room_id == room_id, room_members.c.user_id == user_id)
    )
