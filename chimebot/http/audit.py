"""The audit log over HTTP: a middleware that records every change tried through the API (allowed or
refused), and ``GET /api/v1/audit`` for administrators."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from chimebot.audit import Entry
from chimebot.errors import DomainError
from chimebot.http import SERVICES
from chimebot.http.parsing import CALLER, admin_only, query_int, timestamp
from chimebot.models import User

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

F = TypeVar("F", bound=Callable[..., Any])
_ACTION = "audit_action"
_CHANGES = {"POST", "PUT", "PATCH", "DELETE"}
_VERBS = {"POST": "create", "PUT": "set", "PATCH": "update", "DELETE": "delete"}
_AUDITED_PREFIXES = ("/api/v1/", "/signin/", "/invitations/")
# Path parameters that are credentials: never written to the log.
_SECRET_PARAMS = {"token"}
_UNSET = object()
# A handler may name what it acts on when the path does not (an address, a list of addresses).
AUDIT_TARGET = web.RequestKey("audit_target", str)
# The address an anonymous request was about (a sign-in attempt): its entry goes to that user's account,
# so the account's administrators see attempts on their users.
AUDIT_SUBJECT = web.RequestKey("audit_subject", str)


def audited(action: str | None) -> Callable[[F], F]:
    """Name the action a handler performs in the audit log; None leaves the handler out of the log."""

    def mark(handler: F) -> F:
        setattr(handler, _ACTION, action)
        return handler

    return mark


def _action(request: web.Request) -> str | None:
    """The handler's declared action, else one derived from its route: ``users.suspend``, ``rooms.create``."""
    declared = getattr(request.match_info.handler, _ACTION, _UNSET)
    if declared is not _UNSET:
        return declared  # type: ignore[return-value]
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    parts = [p for p in path.removeprefix("/api/v1").split("/") if p]
    nouns = [p for p in parts if not p.startswith("{")]
    if request.method == "POST" and len(parts) >= 2 and parts[-2].startswith("{") and nouns:
        return ".".join(nouns)  # POST /users/{id}/suspend -> users.suspend
    return ".".join([*nouns, _VERBS.get(request.method, request.method.lower())])


def _target(request: web.Request, response: web.StreamResponse | None) -> str | None:
    """What was acted on: the path's ids, or the id of what a 201 created."""
    ids = [f"{k}={v}" for k, v in request.match_info.items() if k not in _SECRET_PARAMS]
    if AUDIT_TARGET in request:
        ids.append(request[AUDIT_TARGET])
    if response is not None and response.status == 201 and isinstance(response, web.Response):
        created = _json_field(response, "id")
        if isinstance(created, str):
            ids.append(f"id={created}")
    return " ".join(ids) or None


def _json_field(response: web.Response, name: str) -> Any:
    if response.content_type != "application/json" or not isinstance(response.body, bytes):
        return None
    try:
        data = json.loads(response.body)
    except ValueError:
        return None
    return data.get(name) if isinstance(data, dict) else None


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record each change request with its outcome, after the error middleware has given it a status."""
    if request.method not in _CHANGES or not request.path.startswith(_AUDITED_PREFIXES):
        return await handler(request)
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        return response
    finally:
        action = _action(request)
        if action is not None:
            try:
                await _record(request, action, response)
            except Exception:  # the answer stands; a missing entry is logged, never turned into a 500
                log.exception("could not record %s %s in the audit log", request.method, request.path)


async def _record(request: web.Request, action: str, response: web.StreamResponse | None) -> None:
    status = response.status if response is not None else 500
    outcome = "ok" if status < 400 else "refused" if status < 500 else "failed"
    detail = None
    if isinstance(response, web.Response) and status >= 400:
        message = _json_field(response, "message")
        code = _json_field(response, "error")
        detail = f"{code}: {message}" if code else None
    caller: User | None = request.get(CALLER)
    svc = request.app[SERVICES]
    account_id = caller.account_id if caller else None
    if caller is None and AUDIT_SUBJECT in request:
        with contextlib.suppress(DomainError):
            account_id = (await svc.accounts.user(request[AUDIT_SUBJECT])).account_id
    entry = Entry.by(
        caller,
        source="api",
        action=action,
        outcome=outcome,
        target=_target(request, response),
        address=request.remote,
        status=status,
        detail=detail,
    )
    await svc.audit.record(replace(entry, account_id=account_id))


@routes.get("/api/v1/audit")
@admin_only
async def list_audit(request: web.Request, admin: User) -> web.Response:
    """The account's audit log, newest first, filtered by actor, action, target, outcome, source, time."""
    query = request.query
    filters = {k: v for k, v in query.items() if k not in ("since", "until", "cursor", "limit")}
    limit = query_int(request, "limit", 100, minimum=1)
    assert limit is not None
    entries, cursor = await request.app[SERVICES].audit.list(
        admin.account_id,
        filters,
        since=timestamp(query.get("since"), "since"),
        until=timestamp(query.get("until"), "until"),
        cursor=query.get("cursor") or None,
        limit=limit,
    )
    return web.json_response({"entries": entries, "next_cursor": cursor})
