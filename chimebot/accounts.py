"""Accounts: the first-start bootstrap, new accounts, their settings and their claimed domains."""

from __future__ import annotations

import re
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chimebot.clock import Clock
from chimebot.config import AccountsConfig, BootstrapConfig
from chimebot.errors import Conflict, Forbidden, Invalid, NotFound
from chimebot.ids import new_id
from chimebot.models import Account, AccountType, User
from chimebot.permissions import require_admin
from chimebot.store import Store
from chimebot.store import accounts as q

# A DNS name: labels of letters, digits and hyphens, at least two of them.
_DOMAIN = re.compile(r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# An address: a local part, then a host name (one label is allowed: admin@localhost is the default).
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
# The local part is a dot-atom (RFC 5322): no quoting, commas, angle brackets or comments, so the
# address stored is the address a mail server delivers to.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL = re.compile(rf"(?=[^@]{{1,64}}@){_ATOM}(\.{_ATOM})*@({_LABEL}\.)*{_LABEL}")


def normalise_email(raw: str) -> str:
    """Lower-case and check an address; raise Invalid naming it when it cannot be one."""
    email = raw.strip().lower()
    if len(email) > 320 or not _EMAIL.fullmatch(email):
        raise Invalid(f"{raw[:100]!r} is not an email address like name@example.com")
    return email


def check_name(value: str, what: str, max_len: int = 200) -> str:
    """Strip a name and check it is 1 to ``max_len`` characters."""
    value = value.strip()
    if not 1 <= len(value) <= max_len:
        raise Invalid(f"{what} must be 1 to {max_len} characters")
    return value


class Accounts:
    """Accounts and the users who run them."""

    def __init__(
        self, store: Store, clock: Clock, bootstrap: BootstrapConfig, defaults: AccountsConfig
    ) -> None:
        self._store = store
        self._clock = clock
        self._bootstrap = bootstrap
        self._defaults = defaults

    async def bootstrap(self) -> User | None:
        """On an empty database create the account and its admin and return the admin, else None."""
        async with self._store.transaction() as conn:
            if await q.count_accounts(conn):
                return None
        _, admin = await self.create(self._bootstrap.account_name, "team", self._bootstrap.admin_email)
        return admin

    async def create(self, name: str, kind: str, admin_email: str) -> tuple[Account, User]:
        """Create an account with a new administrator (Pro, registered; they sign in with a link)."""
        name = check_name(name, "an account name", 100)
        if kind not in get_args(AccountType):
            raise Invalid("an account type is `team` or `enterprise`")
        email = normalise_email(admin_email)
        now = self._clock.now()
        account_id = new_id()
        async with self._store.transaction() as conn:
            if await q.user_by_email(conn, email):
                raise Conflict(f"{email} already has a user; invite it to the account instead")
            await q.insert_account(
                conn, account_id, name, now, kind=kind, time_zone=self._defaults.default_time_zone
            )
            admin = User(new_id(), account_id, email, email, True, "pro", "registered")
            await q.insert_user(conn, admin, now)
            account = await q.account_by_id(conn, account_id)
        assert account is not None
        return account, admin

    async def operator(self) -> User:
        """The account administrator that command-line actions are made as."""
        async with self._store.read() as conn:
            admin = await q.first_admin(conn)
        if admin is None:
            raise NotFound(
                "the first account has no active administrator; name one with `--as EMAIL`, or run "
                "`chimebot serve` or `chimebot migrate` once on a new database"
            )
        return admin

    async def user(self, email: str) -> User:
        """Find a user by address."""
        async with self._store.read() as conn:
            user = await q.user_by_email(conn, email)
        if user is None:
            raise NotFound(f"no user has the address {email!r}")
        return user

    async def get(self, account_id: str) -> Account:
        """An account by id."""
        async with self._store.read() as conn:
            account = await q.account_by_id(conn, account_id)
        if account is None:
            raise NotFound(f"there is no account {account_id!r}")
        return account

    async def of_user(self, user: User, account_id: str) -> Account:
        """The user's own account (any of its users may read it; other accounts are refused)."""
        if account_id != user.account_id:
            raise Forbidden("you can only read your own account; its id is in GET /api/v1/me")
        return await self.get(account_id)

    async def update(self, admin: User, changes: dict[str, Any]) -> Account:
        """Change the administrator's account: name, type, time zone, remote_control, dial_out."""
        require_admin(admin)
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "name":
                values["name"] = check_name(value, "an account name", 100)
            elif key == "type":
                if value not in get_args(AccountType):
                    raise Invalid("`type` must be `team` or `enterprise`")
                values["type"] = value
            elif key == "time_zone":
                values["time_zone"] = _zone(value)
            elif key in ("remote_control", "dial_out"):
                values[key] = value
            else:
                raise Invalid(f"`{key}` is not an account setting")
        async with self._store.transaction() as conn:
            await q.lock_account(conn, admin.account_id)  # against a concurrent domain claim
            current = await q.account_by_id(conn, admin.account_id)
            if current is None:
                raise NotFound("your account no longer exists")
            if values.get("type") == "team" and current.domains:
                raise Conflict("release the claimed domains before making this a team account")
            if values:
                await q.update_account(conn, admin.account_id, values)
            account = await q.account_by_id(conn, admin.account_id)
        assert account is not None
        return account

    async def claim_domain(self, admin: User, domain: str, *, operator: bool = False) -> Account:
        """Claim a domain for an enterprise account: people signing up with it join the account.

        An administrator claims the domain of their own address, which an emailed link has shown to be
        theirs; any other domain only the server's operator claims for them (``operator``, the CLI).
        """
        require_admin(admin)
        domain = domain.strip().lower().rstrip(".")
        if not _DOMAIN.fullmatch(domain):
            raise Invalid(f"{domain[:100]!r} is not a domain name like example.com")
        if not operator and admin.email.rpartition("@")[2] != domain:
            raise Forbidden(
                f"you can claim only the domain of your own address; the server's operator can claim "
                f"{domain} for this account with `chimebot admin claim-domain {domain} --as {admin.email}`",
                code="domain_not_yours",
            )
        async with self._store.transaction() as conn:
            await q.lock_account(conn, admin.account_id)  # against a concurrent change of type
            account = await q.account_by_id(conn, admin.account_id)
            if account is None:
                raise NotFound("your account no longer exists")
            if account.type != "enterprise":
                raise Conflict("only enterprise accounts claim domains; change the account type first")
            owner = await q.domain_owner(conn, domain)
            if owner == account.id:
                return account
            if owner is not None:
                raise Conflict(f"{domain} is claimed by another account")
            await q.claim_domain(conn, domain, account.id, self._clock.now())
            claimed = await q.account_by_id(conn, account.id)
        assert claimed is not None
        return claimed

    async def release_domain(self, admin: User, domain: str) -> None:
        """Give up a claimed domain."""
        require_admin(admin)
        async with self._store.transaction() as conn:
            if not await q.release_domain(conn, domain.strip().lower().rstrip("."), admin.account_id):
                raise NotFound(f"your account has not claimed {domain[:100]!r}")


def _zone(value: str) -> str:
    """Check an IANA time zone name."""
    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise Invalid(f"{value[:64]!r} is not a time zone; use an IANA name like Europe/Berlin") from None
    return value
