"""Pages for people and probes: the front page, one-time sign-in links, ``/healthz``."""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from chimebot import __version__
from chimebot.errors import DomainError
from chimebot.http import SERVICES
from chimebot.http.audit import audited
from chimebot.http.parsing import CALLER, path_id

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
@audited("signin.link")
async def signin(request: web.Request) -> web.Response:
    """Use a sign-in link once and show the personal API token it creates (JSON if asked for)."""
    svc = request.app[SERVICES]
    user, token = await svc.signin.redeem_signin_link(path_id(request, "token"))
    request[CALLER] = user
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


@routes.get("/invitations/{token}")
async def invitation_form(request: web.Request) -> web.Response:
    """The page an invitation link opens: a new person sets a name and password; others confirm."""
    svc = request.app[SERVICES]
    try:
        pending = await svc.invitations.pending(path_id(request, "token"))
    except DomainError as exc:
        return _page("Invitation not usable", f"<p>{html.escape(exc.message)}.</p>", status=404)
    account = html.escape(pending.account_name)
    if pending.existing:
        body = (
            f"<form method='post'><p>Join <b>{account}</b> as {html.escape(pending.email)}. "
            "You keep your name and password.</p><button type='submit'>Join</button></form>"
        )
    else:
        body = (
            f"<form method='post'><p>Join <b>{account}</b> as {html.escape(pending.email)}.</p>"
            "<p><label>Full name<br><input name='full_name' required maxlength='200'></label></p>"
            "<p><label>Display name (optional)<br><input name='display_name' maxlength='200'></label></p>"
            f"<p><label>Password (at least {svc.config.accounts.password_min_length} characters)<br>"
            "<input name='password' type='password' required></label></p>"
            "<button type='submit'>Join</button></form>"
        )
    return _page(f"Join {pending.account_name}", body)


@routes.post("/invitations/{token}")
@audited("invitations.accept")
async def accept_invitation(request: web.Request) -> web.Response:
    """Accept an invitation from its page's form and show the personal API token it creates."""
    svc = request.app[SERVICES]
    form = await request.post()

    def text(name: str) -> str | None:
        value = form.get(name)
        return value.strip() or None if isinstance(value, str) else None

    try:
        user = await svc.invitations.accept(
            path_id(request, "token"),
            full_name=text("full_name"),
            display_name=text("display_name"),
            password=password if isinstance(password := form.get("password"), str) and password else None,
        )
    except DomainError as exc:
        return _page("Could not join", f"<p>{html.escape(exc.message)}.</p>", status=exc.status)
    request[CALLER] = user
    token = await svc.signin.create_token(user, "invitation")
    return _page(
        f"Welcome, {user.display_name}",
        "<p>You are in. Your personal API token (shown once; keep it secret):</p>"
        f"<p><code>{html.escape(token)}</code></p>",
    )
