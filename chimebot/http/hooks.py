"""Incoming webhook endpoints, each answering in its sender's dialect.

``/incomingwebhooks/{id}`` answers as Amazon Chime did (errors in the API's JSON shape);
``/hooks/{token}`` answers Slack and Mattermost with ``ok`` or an error name in text/plain, Teams
with ``1``, Chime bodies with Chime's JSON, template bodies with JSON; ``/api/webhooks/{id}/{token}``
answers as Discord does (204, or the message with ``?wait=true``; errors as ``{"message", "code"}``).
"""

from __future__ import annotations

import json
import math

from aiohttp import web

from chimebot.errors import DomainError, NotFound, RateLimited, TooLarge
from chimebot.http import SERVICES
from chimebot.http.parsing import bearer_token, path_id
from chimebot.incoming import Arrival, Outcome, Refused
from chimebot.incoming.receive import GONE, TEMPLATE
from webhooks import discord, slack, teams

routes = web.RouteTableDef()

# Our domain codes under the names Slack's clients know.
_SLACK_CODES = {"not_found": "no_service", "invalid": "invalid_payload", "too_large": "msg_too_long"}
# Discord's answers to a request it refuses before reading the body, and its JSON error codes.
_DISCORD = {
    404: ("Unknown Webhook", 10015),
    403: ("Invalid Webhook Token", 50027),
    413: ("Request entity too large", 40005),
}


def _arrival(request: web.Request) -> Arrival:
    """The parts of a request that receiving needs, with a body reader that enforces the size limit."""
    limit = request.app[SERVICES].config.webhooks.max_body_bytes

    async def read_body() -> bytes:
        if (request.content_length or 0) > limit:
            raise TooLarge(f"the body is over {limit} bytes")
        body = await request.read()
        if len(body) > limit:
            raise TooLarge(f"the body is over {limit} bytes")
        return body

    return Arrival(request.headers, request.query, bearer_token(request), read_body)


@routes.post("/incomingwebhooks/{webhook_id}")
async def chime_webhook(request: web.Request) -> web.Response:
    """Amazon Chime's ``POST /incomingwebhooks/{id}?token=…`` with ``{"Content": …}``."""
    receiver = request.app[SERVICES].incoming.receiver
    outcome = await receiver.post_chime(
        path_id(request, "webhook_id"), request.query.get("token"), _arrival(request)
    )
    return _json(_chime_answer(outcome))


@routes.post("/hooks/{key}")
async def hook(request: web.Request) -> web.Response:
    """Slack, Mattermost, Teams, Discord and Chime bodies by their shape, or any JSON through a template."""
    receiver = request.app[SERVICES].incoming.receiver
    try:
        key = path_id(request, "key")
    except NotFound:
        return _refusal(None, NotFound(GONE))
    try:
        outcome = await receiver.post_hook(key, _arrival(request))
    except Refused as refused:
        return _refusal(refused.dialect, refused.error)
    if outcome.dialect == "discord":
        return _discord_answer(request, outcome)
    if outcome.dialect == "teams":
        return web.Response(text=teams.SUCCESS_TEXT, content_type="text/plain")
    if outcome.dialect in ("chime", TEMPLATE):
        return _json(_chime_answer(outcome))
    return web.Response(text=slack.SUCCESS, content_type="text/plain")


@routes.post("/api/webhooks/{webhook_id}/{token}")
async def discord_webhook(request: web.Request) -> web.Response:
    """Discord's ``POST /api/webhooks/{id}/{token}[?wait=true]`` with ``content``/``embeds``."""
    receiver = request.app[SERVICES].incoming.receiver
    try:
        webhook_id, token = path_id(request, "webhook_id"), path_id(request, "token")
    except NotFound:
        return _refusal("discord", NotFound(GONE), discord_url=True)
    try:
        outcome = await receiver.post_discord(webhook_id, token, _arrival(request))
    except Refused as refused:
        return _refusal("discord", refused.error, discord_url=True)
    return _discord_answer(request, outcome)


def _chime_answer(outcome: Outcome) -> dict[str, str | None]:
    message_id = outcome.message["id"] if outcome.message else None
    return {"MessageId": message_id, "RoomId": outcome.room_id}  # type: ignore[dict-item]


def _discord_answer(request: web.Request, outcome: Outcome) -> web.Response:
    """204, or with ``?wait=true`` the message as Discord's message object."""
    if request.query.get("wait", "").lower() != "true" or outcome.message is None:
        return web.Response(status=204)
    message = outcome.message
    body = discord.message_object(
        message_id=message["id"],
        channel_id=message["room_id"],
        webhook_id=outcome.hook.id,
        username=message["sender_name"],
        content=message["content"],
        timestamp=message["created_at"],
    )
    return _json(body)


def _refusal(dialect: str | None, error: DomainError, *, discord_url: bool = False) -> web.Response:
    """A refusal in the dialect's own shape (the API's JSON for template webhooks and Chime bodies).

    Discord's own URL answers a wrong token with 401, as Discord does; /hooks/ keeps 403 for every dialect.
    """
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if dialect == "discord":
        message, code = _DISCORD.get(error.status, (error.message, 50035))
        if error.code.isdigit():
            code = int(error.code)
        body = discord.error_body(str(code), message)
        if isinstance(error, RateLimited):
            body = {
                "message": "You are being rate limited.",
                "retry_after": error.retry_after,
                "global": False,
            }
        status = 401 if discord_url and error.status == 403 else error.status
        return _json(body, status, headers)
    if dialect in ("chime", TEMPLATE):
        return _json({"error": error.code, "message": error.message}, error.status, headers)
    code = _SLACK_CODES.get(error.code, error.code)
    return web.Response(text=code, status=error.status, content_type="text/plain", headers=headers)


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json", headers=headers
    )
