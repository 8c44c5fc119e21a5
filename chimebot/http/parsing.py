"""Reading requests: bearer tokens, JSON bodies and query parameters, with errors people can act on."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from chimebot.clock import parse_utc
from chimebot.errors import Forbidden, Invalid, NotFound
from chimebot.http import SERVICES
from chimebot.models import User
from chimebot.permissions import require_admin
from chimebot.services import Services
from chimebot.signin import require_active

# Where the authenticated caller is kept on the request, for the audit log.
CALLER = web.RequestKey("caller", User)

AdminHandler = Callable[[web.Request, User], Awaitable[web.StreamResponse]]

_ID = re.compile(r"[A-Za-z0-9_:-]{1,128}")  # ":" for bots among members: "bot:<name>"


def path_id(request: web.Request, name: str) -> str:
    """Return an id from the path; anything that cannot be an id cannot name anything (404)."""
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        raise NotFound(f"there is nothing with the {name.replace('_', ' ')} {value[:80]!r}")
    return value


def bearer_token(request: web.Request, *, allow_query: bool = False) -> str | None:
    """Return the token of ``Authorization: Bearer …`` (or ``?token=`` where allowed)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query.get("token") if allow_query else None


async def current_user(request: web.Request, services: Services, *, allow_query: bool = False) -> User:
    """Authenticate the caller by their personal API token."""
    user = await services.signin.identify(bearer_token(request, allow_query=allow_query))
    request[CALLER] = user  # known before the status check, so a suspended user's attempts name them
    require_active(user)
    return user


async def admin_of_account(request: web.Request) -> User:
    """Authenticate the caller and require an administrator of their account, and of the path's
    ``{account_id}`` when there is one (a user of another account is refused, not told about it)."""
    user = await current_user(request, request.app[SERVICES])
    require_admin(user)
    account_id = request.match_info.get("account_id")
    if account_id is not None and account_id != user.account_id:
        raise Forbidden("you are not an administrator of this account", code="admin_required")
    return user


def admin_only(handler: AdminHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Decorate a handler that only account administrators may call; it receives the caller."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        return await handler(request, await admin_of_account(request))

    return checked


async def json_object(request: web.Request) -> dict[str, Any]:
    """Read a JSON object body."""
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        raise Invalid("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    return data


def query_int(request: web.Request, name: str, default: int | None, *, minimum: int = 0) -> int | None:
    """Read an optional integer query parameter."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    # The length is checked first: int() of a very long string is slow, and refused past 4300 digits.
    if len(raw) > 18 or not raw.isascii() or not raw.isdigit() or int(raw) < minimum:
        raise Invalid(f"`{name}` must be a whole number of at least {minimum}")
    return int(raw)


def query_bool(request: web.Request, name: str, default: bool) -> bool:
    """Read an optional ``true``/``false`` query parameter."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw not in ("true", "false"):
        raise Invalid(f"`{name}` must be true or false, got {raw[:20]!r}")
    return raw == "true"


def field(data: dict[str, Any], name: str, kind: type, *, default: Any = ..., label: str = "") -> Any:
    """Return a body field of the given type, or raise an error naming it."""
    if name not in data:
        if default is ...:
            raise Invalid(f"the body needs `{name}`")
        return default
    value = data[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise Invalid(f"`{name}` must be {label or kind.__name__}")
    if isinstance(value, str):
        check_text(value, name)
    return value


def check_text(value: str, name: str) -> None:
    """Refuse text a database cannot store: lone surrogates (``"\\ud800"`` is valid JSON) and NUL."""
    if "\x00" in value:
        raise Invalid(f"`{name}` contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(
            f"`{name}` contains an unpaired surrogate (\\ud800-\\udfff); send valid UTF-16 pairs"
        ) from None


def timestamp(value: str | None, name: str) -> datetime | None:
    """Parse an optional ISO 8601 time with a zone (``2026-03-01T09:00:00Z``) into UTC."""
    return None if value is None else parse_utc(value, name)
