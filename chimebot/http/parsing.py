"""Reading requests: bearer tokens, JSON bodies and query parameters, with errors people can act on."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from chimebot.errors import Invalid
from chimebot.models import User
from chimebot.services import Services


def bearer_token(request: web.Request, *, allow_query: bool = False) -> str | None:
    """Return the token of ``Authorization: Bearer …`` (or ``?token=`` where allowed)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query.get("token") if allow_query else None


async def current_user(request: web.Request, services: Services, *, allow_query: bool = False) -> User:
    """Authenticate the caller by their personal API token."""
    return await services.accounts.authenticate(bearer_token(request, allow_query=allow_query))


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
    if not raw.isascii() or not raw.isdigit() or int(raw) < minimum or len(raw) > 18:
        raise Invalid(f"`{name}` must be a whole number of at least {minimum}")
    return int(raw)


def field(data: dict[str, Any], name: str, kind: type, *, default: Any = ..., label: str = "") -> Any:
    """Return a body field of the given type, or raise an error naming it."""
    if name not in data:
        if default is ...:
            raise Invalid(f"the body needs `{name}`")
        return default
    value = data[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise Invalid(f"`{name}` must be {label or kind.__name__}")
    return value
