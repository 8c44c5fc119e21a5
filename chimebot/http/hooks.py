"""Incoming webhook endpoints, each in its sender's dialect (Chime today)."""

from __future__ import annotations

import json

from aiohttp import web

from chimebot.errors import TooLarge
from chimebot.http import SERVICES
from chimebot.http.parsing import path_id

routes = web.RouteTableDef()


@routes.post("/incomingwebhooks/{webhook_id}")
async def chime_webhook(request: web.Request) -> web.Response:
    """Amazon Chime's ``POST /incomingwebhooks/{id}?token=…`` with ``{"Content": …}``."""
    svc = request.app[SERVICES]
    limit = svc.config.webhooks.max_body_bytes

    async def read_body() -> bytes:
        if (request.content_length or 0) > limit:
            raise TooLarge(f"the body is over {limit} bytes")
        body = await request.read()
        if len(body) > limit:
            raise TooLarge(f"the body is over {limit} bytes")
        return body

    answer = await svc.incoming.post_chime(
        path_id(request, "webhook_id"), request.query.get("token"), read_body
    )
    return web.Response(body=json.dumps(answer).encode(), content_type="application/json")
