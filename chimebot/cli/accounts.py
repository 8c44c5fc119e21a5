"""``chimebot admin …`` commands that administer an account: settings, domains, invitations, users,
licenses, the usage report and the audit log. Each acts as an administrator (``--as EMAIL``)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from chimebot.clock import parse_utc
from chimebot.errors import Forbidden
from chimebot.models import User
from chimebot.services import Services

Command = Callable[[Services, argparse.Namespace], Awaitable[Any]]
AddCommand = Callable[[str, str, Any], argparse.ArgumentParser]


def add_commands(admin: Any, command: AddCommand) -> None:
    """Add the account administration commands to ``chimebot admin``."""
    p = command("create-account", "create an account with a new administrator", admin)
    p.add_argument("name")
    p.add_argument("--admin", metavar="EMAIL", required=True, help="address of its first administrator")
    p.add_argument("--type", choices=("team", "enterprise"), default="team", help="default: team")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = _acting(command("account", "show the account, or change it with the options", admin))
    p.add_argument("--name", help="a new name")
    p.add_argument("--type", choices=("team", "enterprise"))
    p.add_argument("--time-zone", metavar="ZONE", help="IANA zone of the usage report, e.g. Europe/Berlin")
    p.add_argument("--remote-control", choices=("on", "off"))
    p.add_argument("--dial-out", choices=("on", "off"))
    p = _acting(command("claim-domain", "claim a domain for an enterprise account", admin))
    p.add_argument("domain")
    p = _acting(command("release-domain", "give up a claimed domain", admin))
    p.add_argument("domain")
    p = _acting(command("invite", "invite up to 50 addresses; each is mailed a one-time link", admin))
    p.add_argument("emails", nargs="+", metavar="EMAIL")
    p = _acting(command("uninvite", "withdraw an open invitation (its link stops working)", admin))
    p.add_argument("email")
    p = _acting(command("users", "list the account's users and invited people", admin))
    p.add_argument("--registration-status", choices=("unregistered", "registered", "suspended"))
    p.add_argument("--invitation-status", choices=("pending", "accepted", "failed"))
    p.add_argument("--license", choices=("basic", "pro"))
    p.add_argument("--limit", type=int, default=200, help="most users to show (default 200)")
    p = _acting(command("user", "show one user", admin))
    p.add_argument("email")
    p = _acting(command("license", "assign a license to a user", admin))
    p.add_argument("email")
    p.add_argument("license", choices=("basic", "pro"))
    for name, what in (
        ("suspend", "suspend a user (no sign-in, tokens refused)"),
        ("unsuspend", "lift a user's suspension"),
        ("reset-pin", "give a user a new personal PIN"),
        ("logout", "sign a user out everywhere (revoke tokens and sign-in links)"),
    ):
        _acting(command(name, what, admin)).add_argument("email")
    p = _acting(command("usage", "the usage and billing report of a month", admin))
    p.add_argument("--month", metavar="YYYY-MM", help="default: the current month in the account's zone")
    p.add_argument("--csv", action="store_true", help="print CSV instead")
    p = _acting(command("audit", "the audit log, newest first", admin))
    for name in ("actor", "action", "target", "outcome", "source"):
        p.add_argument(f"--{name}", dest=f"only_{name}", help=f"only entries with this {name}")
    p.add_argument("--since", metavar="TIME", help="ISO 8601 time, e.g. 2026-11-01T00:00:00Z")
    p.add_argument("--limit", type=int, default=100, help="most entries to show (default 100)")
    p.add_argument("--all-accounts", action="store_true", help="every account's entries, not only yours")


def _acting(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of an administrator's command: who acts, and JSON output."""
    parser.add_argument(
        "--as", dest="acting", metavar="EMAIL", help="the administrator acting (default: the first one)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


async def acting_admin(svc: Services, args: argparse.Namespace) -> User:
    """The administrator a command acts as: ``--as EMAIL`` or the first administrator."""
    acting = getattr(args, "acting", None)
    if not acting:
        return await svc.accounts.operator()
    user = await svc.accounts.user(acting)
    if not user.is_admin or user.registration_status == "suspended":
        raise Forbidden(f"{acting} is not an active administrator of its account")
    return user


async def _create_account(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    account, admin = await svc.accounts.create(args.name, args.type, args.admin)
    return {
        "account": account.to_json(),
        "admin": admin.email,
        "signin_link": await svc.signin.signin_link(admin),
    }


async def _account(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    admin = await acting_admin(svc, args)
    changes: dict[str, Any] = {}
    for option, key in (("name", "name"), ("type", "type"), ("time_zone", "time_zone")):
        if getattr(args, option) is not None:
            changes[key] = getattr(args, option)
    for option in ("remote_control", "dial_out"):
        if getattr(args, option) is not None:
            changes[option] = getattr(args, option) == "on"
    if changes:
        return (await svc.accounts.update(admin, changes)).to_json()
    return (await svc.accounts.get(admin.account_id)).to_json()


async def _claim_domain(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    admin = await acting_admin(svc, args)
    return (await svc.accounts.claim_domain(admin, args.domain, operator=True)).to_json()


async def _release_domain(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    await svc.accounts.release_domain(await acting_admin(svc, args), args.domain)
    return {"released": args.domain}


async def _invite(svc: Services, args: argparse.Namespace) -> list[dict[str, Any]]:
    profiles = await svc.invitations.invite(await acting_admin(svc, args), args.emails)
    return [p.to_json() for p in profiles]


async def _uninvite(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    await svc.invitations.cancel(await acting_admin(svc, args), await _user_id(svc, args.email))
    return {"withdrawn": args.email}


async def _users(svc: Services, args: argparse.Namespace) -> list[dict[str, Any]]:
    filters = {
        k: v
        for k in ("registration_status", "invitation_status", "license")
        if (v := getattr(args, k)) is not None
    }
    page, _ = await svc.users.list(await acting_admin(svc, args), filters, limit=args.limit)
    return [p.to_json() for p in page]


async def _user_id(svc: Services, email: str) -> str:
    return (await svc.accounts.user(email)).id


async def _user(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    return (await svc.users.get(await acting_admin(svc, args), await _user_id(svc, args.email))).to_json()


async def _license(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    admin, user_id = await acting_admin(svc, args), await _user_id(svc, args.email)
    return (await svc.users.update(admin, user_id, {"license": args.license})).to_json()


def _user_action(name: str) -> Command:
    """A command that applies one Users method (suspend, unsuspend, reset_pin, logout) to a user."""

    async def run(svc: Services, args: argparse.Namespace) -> Any:
        result = await getattr(svc.users, name)(
            await acting_admin(svc, args), await _user_id(svc, args.email)
        )
        return {"revoked_tokens": result} if isinstance(result, int) else result.to_json()

    return run


async def _usage(svc: Services, args: argparse.Namespace) -> Any:
    report = await svc.usage.report((await acting_admin(svc, args)).account_id, args.month)
    return report.to_csv() if args.csv else report.to_json()


async def _audit(svc: Services, args: argparse.Namespace) -> list[dict[str, Any]]:
    admin = await acting_admin(svc, args)
    names = ("actor", "action", "target", "outcome", "source")
    filters = {k: v for k in names if (v := getattr(args, f"only_{k}"))}
    since = parse_utc(args.since, "--since") if args.since else None
    entries, _ = await svc.audit.list(
        None if args.all_accounts else admin.account_id, filters, since=since, limit=args.limit
    )
    return entries


COMMANDS: dict[tuple[str, str | None], Command] = {
    ("admin", "create-account"): _create_account,
    ("admin", "account"): _account,
    ("admin", "claim-domain"): _claim_domain,
    ("admin", "release-domain"): _release_domain,
    ("admin", "invite"): _invite,
    ("admin", "uninvite"): _uninvite,
    ("admin", "users"): _users,
    ("admin", "user"): _user,
    ("admin", "license"): _license,
    ("admin", "suspend"): _user_action("suspend"),
    ("admin", "unsuspend"): _user_action("unsuspend"),
    ("admin", "reset-pin"): _user_action("reset_pin"),
    ("admin", "logout"): _user_action("logout"),
    ("admin", "usage"): _usage,
    ("admin", "audit"): _audit,
}
# Commands that change nothing, so they are not written to the audit log.
READ_ONLY = {_users, _user, _usage, _audit}
