"""Account administration under ``/api/v1``: the account, its domains, invitations and users.

Every handler here is ``@admin_only``: the caller must be an administrator of their account (and of
the ``{account_id}`` in the path); the services check that target users belong to that account.
"""

from __future__ import annotations

from aiohttp import web

from chimebot.errors import Invalid
from chimebot.http import SERVICES
from chimebot.http.audit import AUDIT_TARGET, audited
from chimebot.http.parsing import admin_only, current_user, field, json_object, path_id, query_int
from chimebot.models import User

routes = web.RouteTableDef()

_ACCOUNT_FIELDS = {
    "name": (str, "a string"),
    "type": (str, "team or enterprise"),
    "time_zone": (str, "a string"),
}


@routes.get("/api/v1/accounts/{account_id}")
async def get_account(request: web.Request) -> web.Response:
    """The caller's account (any of its users may read it)."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    return web.json_response((await svc.accounts.of_user(user, path_id(request, "account_id"))).to_json())


@routes.patch("/api/v1/accounts/{account_id}")
@audited("accounts.update")
@admin_only
async def update_account(request: web.Request, admin: User) -> web.Response:
    """Change the account's name, type, time zone or settings (remote_control, dial_out)."""
    body = await json_object(request)
    changes = {
        key: field(body, key, kind, label=label)
        for key, (kind, label) in _ACCOUNT_FIELDS.items()
        if key in body
    }
    settings = field(body, "settings", dict, default={}, label="an object")
    for key in ("remote_control", "dial_out"):
        if key in settings:
            changes[key] = field(settings, key, bool, label="true or false")
    unknown = set(body) - set(_ACCOUNT_FIELDS) - {"settings"} | set(settings) - {"remote_control", "dial_out"}
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    account = await request.app[SERVICES].accounts.update(admin, changes)
    return web.json_response(account.to_json())


@routes.post("/api/v1/accounts/{account_id}/domains")
@audited("accounts.domains.claim")
@admin_only
async def claim_domain(request: web.Request, admin: User) -> web.Response:
    """Claim a domain (enterprise accounts): people signing up with it join this account."""
    domain = field(await json_object(request), "domain", str, label="a domain name like example.com")
    account = await request.app[SERVICES].accounts.claim_domain(admin, domain)
    return web.json_response(account.to_json(), status=201)


@routes.delete("/api/v1/accounts/{account_id}/domains/{domain}")
@audited("accounts.domains.release")
@admin_only
async def release_domain(request: web.Request, admin: User) -> web.Response:
    """Give up a claimed domain."""
    await request.app[SERVICES].accounts.release_domain(admin, request.match_info["domain"])
    return web.Response(status=204)


@routes.post("/api/v1/accounts/{account_id}/invitations")
@audited("invitations.create")
@admin_only
async def invite(request: web.Request, admin: User) -> web.Response:
    """Invite up to 50 addresses; each gets a one-time link by email."""
    emails = field(await json_object(request), "emails", list, label="a list of email addresses")
    if not all(isinstance(e, str) for e in emails):
        raise Invalid("`emails` must be a list of email addresses (strings)")
    request[AUDIT_TARGET] = " ".join(emails)[:200]
    profiles = await request.app[SERVICES].invitations.invite(admin, emails)
    return web.json_response({"users": [p.to_json() for p in profiles]}, status=201)


@routes.delete("/api/v1/accounts/{account_id}/invitations/{user_id}")
@audited("invitations.cancel")
@admin_only
async def cancel_invitation(request: web.Request, admin: User) -> web.Response:
    """Withdraw an open invitation (the link stops working)."""
    await request.app[SERVICES].invitations.cancel(admin, path_id(request, "user_id"))
    return web.Response(status=204)


@routes.get("/api/v1/accounts/{account_id}/users")
@admin_only
async def list_users(request: web.Request, admin: User) -> web.Response:
    """The account's users and invited people, by address; filter by status or license."""
    filters = {k: v for k, v in request.query.items() if k not in ("limit", "cursor")}
    limit = query_int(request, "limit", 50, minimum=1)
    assert limit is not None
    page, cursor = await request.app[SERVICES].users.list(
        admin, filters, limit=limit, cursor=request.query.get("cursor") or None
    )
    return web.json_response({"users": [p.to_json() for p in page], "next_cursor": cursor})


@routes.get("/api/v1/users/{user_id}")
@admin_only
async def get_user(request: web.Request, admin: User) -> web.Response:
    """One user of the account."""
    profile = await request.app[SERVICES].users.get(admin, path_id(request, "user_id"))
    return web.json_response(profile.to_json())


@routes.patch("/api/v1/users/{user_id}")
@audited("users.update")
@admin_only
async def update_user(request: web.Request, admin: User) -> web.Response:
    """Change a user's license (basic | pro), administrator role or names."""
    body = await json_object(request)
    kinds = {"license": (str, "basic or pro"), "is_admin": (bool, "true or false")}
    kinds |= {"full_name": (str, "a string"), "display_name": (str, "a string")}
    unknown = set(body) - set(kinds)
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}; allowed: {', '.join(kinds)}")
    changes = {
        key: field(body, key, kind, label=label) for key, (kind, label) in kinds.items() if key in body
    }
    profile = await request.app[SERVICES].users.update(admin, path_id(request, "user_id"), changes)
    return web.json_response(profile.to_json())


@routes.post("/api/v1/users/{user_id}/suspend")
@audited("users.suspend")
@admin_only
async def suspend(request: web.Request, admin: User) -> web.Response:
    """Suspend a user: no sign-in, tokens refused."""
    profile = await request.app[SERVICES].users.suspend(admin, path_id(request, "user_id"))
    return web.json_response(profile.to_json())


@routes.post("/api/v1/users/{user_id}/unsuspend")
@audited("users.unsuspend")
@admin_only
async def unsuspend(request: web.Request, admin: User) -> web.Response:
    """Lift a suspension."""
    profile = await request.app[SERVICES].users.unsuspend(admin, path_id(request, "user_id"))
    return web.json_response(profile.to_json())


@routes.post("/api/v1/users/{user_id}/reset-pin")
@audited("users.reset_pin")
@admin_only
async def reset_pin(request: web.Request, admin: User) -> web.Response:
    """Give a user a new personal PIN."""
    profile = await request.app[SERVICES].users.reset_pin(admin, path_id(request, "user_id"))
    return web.json_response(profile.to_json())


@routes.post("/api/v1/users/{user_id}/logout")
@audited("users.logout")
@admin_only
async def logout(request: web.Request, admin: User) -> web.Response:
    """Sign a user out everywhere: their API tokens and sign-in links are revoked."""
    revoked = await request.app[SERVICES].users.logout(admin, path_id(request, "user_id"))
    return web.json_response({"revoked_tokens": revoked})
