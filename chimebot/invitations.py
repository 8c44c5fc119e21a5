"""Invitations by email, sign-up through a claimed domain, and accepting either with a one-time link."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot import secrets
from chimebot.accounts import check_name, normalise_email
from chimebot.audit import Audit, Entry
from chimebot.clock import Clock
from chimebot.config import AccountsConfig
from chimebot.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited
from chimebot.ids import new_id, new_pin
from chimebot.mail import DeliveryFailed, Mailer, compose
from chimebot.models import Account, Profile, User
from chimebot.passwords import hash_password
from chimebot.permissions import require_admin
from chimebot.ratelimit import RateLimiter
from chimebot.rooms import Rooms
from chimebot.store import Store
from chimebot.store import accounts as q
from chimebot.store.log import EventDraft

log = logging.getLogger(__name__)

MAX_PER_CALL = 50  # as Amazon Chime: up to 50 addresses per invitation
GONE = "this invitation link is unknown, already used or expired; ask an administrator for a new one"


@dataclass(frozen=True, slots=True)
class Pending:
    """What an invitation link leads to, for the page that accepts it."""

    email: str
    account_name: str
    existing: bool  # the person has a user already, and keeps its name and password
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class _Outgoing:
    invitation_id: str
    token: str
    email: str
    account_name: str
    inviter: str | None


class Invitations:
    """Invite people to an account and let them accept (``signups``: the limits per address and per
    domain of sign-up requests)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        rooms: Rooms,
        mailer: Mailer,
        signups: tuple[RateLimiter, RateLimiter],
        audit: Audit,
        config: AccountsConfig,
        *,
        base_url: str,
        sender: str,
    ) -> None:
        self._sender = sender
        self._rooms = rooms
        self._signups = signups
        self._audit = audit
        self._store = store
        self._clock = clock
        self._mailer = mailer
        self._config = config
        self._base_url = base_url

    async def invite(self, admin: User, addresses: list[str]) -> list[Profile]:
        """Invite up to 50 addresses to the admin's account and mail each a one-time link.

        New people get an unregistered user; people with a user elsewhere keep it until they accept.
        Members who are already registered here are listed but not mailed again. The invitations are
        committed before any mail is sent; a failed delivery then marks its invitation ``failed``.
        """
        require_admin(admin)
        if not addresses:
            raise Invalid("give at least one address to invite")
        if len(addresses) > MAX_PER_CALL:
            raise Invalid(f"invite at most {MAX_PER_CALL} addresses at a time; got {len(addresses)}")
        emails = list(dict.fromkeys(normalise_email(a) for a in addresses))
        outgoing: list[_Outgoing] = []
        async with self._store.transaction() as conn:
            account = await q.account_by_id(conn, admin.account_id)
            if account is None:
                raise NotFound("your account no longer exists")
            for email in emails:
                item = await self._open(conn, account, email, admin)
                if item is not None:
                    outgoing.append(item)
        await self._deliver(outgoing)
        async with self._store.read() as conn:
            found = [await q.user_by_email(conn, email) for email in emails]
            return [p for u in found if u and (p := await q.profile(conn, admin.account_id, u.id))]

    async def cancel(self, admin: User, user_id: str) -> None:
        """Withdraw an open invitation: its link stops working. A person who never registered and has
        no other invitation disappears; with another account's invitation open, they belong to it."""
        require_admin(admin)
        async with self._store.transaction() as conn:
            invitation_id = await q.open_invitation_of(conn, admin.account_id, user_id)
            if invitation_id is None:
                raise NotFound(f"your account has no open invitation for the user {user_id!r}")
            await q.delete_invitation(conn, invitation_id)
            user = await q.user_by_id(conn, user_id)
            if (
                user is None
                or user.account_id != admin.account_id
                or user.registration_status != "unregistered"
            ):
                return
            others = await q.inviting_accounts(conn, user_id)
            if others:
                await q.update_user(conn, user_id, {"account_id": others[0], "is_admin": False})
            else:
                await q.delete_user(conn, user_id)

    async def sign_up(self, address: str) -> None:
        """Let a person whose address is in a claimed domain join that account (by a mailed link).

        Limited per address and per domain, since anyone may call it: each call mails a link and may
        add an unregistered user.
        """
        email = normalise_email(address)
        per_address, per_domain = self._signups
        domain = email.rpartition("@")[2]
        for limiter, key in (
            (per_address, f"signup:address:{email}"),
            (per_domain, f"signup:domain:{domain}"),
        ):
            if (wait := await limiter.take(key)) > 0:
                raise RateLimited(
                    f"too many sign-up requests; try again in {max(1, round(wait))} seconds", retry_after=wait
                )
        async with self._store.transaction() as conn:
            account_id = await q.domain_owner(conn, email.rpartition("@")[2])
            if account_id is None:
                raise Forbidden(
                    "sign-up is open only to addresses in a domain an enterprise account has claimed; "
                    "ask an administrator to invite you",
                    code="signup_closed",
                )
            account = await q.account_by_id(conn, account_id)
            assert account is not None
            item = await self._open(conn, account, email, None)
        if item is not None:  # else already in: the same answer does not reveal who has a user
            await self._deliver([item])

    async def _open(
        self, conn: AsyncConnection, account: Account, email: str, inviter: User | None
    ) -> _Outgoing | None:
        """Create or renew the invitation of an address to an account (None: already a member there).

        A new person gets an unregistered user in the account; someone with a user elsewhere keeps it
        until they accept. ``inviter`` None means the person asked for it (claimed-domain sign-up).
        """
        now = self._clock.now()
        user = await q.user_by_email(conn, email)
        if user is None:
            granted = self._config.default_license
            user = User(new_id(), account.id, email, email, False, granted, "unregistered")
            await q.insert_user(conn, user, now)
        elif user.account_id == account.id and user.registration_status != "unregistered":
            return None
        token = secrets.new_token()
        invitation_id = await q.put_invitation(
            conn,
            account_id=account.id,
            user_id=user.id,
            token_hash=secrets.token_hash(token),
            invited_by=inviter.id if inviter else None,
            at=now,
            expires_at=now + timedelta(hours=self._config.invitation_ttl_hours),
        )
        return _Outgoing(invitation_id, token, email, account.name, inviter.display_name if inviter else None)

    async def pending(self, token: str) -> Pending:
        """What an invitation link is for, without using it."""
        async with self._store.read() as conn:
            row = await q.open_invitation(conn, secrets.token_hash(token), self._clock.now())
            user = await q.user_by_id(conn, row["user_id"]) if row else None
            account = await q.account_by_id(conn, row["account_id"]) if row else None
        if row is None or user is None or account is None:
            raise NotFound(GONE)
        return Pending(
            user.email, account.name, user.registration_status != "unregistered", row["expires_at"]
        )

    async def accept(
        self,
        token: str,
        *,
        full_name: str | None = None,
        display_name: str | None = None,
        password: str | None = None,
    ) -> User:
        """Accept an invitation: a new person sets a name and password; someone registered keeps their
        user and moves into the inviting account (leaving the rooms of the account they leave)."""
        token_hash = secrets.token_hash(token)
        # The link is checked before the costly password hash: a wrong link costs no scrypt work.
        async with self._store.read() as conn:
            found = await q.open_invitation(conn, token_hash, self._clock.now())
            user = await q.user_by_id(conn, found["user_id"]) if found else None
            registered_before = await q.registered_on(conn, user.id) is not None if user else False
        if found is None or user is None:
            raise NotFound(GONE)
        changes: dict[str, Any] = {}
        if not registered_before:
            if not full_name or password is None:
                raise Invalid("to accept, set `full_name` and a `password`")
            minimum = self._config.password_min_length
            if not minimum <= len(password) <= 1024:
                raise Invalid(f"a password must be {minimum} to 1024 characters long")
            name = check_name(full_name, "a full name")
            changes = {
                "full_name": name,
                "display_name": check_name(display_name, "a display name") if display_name else name,
                "password_hash": await hash_password(password),
            }

        left: list[str] = []  # the account a registered user leaves, if they do

        async def change(conn: AsyncConnection) -> tuple[User, list[EventDraft]]:
            now = self._clock.now()
            # One conditional UPDATE claims the link, so two requests racing cannot both accept it.
            claimed = await q.claim_invitation(conn, token_hash, now)
            current = await q.user_by_id(conn, claimed["user_id"]) if claimed else None
            if claimed is None or current is None:
                raise NotFound(GONE)
            account_id = claimed["account_id"]
            events: list[EventDraft] = []
            values = dict(changes)
            if current.account_id == account_id:
                if current.registration_status == "suspended":
                    raise Forbidden(
                        "this user is suspended; an administrator of the account can unsuspend it",
                        code="suspended",
                    )
            else:
                # Joining another account starts afresh there: what the old account decided (role,
                # license, suspension) or knew (the PIN) does not come along, and its rooms are left.
                if current.registration_status == "registered":
                    await self._keep_an_admin(conn, current)
                events = await self._rooms.leave_account(conn, current.id, current.account_id)
                left.append(current.account_id)
                values |= {
                    "account_id": account_id,
                    "is_admin": False,
                    "license": self._config.default_license,
                    "personal_pin": new_pin(),
                }
            if not registered_before:
                values |= {"registered_on": now}
            if values or current.registration_status != "registered":
                await q.update_user(conn, current.id, values | {"registration_status": "registered"})
            accepted = await q.user_by_id(conn, current.id)
            assert accepted is not None
            return accepted, events

        accepted: User = await self._store.writer.run(change)
        if left and registered_before:
            # The account they left sees it in its own audit log; the joining is in the new one's.
            await self._audit.record(
                Entry(
                    actor=accepted.email,
                    actor_id=accepted.id,
                    account_id=left[0],
                    source="api",
                    action="users.left_account",
                    outcome="ok",
                    target=accepted.email,
                    detail=f"joined the account {accepted.account_id} by accepting its invitation",
                )
            )
        return accepted

    async def _keep_an_admin(self, conn: AsyncConnection, user: User) -> None:
        """Refuse to move the only administrator out of an account that has other users."""
        await q.lock_account(conn, user.account_id)
        last_admin = user.is_admin and await q.count_users(conn, user.account_id, admins=True) == 1
        if last_admin and await q.count_users(conn, user.account_id) > 1:
            raise Conflict(
                "you are the only administrator of your current account; make someone else "
                "administrator there before you join another account"
            )

    async def _deliver(self, outgoing: list[_Outgoing]) -> None:
        """Mail the links, a few at a time; record each failure with its reason."""
        gate = asyncio.Semaphore(5)

        async def one(item: _Outgoing) -> None:
            async with gate:
                try:
                    await self._mailer.send(self._message(item))
                except DeliveryFailed as exc:
                    log.warning("invitation to %s not delivered: %s", item.email, exc.reason)
                    async with self._store.transaction() as conn:
                        await q.fail_invitation(
                            conn, item.invitation_id, secrets.token_hash(item.token), exc.reason
                        )

        await asyncio.gather(*(one(item) for item in outgoing))

    def _message(self, item: _Outgoing) -> EmailMessage:
        who = f"{item.inviter} invited you" if item.inviter else "You asked"
        link = f"{self._base_url}/invitations/{item.token}"
        hours = self._config.invitation_ttl_hours
        text = (
            f"{who} to join {item.account_name} on chimebot.\n\n"
            f"Accept here (the link works once, for {hours} hours):\n{link}\n\n"
            "If you did not expect this message, ignore it.\n"
        )
        return compose(self._sender, item.email, f"Join {item.account_name} on chimebot", text)
