"""Accounts and sign-in: the first-start bootstrap, one-time sign-in links and personal API tokens."""

from __future__ import annotations

from datetime import timedelta

from chimebot import secrets
from chimebot.clock import Clock
from chimebot.config import BootstrapConfig
from chimebot.errors import Invalid, NotFound, Unauthorized
from chimebot.ids import new_id
from chimebot.models import User, iso
from chimebot.store import Store
from chimebot.store import accounts as q


class Accounts:
    """Who is who: users, their tokens, and how they sign in."""

    def __init__(self, store: Store, clock: Clock, bootstrap: BootstrapConfig, base_url: str) -> None:
        self._store = store
        self._clock = clock
        self._bootstrap = bootstrap
        self._base_url = base_url

    async def bootstrap(self) -> str | None:
        """On an empty database create the account and its admin; return a sign-in link, else None."""
        now = self._clock.now()
        async with self._store.transaction() as conn:
            if await q.count_accounts(conn):
                return None
            account_id = new_id()
            await q.insert_account(conn, account_id, self._bootstrap.account_name, now)
            email = self._bootstrap.admin_email.lower()
            admin = User(new_id(), account_id, email, email, True)
            await q.insert_user(conn, admin, now)
        return await self.signin_link(admin.email)

    async def operator(self) -> User:
        """The account administrator that command-line actions are made as."""
        async with self._store.read() as conn:
            admin = await q.first_admin(conn)
        if admin is None:
            raise NotFound("no administrator exists yet; run `chimebot serve` or `chimebot migrate` once")
        return admin

    async def user(self, email: str) -> User:
        """Find a user by address."""
        async with self._store.read() as conn:
            user = await q.user_by_email(conn, email)
        if user is None:
            raise NotFound(f"no user has the address {email!r}")
        return user

    async def signin_link(self, email: str) -> str:
        """Create a one-time sign-in link for a user, valid for the configured time."""
        user = await self.user(email)
        token = secrets.new_token()
        expires = self._clock.now() + timedelta(minutes=self._bootstrap.signin_link_ttl_minutes)
        async with self._store.transaction() as conn:
            await q.insert_signin_link(conn, secrets.token_hash(token), user.id, expires)
        return f"{self._base_url}/signin/{token}"

    async def signin_link_usable(self, token: str) -> bool:
        """Tell whether a sign-in link can still be used, without using it."""
        async with self._store.read() as conn:
            return await q.signin_link_usable(conn, secrets.token_hash(token), self._clock.now())

    async def redeem_signin_link(self, token: str) -> tuple[User, str]:
        """Use a sign-in link once: return its user and a new personal API token."""
        async with self._store.transaction() as conn:
            user_id = await q.consume_signin_link(conn, secrets.token_hash(token), self._clock.now())
            user = await q.user_by_id(conn, user_id) if user_id else None
        if user is None:
            raise NotFound("this sign-in link is unknown, already used or expired; ask for a new one")
        return user, await self.create_token(user, "sign-in link")

    async def create_token(self, user: User, name: str) -> str:
        """Create a personal API token for a user; the token itself is returned once, never stored."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise Invalid("a token name must be 1 to 100 characters")
        token = secrets.new_token()
        async with self._store.transaction() as conn:
            await q.insert_token(conn, new_id(), user.id, name, secrets.token_hash(token), self._clock.now())
        return token

    async def tokens(self, user: User) -> list[dict[str, str]]:
        """List a user's tokens (never their values)."""
        async with self._store.read() as conn:
            rows = await q.tokens_of(conn, user.id)
        return [{"id": r["id"], "name": r["name"], "created_at": iso(r["created_at"])} for r in rows]

    async def revoke_token(self, user: User, token_id: str) -> None:
        """Delete one of a user's tokens."""
        async with self._store.transaction() as conn:
            if not await q.delete_token(conn, user.id, token_id):
                raise NotFound(f"you have no token with id {token_id!r}")

    async def authenticate(self, token: str | None) -> User:
        """Return the user a bearer token belongs to."""
        if not token:
            raise Unauthorized("send a personal API token as `Authorization: Bearer <token>`")
        async with self._store.read() as conn:
            user = await q.user_by_token_hash(conn, secrets.token_hash(token))
        if user is None:
            raise Unauthorized("this API token is unknown or was revoked")
        return user
