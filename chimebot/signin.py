"""Signing in: one-time links, passwords (throttled), personal API tokens, and who a token belongs to."""

from __future__ import annotations

from datetime import timedelta

from chimebot import secrets
from chimebot.clock import Clock
from chimebot.errors import Forbidden, Invalid, NotFound, RateLimited, Unauthorized
from chimebot.ids import new_id
from chimebot.models import User, iso
from chimebot.passwords import verify_password
from chimebot.ratelimit import RateLimiter
from chimebot.store import Store
from chimebot.store import accounts as q

SUSPENDED = "this user is suspended; an administrator of the account can unsuspend it"
BAD_CREDENTIALS = "the address or the password is wrong, or the user has not accepted its invitation yet"


class SignIn:
    """How people prove who they are, and the personal API tokens that they get for it."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        base_url: str,
        link_ttl_minutes: int,
        *,
        per_address: RateLimiter,
        per_account: RateLimiter,
    ) -> None:
        self._store = store
        self._clock = clock
        self._base_url = base_url
        self._link_ttl = timedelta(minutes=link_ttl_minutes)
        self._per_address = per_address
        self._per_account = per_account

    async def signin_link(self, user: User) -> str:
        """Create a one-time sign-in link for a user, valid for the configured time."""
        token = secrets.new_token()
        async with self._store.transaction() as conn:
            await q.insert_signin_link(
                conn, secrets.token_hash(token), user.id, self._clock.now() + self._link_ttl
            )
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
        if user.registration_status == "suspended":
            raise Forbidden(SUSPENDED, code="suspended")
        return user, await self.create_token(user, "sign-in link")

    async def sign_in(self, email: str, password: str) -> tuple[User, str]:
        """Check an address and password; return the user and a new API token.

        Failed attempts are limited per address and per account (token buckets refilled over the
        configured window), so neither one person's password nor a whole account can be guessed at
        speed. A token is taken before the check, so parallel guesses count too, and given back when
        the password was right: people signing in do not use up the limit.
        """
        email = email.strip().lower()
        buckets = [(self._per_address, f"signin:address:{email}")]
        await self._throttle(*buckets[0])
        async with self._store.read() as conn:
            user = await q.user_by_email(conn, email)
            stored = await q.password_hash_of(conn, user.id) if user else None
        if user is not None:
            buckets.append((self._per_account, f"signin:account:{user.account_id}"))
            try:
                await self._throttle(*buckets[1])
            except RateLimited:
                await self._per_address.give_back(buckets[0][1])  # this attempt was not made
                raise
        # Checked even without a user, so the answer takes as long whether the address exists or not.
        if not await verify_password(password, stored) or user is None:
            raise Unauthorized(BAD_CREDENTIALS, code="wrong_password")
        for limiter, key in buckets:
            await limiter.give_back(key)
        if user.registration_status == "suspended":
            raise Forbidden(SUSPENDED, code="suspended")
        return user, await self.create_token(user, "password sign-in")

    async def _throttle(self, limiter: RateLimiter, key: str) -> None:
        wait = await limiter.take(key)
        if wait > 0:
            raise RateLimited(
                f"too many sign-in attempts; try again in {max(1, round(wait))} seconds", retry_after=wait
            )

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
        """Return the user a bearer token belongs to; suspended users are refused."""
        user = await self.identify(token)
        require_active(user)
        return user

    async def identify(self, token: str | None) -> User:
        """Return the user a bearer token belongs to, whatever their status."""
        if not token:
            raise Unauthorized("send a personal API token as `Authorization: Bearer <token>`")
        async with self._store.read() as conn:
            user = await q.user_by_token_hash(conn, secrets.token_hash(token))
        if user is None:
            raise Unauthorized("this API token is unknown or was revoked")
        return user


def require_active(user: User) -> None:
    """Refuse a suspended user."""
    if user.registration_status == "suspended":
        raise Forbidden(SUSPENDED, code="suspended")
