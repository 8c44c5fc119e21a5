"""REST API under ``/api/v1``: the caller is whoever owns the bearer token."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chimebot import secrets
from chimebot.errors import Invalid
from chimebot.http import SERVICES
from chimebot.http.audit import AUDIT_SUBJECT, AUDIT_TARGET, audited
from chimebot.http.parsing import (
    CALLER,
    bearer_token,
    current_user,
    field,
    json_object,
    path_id,
    query_bool,
    query_int,
    timestamp,
)

NO_STORE = {"Cache-Control": "no-store"}  # answers that carry a token are not for caches

routes = web.RouteTableDef()


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    """Who the token belongs to, with their license, statuses, meeting id and PIN."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    return web.json_response((await svc.users.profile_of(user)).to_json())


@routes.patch("/api/v1/me")
@audited("me.update")
async def update_me(request: web.Request) -> web.Response:
    """Change your own names, do-not-disturb, or your password (with current_password)."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    body = await json_object(request)
    texts = ("full_name", "display_name", "password", "current_password")
    allowed = (*texts, "do_not_disturb")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    changes: dict[str, Any] = {key: field(body, key, str, label="a string") for key in texts if key in body}
    if "do_not_disturb" in body:
        changes["do_not_disturb"] = field(body, "do_not_disturb", bool, label="true or false")
    minimum = svc.config.accounts.password_min_length
    token_hash = secrets.token_hash(bearer_token(request) or "")
    profile = await svc.users.update_own(user, changes, password_min_length=minimum, token_hash=token_hash)
    return web.json_response(profile.to_json())


@routes.post("/api/v1/sessions")
@audited("sessions.sign_in")
async def sign_in(request: web.Request) -> web.Response:
    """Sign in with address and password; the answer holds a new personal API token (shown once)."""
    svc = request.app[SERVICES]
    body = await json_object(request)
    email = field(body, "email", str, label="an email address")
    password = field(body, "password", str, label="a string")
    request[AUDIT_TARGET] = request[AUDIT_SUBJECT] = email.strip().lower()[:200]  # whom an attempt was on
    user, token = await svc.signin.sign_in(email, password)
    request[CALLER] = user
    return web.json_response({"user": user.to_json(), "token": token}, status=201, headers=NO_STORE)


@routes.post("/api/v1/signup")
@audited("signup.request")
async def sign_up(request: web.Request) -> web.Response:
    """Ask to join the account that claims your address's domain; a link is mailed to you."""
    svc = request.app[SERVICES]
    email = field(await json_object(request), "email", str, label="an email address")
    await svc.invitations.sign_up(email)
    return web.json_response(
        {"status": "sent", "message": f"a link to finish signing up was sent to {email.strip().lower()}"},
        status=202,
    )


@routes.post("/api/v1/invitations/accept")
@audited("invitations.accept")
async def accept_invitation(request: web.Request) -> web.Response:
    """Accept an invitation with the token from its link; a new person sets full_name and password."""
    svc = request.app[SERVICES]
    body = await json_object(request)
    token = field(body, "token", str, label="the token from the invitation link")
    full_name = field(body, "full_name", str, default=None, label="a string")
    display_name = field(body, "display_name", str, default=None, label="a string")
    password = field(body, "password", str, default=None, label="a string")
    user = await svc.invitations.accept(
        token, full_name=full_name, display_name=display_name, password=password
    )
    request[CALLER] = user
    api_token = await svc.signin.create_token(user, "invitation")
    return web.json_response({"user": user.to_json(), "token": api_token}, headers=NO_STORE)


@routes.post("/api/v1/meetings")
@audited("meetings.create")
async def create_meeting(request: web.Request) -> web.Response:
    """Create an instant or scheduled meeting (Pro)."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    body = await json_object(request)
    kind = field(body, "type", str, default="instant", label="instant or scheduled")
    if kind not in ("instant", "scheduled"):
        raise Invalid("`type` must be instant or scheduled")
    topic = field(body, "topic", str, default="Meeting", label="a string")
    start_at = timestamp(field(body, "start_at", str, default=None, label="an ISO 8601 time"), "start_at")
    meeting = await svc.meetings.create(user, kind, topic, start_at)
    return web.json_response(meeting.to_json(svc.config.server.base_url), status=201)


@routes.get("/api/v1/meetings/assistant")
async def scheduling_assistant(request: web.Request) -> web.Response:
    """A meeting id (new, or ?personal=true for yours) with the addresses and invitation text (Pro)."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    personal = query_bool(request, "personal", default=False)
    return web.json_response(await svc.meetings.assistant(user, personal=personal), headers=NO_STORE)


@routes.post("/api/v1/meetings/{meeting_id}/recording")
@audited("meetings.recording.start")
async def start_recording(request: web.Request) -> web.Response:
    """Start recording a meeting you host (Pro)."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    await svc.meetings.start_recording(user, path_id(request, "meeting_id"))
    return web.json_response({"recording": True}, status=202)


@routes.get("/api/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    """The caller's API tokens (names and dates, never values)."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    return web.json_response({"tokens": await svc.signin.tokens(user)})


@routes.post("/api/v1/tokens")
@audited("tokens.create")
async def create_token(request: web.Request) -> web.Response:
    """Create another personal API token; its value is shown once."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    name = field(await json_object(request), "name", str, default="api")
    return web.json_response({"token": await svc.signin.create_token(user, name)}, status=201)


@routes.delete("/api/v1/tokens/{token_id}")
@audited("tokens.revoke")
async def revoke_token(request: web.Request) -> web.Response:
    """Revoke one of the caller's tokens."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    await svc.signin.revoke_token(user, path_id(request, "token_id"))
    return web.Response(status=204)


@routes.get("/api/v1/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    """The rooms the caller is a member of."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    return web.json_response({"rooms": [r.to_json() for r in await svc.rooms.rooms_of(user)]})


@routes.post("/api/v1/rooms")
@audited("rooms.create")
async def create_room(request: web.Request) -> web.Response:
    """Create a room; the caller becomes its administrator."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    name = field(await json_object(request), "name", str, label="a string")
    return web.json_response((await svc.rooms.create(user, name)).to_json(), status=201)


@routes.get("/api/v1/rooms/{room_id}")
async def get_room(request: web.Request) -> web.Response:
    """One room the caller is in."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    return web.json_response((await svc.rooms.get(user, path_id(request, "room_id"))).to_json())


@routes.get("/api/v1/rooms/{room_id}/members")
async def list_members(request: web.Request) -> web.Response:
    """A room's members."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    members = await svc.rooms.members(user, path_id(request, "room_id"))
    return web.json_response({"members": [m.to_json() for m in members]})


@routes.post("/api/v1/rooms/{room_id}/members")
@audited("rooms.members.add")
async def add_member(request: web.Request) -> web.Response:
    """Add a user of the account to a room (room administrators)."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    body = await json_object(request)
    email = field(body, "email", str, label="an email address")
    is_admin = field(body, "is_admin", bool, default=False, label="true or false")
    member = await svc.rooms.add_member(user, path_id(request, "room_id"), email, is_admin=is_admin)
    return web.json_response(member.to_json(), status=201)


@routes.patch("/api/v1/rooms/{room_id}/members/{user_id}")
@audited("rooms.members.update")
async def update_member(request: web.Request) -> web.Response:
    """Make a member a room administrator or not."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    is_admin = field(await json_object(request), "is_admin", bool, label="true or false")
    room_id, user_id = path_id(request, "room_id"), path_id(request, "user_id")
    return web.json_response((await svc.rooms.set_admin(user, room_id, user_id, is_admin)).to_json())


@routes.delete("/api/v1/rooms/{room_id}/members/{user_id}")
@audited("rooms.members.remove")
async def remove_member(request: web.Request) -> web.Response:
    """Leave a room (your own id) or remove a member (room administrators)."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    await svc.rooms.remove_member(user, path_id(request, "room_id"), path_id(request, "user_id"))
    return web.Response(status=204)


@routes.get("/api/v1/rooms/{room_id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    """A page of a room's history, newest first; pass ``cursor=next_cursor`` for older messages."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    limit = query_int(request, "limit", 50, minimum=1)
    assert limit is not None
    messages, cursor = await svc.rooms.history(
        user, path_id(request, "room_id"), limit=limit, cursor=request.query.get("cursor") or None
    )
    return web.json_response({"messages": messages, "next_cursor": cursor})


@routes.post("/api/v1/rooms/{room_id}/messages")
@audited(None)  # chat traffic, not administration: it is in the room's history
async def post_message(request: web.Request) -> web.Response:
    """Post a message (Markdown by default) as the caller."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc)
    body = await json_object(request)
    content = field(body, "content", str, label="a string")
    fmt = field(body, "format", str, default="markdown", label="one of text, markdown, code")
    row = await svc.rooms.post_as_user(user, path_id(request, "room_id"), content, fmt)
    return web.json_response({"id": row["id"], "room_id": row["room_id"]}, status=201)
