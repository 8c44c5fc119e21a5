"""The users of an account as its administrators manage them: list, licenses, suspension, PINs, sign-out."""

from __future__ import annotations

import base64
import binascii
from typing import Any, get_args

from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.accounts import check_name
from chimebot.clock import Clock
from chimebot.errors import Conflict, Forbidden, Invalid, NotFound
from chimebot.ids import new_pin
from chimebot.models import InvitationStatus, License, Profile, RegistrationStatus, User
from chimebot.passwords import hash_password, verify_password
from chimebot.permissions import require_admin
from chimebot.store import Store
from chimebot.store import accounts as q

MAX_PAGE = 200
_FILTERS = {
    "registration_status": get_args(RegistrationStatus),
    "invitation_status": get_args(InvitationStatus),
    "license": get_args(License),
}


def _cursor_after(cursor: str | None) -> str | None:
    """The address a page cursor continues after."""
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        raise Invalid("`cursor` is not one this server gave out; start again without it") from None


def _cursor_of(email: str) -> str:
    return base64.urlsafe_b64encode(email.encode("utf-8")).decode("ascii").rstrip("=")


class Users:
    """What an account administrator does to the account's users (the caller is checked by the HTTP
    layer's admin decorator or is the command-line operator; targets are checked here)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def list(
        self, admin: User, filters: dict[str, str], *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Profile], str | None]:
        """A page of the account's users (and invited people), ordered by address."""
        require_admin(admin)
        for name, value in filters.items():
            if name not in _FILTERS:
                raise Invalid(f"users cannot be filtered by `{name}`; use one of {', '.join(_FILTERS)}")
            if value not in _FILTERS[name]:
                raise Invalid(f"`{name}` is one of {', '.join(_FILTERS[name])}")
        limit = min(max(limit, 1), MAX_PAGE)
        async with self._store.read() as conn:
            page = await q.profiles(
                conn, admin.account_id, filters=filters, after=_cursor_after(cursor), limit=limit + 1
            )
        more = len(page) > limit
        page = page[:limit]
        return page, _cursor_of(page[-1].user.email) if more else None

    async def profile_of(self, user: User) -> Profile:
        """A user's own profile."""
        async with self._store.read() as conn:
            return await self._profile(conn, user, user.id)

    async def update_own(
        self, user: User, changes: dict[str, Any], *, password_min_length: int, token_hash: str
    ) -> Profile:
        """Let a user change their own names, do-not-disturb, or password (giving the current one, if any).

        A new password signs the user out everywhere else: every token but the one used here
        (``token_hash``) is revoked, so whoever learned the old password or held another token is out.
        """
        values: dict[str, Any] = {}
        for key in ("full_name", "display_name"):
            if key in changes:
                values[key] = check_name(changes[key], f"`{key}`")
        if "do_not_disturb" in changes:
            values["do_not_disturb"] = bool(changes["do_not_disturb"])
        if "password" in changes:
            new = changes["password"]
            if not password_min_length <= len(new) <= 1024:
                raise Invalid(f"a password must be {password_min_length} to 1024 characters long")
            async with self._store.read() as conn:
                stored = await q.password_hash_of(conn, user.id)
            if stored is not None and not await verify_password(changes.get("current_password", ""), stored):
                raise Forbidden("`current_password` is wrong", code="wrong_password")
            values["password_hash"] = await hash_password(new)
        async with self._store.transaction() as conn:
            if values:
                await q.update_user(conn, user.id, values)
            if "password_hash" in values:
                await q.revoke_credentials(conn, user.id, keep=token_hash)
            return await self._profile(conn, user, user.id)

    async def get(self, admin: User, user_id: str) -> Profile:
        """One user of the account (or a person invited to it)."""
        require_admin(admin)
        async with self._store.read() as conn:
            found = await q.profile(conn, admin.account_id, user_id)
        if found is None:
            raise NotFound(f"your account has no user with id {user_id!r}")
        return found

    async def update(self, admin: User, user_id: str, changes: dict[str, Any]) -> Profile:
        """Change a user's license, administrator role or names."""
        require_admin(admin)
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "license":
                if value not in get_args(License):
                    raise Invalid("`license` must be `basic` or `pro`")
                values["license"] = value
            elif key == "is_admin":
                values["is_admin"] = value
            elif key in ("full_name", "display_name"):
                values[key] = check_name(value, f"`{key}`")
            else:
                raise Invalid(
                    f"`{key}` cannot be changed here; allowed: license, is_admin, full_name, display_name"
                )
        async with self._store.transaction() as conn:
            user = await self._member(conn, admin, user_id)
            if user.is_admin and values.get("is_admin") is False:
                await self._keep_an_admin(conn, user, "stop being an administrator")
            if values:
                await q.update_user(conn, user.id, values)
            return await self._profile(conn, admin, user_id)

    async def suspend(self, admin: User, user_id: str) -> Profile:
        """Suspend a user: they can no longer sign in, and their tokens stop working."""
        require_admin(admin)
        async with self._store.transaction() as conn:
            user = await self._member(conn, admin, user_id)
            if user.id == admin.id:
                raise Conflict("you cannot suspend yourself; ask another administrator")
            if user.is_admin:
                await self._keep_an_admin(conn, user, "be suspended")
            await q.update_user(conn, user.id, {"registration_status": "suspended"})
            return await self._profile(conn, admin, user_id)

    async def unsuspend(self, admin: User, user_id: str) -> Profile:
        """Lift a suspension; the user is registered again (or unregistered if they never were)."""
        require_admin(admin)
        async with self._store.transaction() as conn:
            user = await self._member(conn, admin, user_id)
            if user.registration_status == "suspended":
                profile = await self._profile(conn, admin, user_id)
                status = "registered" if profile.registered_on else "unregistered"
                await q.update_user(conn, user.id, {"registration_status": status})
            return await self._profile(conn, admin, user_id)

    async def reset_pin(self, admin: User, user_id: str) -> Profile:
        """Give a user a new personal PIN."""
        require_admin(admin)
        async with self._store.transaction() as conn:
            user = await self._member(conn, admin, user_id)
            await q.update_user(conn, user.id, {"personal_pin": new_pin()})
            return await self._profile(conn, admin, user_id)

    async def logout(self, admin: User, user_id: str) -> int:
        """Sign a user out everywhere (API tokens, sign-in links); return how many tokens were revoked."""
        require_admin(admin)
        async with self._store.transaction() as conn:
            user = await self._member(conn, admin, user_id)
            return await q.revoke_credentials(conn, user.id)

    async def _member(self, conn: AsyncConnection, admin: User, user_id: str) -> User:
        """A user of the admin's own account (people only invited from elsewhere cannot be changed)."""
        user = await q.user_by_id(conn, user_id)
        if user is None or user.account_id != admin.account_id:
            raise NotFound(f"your account has no user with id {user_id!r}")
        return user

    async def _keep_an_admin(self, conn: AsyncConnection, user: User, change: str) -> None:
        """Refuse a change that would leave the account with no active administrator."""
        if user.registration_status != "registered":
            return  # not one of the active administrators the account relies on
        await q.lock_account(conn, user.account_id)
        if await q.count_users(conn, user.account_id, admins=True) <= 1:
            raise Conflict(f"{user.email} is the account's last administrator and cannot {change}")

    async def _profile(self, conn: AsyncConnection, admin: User, user_id: str) -> Profile:
        found = await q.profile(conn, admin.account_id, user_id)
        assert found is not None
        return found
