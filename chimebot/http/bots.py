"""Bots under ``/api/v1/bots`` (status, deliveries, replay) and the URLs bots reply through.

Bots are declared for the whole server, so every signed-in user can list them (to add one to a
room by its address); administrators also see endpoints, verification problems and deliveries,
of their own account's rooms unless they administer the operator's account.
"""

from __future__ import annotations

import json

from aiohttp import web

from chimebot.errors import Invalid, TooLarge
from chimebot.http import SERVICES
from chimebot.http.audit import audited
from chimebot.http.parsing import admin_only, current_user, json_object, path_id, query_int
from chimebot.models import User
from webhooks import chime

routes = web.RouteTableDef()
MAX_REPLAY = 1000


@routes.get("/api/v1/bots")
async def list_bots(request: web.Request) -> web.Response:
    """Every bot with its address and status."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    operator = await svc.accounts.operator()
    return web.json_response({"bots": await svc.bots.list(user, operator_account=operator.account_id)})


@routes.get("/api/v1/bots/{name}")
async def get_bot(request: web.Request) -> web.Response:
    """One bot, with the rooms of your account it is in."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    operator = await svc.accounts.operator()
    found = await svc.bots.get(user, path_id(request, "name"), operator_account=operator.account_id)
    return web.json_response(found)


@routes.get("/api/v1/bots/{name}/deliveries")
@admin_only
async def list_deliveries(request: web.Request, admin: User) -> web.Response:
    """A bot's deliveries, newest first: ?status=pending|sending|delivered|failed, ?limit, ?before=<id>."""
    svc = request.app[SERVICES]
    operator = await svc.accounts.operator()
    page, next_before = await svc.bots.deliveries(
        admin,
        path_id(request, "name"),
        operator_account=operator.account_id,
        status=request.query.get("status"),
        limit=query_int(request, "limit", 50, minimum=1) or 50,
        before=query_int(request, "before", None, minimum=1),
    )
    return web.json_response({"deliveries": page, "next_before": next_before})


@routes.post("/api/v1/bots/{name}/deliveries/replay")
@audited("bots.deliveries.replay")
@admin_only
async def replay_deliveries(request: web.Request, admin: User) -> web.Response:
    """Send failed deliveries again: ``{"ids": [...]}``, or ``{}`` for every failed one."""
    svc = request.app[SERVICES]
    body = await json_object(request) if request.can_read_body else {}
    ids = body.get("ids")
    if ids is not None and (
        not isinstance(ids, list)
        or len(ids) > MAX_REPLAY
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63 for i in ids)
    ):
        raise Invalid(
            f"`ids` must be a list of at most {MAX_REPLAY} delivery ids (positive integers), "
            "or left out to replay every failed one"
        )
    operator = await svc.accounts.operator()
    queued = await svc.bots.replay(admin, path_id(request, "name"), ids, operator_account=operator.account_id)
    return web.json_response({"replayed": queued})


@routes.post("/bots/inbound/{name}/{room_id}")
async def bot_reply(request: web.Request) -> web.Response:
    """A bot's answer, in Chime's webhook dialect: ``{"Content": "…"}`` to the URL its event carried."""
    svc = request.app[SERVICES]
    limit = svc.config.webhooks.max_body_bytes
    if (request.content_length or 0) > limit:
        raise TooLarge(f"the body is over {limit} bytes")
    body = await request.read()
    if len(body) > limit:
        raise TooLarge(f"the body is over {limit} bytes")
    token = request.query.get("token")
    if not token:
        raise Invalid(
            "this reply URL has no token; post to the exact URL the event carried", code="missing_token"
        )
    reply = await svc.bots.reply(
        path_id(request, "name"), path_id(request, "room_id"), token, request.query.get("expires"), body
    )
    answer = chime.success_body(reply.message_id, reply.room_id)
    return web.Response(body=json.dumps(answer).encode(), content_type="application/json")
