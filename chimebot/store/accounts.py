"""Queries for accounts, users, API tokens and sign-in links."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.ids import new_meeting_id, new_pin
from chimebot.models import User
from chimebot.store.schema import accounts, api_tokens, signin_links, users


def _user(row: RowMapping) -> User:
    return User(
        row["id"],
        row["account_id"],
        row["email"],
        row["display_name"],
        bool(row["is_admin"]),
        row["license"],
        row["registration_status"],
    )


async def count_accounts(conn: AsyncConnection) -> int:
    """Return how many accounts exist."""
    return (await conn.execute(select(func.count()).select_from(accounts))).scalar_one()


async def insert_account(conn: AsyncConnection, account_id: str, name: str, at: datetime) -> None:
    """Create an account."""
    await conn.execute(accounts.insert().values(id=account_id, name=name, type="team", created_at=at))


async def insert_user(
    conn: AsyncConnection, user: User, at: datetime, *, full_name: str | None = None
) -> None:
    """Create a user with a new personal meeting id and PIN; the address must already be lower-case."""
    registered = user.registration_status == "registered"
    await conn.execute(
        users.insert().values(
            id=user.id,
            account_id=user.account_id,
            email=user.email,
            display_name=user.display_name,
            full_name=user.email if full_name is None else full_name,
            is_admin=user.is_admin,
            license=user.license,
            registration_status=user.registration_status,
            registered_on=at if registered else None,
            personal_meeting_id=new_meeting_id(),
            personal_pin=new_pin(),
            created_at=at,
        )
    )


async def user_by_email(conn: AsyncConnection, email: str) -> User | None:
    """Find a user by address, case-insensitively."""
    row = (await conn.execute(select(users).where(users.c.email == email.lower()))).mappings().first()
    return _user(row) if row else None


async def user_by_id(conn: AsyncConnection, user_id: str) -> User | None:
    """Find a user by id."""
    row = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().first()
    return _user(row) if row else None


async def first_admin(conn: AsyncConnection) -> User | None:
    """Return the oldest account administrator (the bootstrap admin, normally)."""
    stmt = select(users).where(users.c.is_admin.is_(True)).order_by(users.c.created_at, users.c.id).limit(1)
    row = (await conn.execute(stmt)).mappings().first()
    return _user(row) if row else None


async def insert_token(
    conn: AsyncConnection, token_id: str, user_id: str, name: str, token_hash: str, at: datetime
) -> None:
    """Store a personal API token by its hash."""
    await conn.execute(
        api_tokens.insert().values(
            id=token_id, user_id=user_id, name=name, token_hash=token_hash, created_at=at
        )
    )


async def user_by_token_hash(conn: AsyncConnection, token_hash: str) -> User | None:
    """Find the owner of a token by the token's hash."""
    stmt = select(users).join(api_tokens, api_tokens.c.user_id == users.c.id)
    row = (await conn.execute(stmt.where(api_tokens.c.token_hash == token_hash))).mappings().first()
    return _user(row) if row else None


async def tokens_of(conn: AsyncConnection, user_id: str) -> list[RowMapping]:
    """List a user's tokens (id, name, created_at), newest first."""
    stmt = (
        select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.created_at)
        .where(api_tokens.c.user_id == user_id)
        .order_by(api_tokens.c.created_at.desc())
    )
    return list((await conn.execute(stmt)).mappings())


async def delete_token(conn: AsyncConnection, user_id: str, token_id: str) -> bool:
    """Revoke one of a user's tokens; return whether it existed."""
    stmt = delete(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.user_id == user_id)
    return (await conn.execute(stmt)).rowcount > 0


async def insert_signin_link(
    conn: AsyncConnection, token_hash: str, user_id: str, expires_at: datetime
) -> None:
    """Store a one-time sign-in link by its hash."""
    await conn.execute(
        signin_links.insert().values(token_hash=token_hash, user_id=user_id, expires_at=expires_at)
    )


async def consume_signin_link(conn: AsyncConnection, token_hash: str, now: datetime) -> str | None:
    """Mark an unused, unexpired link used and return its user id; None if it cannot be used."""
    # One conditional UPDATE, so two clicks racing cannot both sign in.
    stmt = (
        update(signin_links)
        .where(
            signin_links.c.token_hash == token_hash,
            signin_links.c.used_at.is_(None),
            signin_links.c.expires_at > now,
        )
        .values(used_at=now)
        .returning(signin_links.c.user_id)
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def signin_link_usable(conn: AsyncConnection, token_hash: str, now: datetime) -> bool:
    """Tell whether a link exists, is unused and unexpired (without using it)."""
    stmt = select(signin_links.c.user_id).where(
        signin_links.c.token_hash == token_hash,
        signin_links.c.used_at.is_(None),
        signin_links.c.expires_at > now,
    )
    return (await conn.execute(stmt)).first() is not None
