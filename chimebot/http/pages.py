"""Pages for people and probes: the front page, one-time sign-in links, ``/healthz``."""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from chimebot import __version__
from chimebot.http import SERVICES
from chimebot.http.parsing import path_id

routes = web.RouteTableDef()

OPENAPI = Path(__file__).parent / "openapi.json"

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} · chimebot</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}
code{{background:#eee;padding:.1rem .3rem;word-break:break-all}}
button{{font-size:1rem;padding:.4rem 1rem}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=_PAGE.format(title=html.escape(title), body=body),
        content_type="text/html",
        status=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """A short page saying what this is and where the API lives."""
    return _page(
        "chimebot",
        f"<p>chimebot {__version__} is running. The REST API is under <code>/api/v1</code> "
        "(described at <a href='/api/v1/openapi.json'>/api/v1/openapi.json</a>); "
        "Chime webhooks post to <code>/incomingwebhooks/&lt;id&gt;?token=&lt;token&gt;</code>.</p>",
    )


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI description of this API (chimebot/http/openapi.json)."""
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/json")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers, 503 when it does not."""
    await request.app[SERVICES].health()
    return web.json_response({"status": "ok", "version": __version__})


@routes.get("/signin/{token}")
async def signin_form(request: web.Request) -> web.Response:
    """Show a button that uses the link; a GET never uses it, so link previews cannot burn it."""
    svc = request.app[SERVICES]
    if not await svc.signin.signin_link_usable(path_id(request, "token")):
        return _page(
            "Sign-in link not usable",
            "<p>This link is unknown, already used or expired. "
            "An administrator can make a new one with <code>chimebot admin signin-link EMAIL</code>.</p>",
            status=404,
        )
    return _page(
        "Sign in",
        "<form method='post'><p>Signing in creates a personal API token for you.</p>"
        "<button type='submit'>Sign in</button></form>",
    )


@routes.post("/signin/{token}")
async def signin(request: web.Request) -> web.Response:
    """Use a sign-in link once and show the personal API token it creates (JSON if asked for)."""
    svc = request.app[SERVICES]
    user, token = await svc.signin.redeem_signin_link(path_id(request, "token"))
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(
            {"user": user.to_json(), "token": token}, headers={"Cache-Control": "no-store"}
        )
    return _page(
        f"Signed in as {user.email}",
        "<p>Your personal API token (shown once; keep it secret):</p>"
        f"<p><code>{html.escape(token)}</code></p>"
        "<p>Use it as <code>Authorization: Bearer &lt;token&gt;</code> with the REST API, or as "
        "<code>?token=</code> when opening <code>/api/v1/stream</code>.</p>",
    )
