"""Queries for accounts, users, API tokens and sign-in links."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.ids import new_id, new_meeting_id, new_pin
from chimebot.models import Account, Profile, User
from chimebot.store.schema import account_domains, accounts, api_tokens, invitations, signin_links, users


def _user(row: RowMapping) -> User:
    return User(
        row["id"],
        row["account_id"],
        row["email"],
        row["display_name"],
        bool(row["is_admin"]),
        row["license"],
        row["registration_status"],
        bool(row.get("do_not_disturb", False)),
    )


async def count_accounts(conn: AsyncConnection) -> int:
    """Return how many accounts exist."""
    return (await conn.execute(select(func.count()).select_from(accounts))).scalar_one()


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


async def users_by_emails(conn: AsyncConnection, emails: Iterable[str]) -> list[User]:
    """The users with these addresses (compared case-insensitively)."""
    wanted = sorted({email.lower() for email in emails})
    if not wanted:
        return []
    return [
        _user(row) for row in (await conn.execute(select(users).where(users.c.email.in_(wanted)))).mappings()
    ]


async def user_by_id(conn: AsyncConnection, user_id: str) -> User | None:
    """Find a user by id."""
    row = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().first()
    return _user(row) if row else None


async def first_admin(conn: AsyncConnection) -> User | None:
    """The oldest active administrator of the first account (the one the first start created)."""
    first_account = select(accounts.c.id).order_by(accounts.c.created_at, accounts.c.id).limit(1)
    stmt = (
        select(users)
        .where(
            users.c.account_id == first_account.scalar_subquery(),
            users.c.is_admin.is_(True),
            users.c.registration_status == "registered",
        )
        .order_by(users.c.created_at, users.c.id)
        .limit(1)
    )
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


# -- accounts and claimed domains ------------------------------------------------------------------


async def account_by_id(conn: AsyncConnection, account_id: str) -> Account | None:
    """An account with its claimed domains."""
    row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).mappings().first()
    if row is None:
        return None
    stmt = select(account_domains.c.domain).where(account_domains.c.account_id == account_id)
    domains = tuple(sorted((await conn.execute(stmt)).scalars()))
    return Account(
        row["id"],
        row["name"],
        row["type"],
        bool(row["remote_control"]),
        bool(row["dial_out"]),
        row["time_zone"],
        domains,
        row["created_at"],
    )


async def insert_account(
    conn: AsyncConnection,
    account_id: str,
    name: str,
    at: datetime,
    *,
    kind: str = "team",
    time_zone: str = "UTC",
) -> None:
    """Create an account of a type (team or enterprise) in a time zone."""
    await conn.execute(
        accounts.insert().values(id=account_id, name=name, type=kind, time_zone=time_zone, created_at=at)
    )


async def update_account(conn: AsyncConnection, account_id: str, values: dict[str, Any]) -> None:
    """Change an account's name, type or settings."""
    await conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))


async def domain_owner(conn: AsyncConnection, domain: str) -> str | None:
    """The id of the account that claimed a domain, if any."""
    stmt = select(account_domains.c.account_id).where(account_domains.c.domain == domain)
    return (await conn.execute(stmt)).scalar_one_or_none()


async def claim_domain(conn: AsyncConnection, domain: str, account_id: str, at: datetime) -> None:
    """Record a claim; the primary key refuses a domain another account holds."""
    await conn.execute(account_domains.insert().values(domain=domain, account_id=account_id, created_at=at))


async def release_domain(conn: AsyncConnection, domain: str, account_id: str) -> bool:
    """Drop an account's claim; return whether it had it."""
    stmt = delete(account_domains).where(
        account_domains.c.domain == domain, account_domains.c.account_id == account_id
    )
    return (await conn.execute(stmt)).rowcount > 0


# -- users as administrators see them ---------------------------------------------------------------


def _profile(row: RowMapping, account_id: str) -> Profile:
    invitation = row["inv_status"] or "accepted"  # users made without an invitation (the first admin)
    if row["account_id"] != account_id:
        # Someone invited from another account: until they accept, the inviting account learns
        # nothing about their user there (not even that it exists), only about its invitation.
        email = row["email"]
        outsider = User(row["id"], "", email, email, False, "basic", "unregistered")
        return Profile(
            outsider,
            email,
            invitation,
            row["failure_reason"],
            row["invited_on"],
            None,
            None,
            None,
            member=False,
        )
    return Profile(
        user=_user(row),
        full_name=row["full_name"],
        invitation_status=invitation,
        failure_reason=row["failure_reason"],
        invited_on=row["invited_on"],
        registered_on=row["registered_on"],
        personal_meeting_id=row["personal_meeting_id"],
        personal_pin=row["personal_pin"],
    )


def _profiles_query(account_id: str) -> Select[Any]:
    """Users of the account, and people of other accounts with an open invitation from it."""
    inv = invitations
    joined = users.outerjoin(inv, (inv.c.user_id == users.c.id) & (inv.c.account_id == account_id))
    return (
        select(
            users,
            inv.c.status.label("inv_status"),
            inv.c.failure_reason,
            inv.c.invited_on,
        )
        .select_from(joined)
        .where(
            or_(users.c.account_id == account_id, inv.c.status.in_(("pending", "failed"))),
        )
    )


async def profiles(
    conn: AsyncConnection,
    account_id: str,
    *,
    filters: dict[str, str],
    after: str | None,
    limit: int,
) -> list[Profile]:
    """A page of the account's users ordered by address, after the address ``after``."""
    stmt = _profiles_query(account_id)
    for name, value in filters.items():
        if name == "invitation_status":  # no invitation row (the first admin) shows as accepted
            stmt = stmt.where(func.coalesce(invitations.c.status, "accepted") == value)
        else:
            stmt = stmt.where(users.c[name] == value)
    if after is not None:
        stmt = stmt.where(users.c.email > after)
    rows = await conn.execute(stmt.order_by(users.c.email).limit(limit))
    return [_profile(row, account_id) for row in rows.mappings()]


async def profile(conn: AsyncConnection, account_id: str, user_id: str) -> Profile | None:
    """One user as the account's administrators see them."""
    row = (await conn.execute(_profiles_query(account_id).where(users.c.id == user_id))).mappings().first()
    return _profile(row, account_id) if row else None


async def update_user(conn: AsyncConnection, user_id: str, values: dict[str, Any]) -> None:
    """Change columns of a user."""
    await conn.execute(update(users).where(users.c.id == user_id).values(**values))


async def lock_account(conn: AsyncConnection, account_id: str) -> None:
    """Serialise changes to an account's administrators, type and domains (PostgreSQL row lock; SQLite
    writes one transaction at a time anyway)."""
    await conn.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update())


async def count_users(conn: AsyncConnection, account_id: str, *, admins: bool = False) -> int:
    """Users of an account who are not suspended; with ``admins``, its registered administrators
    (someone who never accepted an invitation cannot run the account)."""
    stmt = select(func.count()).where(
        users.c.account_id == account_id, users.c.registration_status != "suspended"
    )
    if admins:
        stmt = stmt.where(users.c.is_admin.is_(True), users.c.registration_status == "registered")
    return (await conn.execute(stmt)).scalar_one()


async def password_hash_of(conn: AsyncConnection, user_id: str) -> str | None:
    """A user's stored password hash."""
    stmt = select(users.c.password_hash).where(users.c.id == user_id)
    return (await conn.execute(stmt)).scalar_one_or_none()


async def revoke_credentials(conn: AsyncConnection, user_id: str, *, keep: str | None = None) -> int:
    """Delete a user's API tokens (but the one hashed ``keep``) and sign-in links; return the tokens."""
    await conn.execute(delete(signin_links).where(signin_links.c.user_id == user_id))
    tokens = delete(api_tokens).where(api_tokens.c.user_id == user_id)
    if keep is not None:
        tokens = tokens.where(api_tokens.c.token_hash != keep)
    return (await conn.execute(tokens)).rowcount


# -- invitations -------------------------------------------------------------------------------------


async def put_invitation(
    conn: AsyncConnection,
    *,
    account_id: str,
    user_id: str,
    token_hash: str,
    invited_by: str | None,
    at: datetime,
    expires_at: datetime,
) -> str:
    """Create or renew (new link, pending again) the invitation of a user to an account; return its id."""
    values = {
        "token_hash": token_hash,
        "status": "pending",
        "failure_reason": None,
        "invited_by": invited_by,
        "invited_on": at,
        "expires_at": expires_at,
        "accepted_on": None,
    }
    where = (invitations.c.account_id == account_id) & (invitations.c.user_id == user_id)
    existing = (await conn.execute(select(invitations.c.id).where(where))).scalar_one_or_none()
    if existing is not None:
        await conn.execute(update(invitations).where(invitations.c.id == existing).values(**values))
        return existing
    invitation_id = new_id()
    await conn.execute(
        invitations.insert().values(id=invitation_id, account_id=account_id, user_id=user_id, **values)
    )
    return invitation_id


async def open_invitation(conn: AsyncConnection, token_hash: str, now: datetime) -> RowMapping | None:
    """An invitation that can still be accepted (pending or failed, not expired), by its link's hash."""
    stmt = select(invitations).where(
        invitations.c.token_hash == token_hash,
        invitations.c.status.in_(("pending", "failed")),
        invitations.c.expires_at > now,
    )
    return (await conn.execute(stmt)).mappings().first()


async def claim_invitation(conn: AsyncConnection, token_hash: str, now: datetime) -> RowMapping | None:
    """Mark an open invitation accepted and return it (account_id, user_id); None if it cannot be used."""
    stmt = (
        update(invitations)
        .where(
            invitations.c.token_hash == token_hash,
            invitations.c.status.in_(("pending", "failed")),
            invitations.c.expires_at > now,
        )
        .values(status="accepted", accepted_on=now, failure_reason=None)
        .returning(invitations.c.account_id, invitations.c.user_id)
    )
    return (await conn.execute(stmt)).mappings().first()


async def registered_on(conn: AsyncConnection, user_id: str) -> datetime | None:
    """When a user first registered (None: never, so far)."""
    stmt = select(users.c.registered_on).where(users.c.id == user_id)
    return (await conn.execute(stmt)).scalar_one_or_none()


async def fail_invitation(conn: AsyncConnection, invitation_id: str, token_hash: str, reason: str) -> None:
    """Mark a delivery failed, unless the invitation was renewed or accepted meanwhile."""
    await conn.execute(
        update(invitations)
        .where(
            invitations.c.id == invitation_id,
            invitations.c.token_hash == token_hash,
            invitations.c.status == "pending",
        )
        .values(status="failed", failure_reason=reason)
    )


async def open_invitation_of(conn: AsyncConnection, account_id: str, user_id: str) -> str | None:
    """The id of an account's still-open (pending or failed) invitation of a user."""
    stmt = select(invitations.c.id).where(
        invitations.c.account_id == account_id,
        invitations.c.user_id == user_id,
        invitations.c.status.in_(("pending", "failed")),
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def delete_invitation(conn: AsyncConnection, invitation_id: str) -> None:
    """Remove an invitation (its link stops working)."""
    await conn.execute(delete(invitations).where(invitations.c.id == invitation_id))


async def inviting_accounts(conn: AsyncConnection, user_id: str) -> list[str]:
    """The accounts with an open invitation of a user, oldest invitation first."""
    stmt = (
        select(invitations.c.account_id)
        .where(invitations.c.user_id == user_id, invitations.c.status.in_(("pending", "failed")))
        .order_by(invitations.c.invited_on)
    )
    return list((await conn.execute(stmt)).scalars())


async def delete_user(conn: AsyncConnection, user_id: str) -> None:
    """Remove a user who never registered (their tokens, links and invitations go with them)."""
    await conn.execute(delete(users).where(users.c.id == user_id))
