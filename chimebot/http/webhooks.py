"""Managing incoming webhooks: list, create, read and change settings, regenerate, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chimebot.http import SERVICES
from chimebot.http.audit import audited
from chimebot.http.parsing import current_user, field, json_object, path_id
from chimebot.models import Webhook

NO_STORE = {"Cache-Control": "no-store"}  # answers that carry a token or secret are not for caches
SETTINGS = ("dialect", "locked", "template", "auth", "signing_secret")

routes = web.RouteTableDef()


def _shown(request: web.Request, hook: Webhook, token: str | None, secret: str | None) -> dict[str, Any]:
    """A webhook as the API shows it, with the token and signing secret when they were just made."""
    return hook.shown(request.app[SERVICES].config.server.base_url, token, secret)


@routes.get("/api/v1/rooms/{room_id}/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    """A room's webhooks (room administrators)."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    hooks = await svc.incoming.list(user, path_id(request, "room_id"))
    return web.json_response({"webhooks": [_shown(request, h, None, None) for h in hooks]})


@routes.post("/api/v1/rooms/{room_id}/webhooks")
@audited("webhooks.create")
async def create_webhook(request: web.Request) -> web.Response:
    """Create a webhook; the answer holds its token, URLs and any generated secret, shown only now."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    body = await json_object(request)
    name = field(body, "name", str, label="a string")
    settings = {k: body[k] for k in SETTINGS if k in body}
    hook, token, secret = await svc.incoming.create(user, path_id(request, "room_id"), name, settings)
    return web.json_response(_shown(request, hook, token, secret), status=201, headers=NO_STORE)


@routes.get("/api/v1/webhooks/templates")
async def list_templates(request: web.Request) -> web.Response:
    """The templates a webhook may name: the built-ins and the config file's [[templates]]."""
    svc = request.app[SERVICES]
    await current_user(request, svc)
    return web.json_response({"templates": svc.incoming.receiver.templates.names()})


@routes.get("/api/v1/webhooks/{webhook_id}")
async def get_webhook(request: web.Request) -> web.Response:
    """One webhook: its settings, what its last body was read as, and its last error."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    hook = await svc.incoming.get(user, path_id(request, "webhook_id"))
    return web.json_response(_shown(request, hook, None, None))


@routes.patch("/api/v1/webhooks/{webhook_id}")
@audited("webhooks.configure")
async def configure_webhook(request: web.Request) -> web.Response:
    """Change a webhook's dialect, lock, template, auth or signing secret."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    body = await json_object(request)
    hook, secret = await svc.incoming.configure(user, path_id(request, "webhook_id"), body)
    return web.json_response(_shown(request, hook, None, secret), headers=NO_STORE if secret else None)


@routes.post("/api/v1/webhooks/{webhook_id}/regenerate")
@audited("webhooks.regenerate")
async def regenerate_webhook(request: web.Request) -> web.Response:
    """Give a webhook a new URL and token; the old URL answers 404 from now on."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    hook, token = await svc.incoming.regenerate(user, path_id(request, "webhook_id"))
    return web.json_response(_shown(request, hook, token, None), headers=NO_STORE)


@routes.delete("/api/v1/webhooks/{webhook_id}")
@audited("webhooks.delete")
async def delete_webhook(request: web.Request) -> web.Response:
    """Delete a webhook."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    await svc.incoming.delete(user, path_id(request, "webhook_id"))
    return web.Response(status=204)
