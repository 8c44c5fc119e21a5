"""Accounts over real HTTP: invitations, users, Basic/Pro gating, suspension, sign-in limits, claimed
domains, the admin-only decorator and the audit log (SPEC section 1)."""

from __future__ import annotations

import email
import functools
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from chimebot.app import app_for
from chimebot.clock import FakeClock
from chimebot.config import Config
from chimebot.errors import Conflict
from chimebot.http.parsing import admin_only
from chimebot.models import User
from chimebot.passwords import hash_password_now
from chimebot.services import build_services
from chimebot.store import accounts as qa
from chimebot.store import schema
from tests.conftest import Harness, declare_bot, make_config

BOTH_ENGINES = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

PASSWORD = "correct horse battery staple"
BASE_URL = "http://127.0.0.1:8080"  # the default [server]: links in mails point there
T0 = "2026-01-05T09:00:00.000Z"  # FakeClock's start, as the API writes times
TTL_SECONDS = 168 * 3600  # [accounts] invitation_ttl_hours by default
WINDOW_SECONDS = 15 * 60  # [accounts] signin_window_minutes by default
LINK = re.compile(r"(\S+)/invitations/([A-Za-z0-9_-]+)")
DIGITS = re.compile(r"[1-9][0-9]*")

# The tables whose rows an account administrator can change; the audit log is left out on purpose.
STATE_TABLES = (
    schema.accounts,
    schema.account_domains,
    schema.users,
    schema.invitations,
    schema.api_tokens,
    schema.signin_links,
    schema.meetings,
)


# -- helpers ---------------------------------------------------------------------------------------------


@functools.cache
def password_hash() -> str:
    """A scrypt hash of PASSWORD, computed once and shared by every test user that signs in with it."""
    return hash_password_now(PASSWORD)


async def set_password(h: Harness, user_id: str) -> None:
    """Give a user PASSWORD (stored hashed, as an accepted invitation would)."""
    async with h.services.store.transaction() as conn:
        await qa.update_user(conn, user_id, {"password_hash": password_hash()})


async def call(
    h: Harness, method: str, path: str, token: str | None = None, body: Any = None, *, anonymous: bool = False
) -> tuple[int, Any]:
    """Send a request (as the admin unless a token is given) and return its status and decoded body."""
    headers = {} if anonymous else h.auth(token)
    resp = await h.client.request(method, path, json=body, headers=headers)
    if resp.content_type == "application/json":
        return resp.status, await resp.json()
    return resp.status, await resp.text()


async def other_account(
    h: Harness, name: str = "Other", admin_email: str = "boss@other.example", kind: str = "team"
) -> tuple[str, User, str]:
    """Create another account with its own admin; return its id, the admin and the admin's token."""
    account, admin = await h.services.accounts.create(name, kind, admin_email)
    return account.id, admin, await h.services.signin.create_token(admin, "test")


def outbox(tmp_path: Path) -> list[EmailMessage]:
    """The messages written to the outbox folder, oldest first."""
    folder = tmp_path / "outbox"
    if not folder.exists():
        return []
    return [
        cast(EmailMessage, email.message_from_bytes(p.read_bytes(), policy=policy.default))
        for p in sorted(folder.glob("*.eml"))
    ]


def mail_to(tmp_path: Path, address: str) -> EmailMessage:
    """The one outbox message addressed to ``address``."""
    found = [m for m in outbox(tmp_path) if m["To"] == address]
    assert len(found) == 1, [m["To"] for m in outbox(tmp_path)]
    return found[0]


def link_token(message: EmailMessage) -> str:
    """The token of the ``<base>/invitations/<token>`` link in a message, checking the base URL."""
    match = LINK.search(message.get_content())
    assert match is not None, message.get_content()
    assert match.group(1) == BASE_URL
    return match.group(2)


def by_email(profiles: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Profiles keyed by primary_email."""
    return {p["primary_email"]: p for p in profiles}


async def invite(h: Harness, *emails: str) -> dict[str, dict[str, Any]]:
    """Invite addresses to the admin's account through the API; return the answer's profiles by address."""
    code, body = await call(
        h, "POST", f"/api/v1/accounts/{h.admin.account_id}/invitations", body={"emails": list(emails)}
    )
    assert code == 201, body
    return by_email(body["users"])


async def list_users(h: Harness, query: str = "") -> list[dict[str, Any]]:
    """One page (limit 200) of the admin's account's users, with an optional query string."""
    code, body = await call(h, "GET", f"/api/v1/accounts/{h.admin.account_id}/users?limit=200&{query}")
    assert code == 200, body
    assert body["next_cursor"] is None
    return body["users"]


async def profile(h: Harness, user_id: str, token: str | None = None) -> dict[str, Any]:
    """A user as the admin (or the admin whose token is given) sees them."""
    code, body = await call(h, "GET", f"/api/v1/users/{user_id}", token)
    assert code == 200, body
    return body


async def snapshot(h: Harness) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables an administrator can change, in primary-key order."""
    async with h.services.store.read() as conn:
        return {
            table.name: [
                dict(row)
                for row in (
                    await conn.execute(sa.select(table).order_by(*table.primary_key.columns))
                ).mappings()
            ]
            for table in STATE_TABLES
        }


async def audit_rows(h: Harness) -> list[dict[str, Any]]:
    """The raw rows of the audit_log table, oldest first."""
    async with h.services.store.read() as conn:
        stmt = sa.select(schema.audit_log).order_by(schema.audit_log.c.id)
        return [dict(row) for row in (await conn.execute(stmt)).mappings()]


async def sign_in(h: Harness, address: str, password: str) -> tuple[int, Any, str | None]:
    """POST /api/v1/sessions; return status, body and the Retry-After header."""
    resp = await h.client.post("/api/v1/sessions", json={"email": address, "password": password})
    return resp.status, await resp.json(), resp.headers.get("Retry-After")


# -- 1. invitations --------------------------------------------------------------------------------------


@BOTH_ENGINES
async def test_invite_a_new_person_and_a_user_of_another_account(app: Harness, tmp_path: Path) -> None:
    h, account_id = app, app.admin.account_id
    _other_id, alice, alice_token = await other_account(h, admin_email="a@other.example")
    code, body = await call(
        h,
        "PATCH",
        f"/api/v1/users/{alice.id}",
        alice_token,
        {"full_name": "Alice Other", "display_name": "Alice"},
    )
    assert code == 200, body

    invited = await invite(h, "New.Person@Example.com", "a@other.example")
    assert set(invited) == {"new.person@example.com", "a@other.example"}
    new = invited["new.person@example.com"]
    assert new["account_id"] == account_id
    assert (new["invitation_status"], new["registration_status"]) == ("pending", "unregistered")
    assert new["full_name"] == new["display_name"] == "new.person@example.com"  # both default to the address
    assert (new["invited_on"], new["registered_on"], new["failure_reason"]) == (T0, None, None)
    assert (new["license"], new["is_admin"]) == ("pro", False)  # [accounts] default_license
    assert DIGITS.fullmatch(new["personal_meeting_id"]) and len(new["personal_meeting_id"]) == 10
    assert re.fullmatch(r"\d{6}", new["personal_pin"])
    existing = invited["a@other.example"]
    # Until they accept, the inviting account learns nothing of their user in the other account
    # (not even that there is one): no account, names, license, meeting id or PIN.
    assert (existing["invitation_status"], existing["registration_status"]) == ("pending", "unregistered")
    assert (existing["account_id"], existing["license"], existing["is_admin"]) == (None, None, False)
    assert (existing["full_name"], existing["display_name"]) == ("a@other.example", "a@other.example")
    assert existing["personal_meeting_id"] is None and existing["personal_pin"] is None
    assert existing["registered_on"] is None

    messages = outbox(tmp_path)
    assert sorted(m["To"] for m in messages) == ["a@other.example", "new.person@example.com"]
    assert all(m["Subject"] == "Join chimebot on chimebot" for m in messages)
    new_token = link_token(mail_to(tmp_path, "new.person@example.com"))
    alice_link = link_token(mail_to(tmp_path, "a@other.example"))
    assert new_token != alice_link

    # The link opens a page; opening it does not use it.
    resp = await h.client.get(f"/invitations/{new_token}")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert "new.person@example.com" in page and "name='full_name'" in page and "type='password'" in page
    resp = await h.client.get(f"/invitations/{alice_link}")
    assert resp.status == 200
    page = await resp.text()
    assert "a@other.example" in page and "You keep your name and password" in page
    assert "name='password'" not in page

    # A new person must set a name and a password; the refusal leaves the link usable.
    code, body = await call(
        h, "POST", "/api/v1/invitations/accept", body={"token": new_token}, anonymous=True
    )
    assert (code, body["error"]) == (400, "invalid"), body
    assert "full_name" in body["message"] and "password" in body["message"]

    h.clock.advance(3600)
    accept = {"token": new_token, "full_name": "New Person", "password": PASSWORD}
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
    assert code == 200, body
    assert body["user"]["id"] == new["id"] and body["user"]["account_id"] == account_id
    code, me = await call(h, "GET", "/api/v1/me", body["token"])
    assert code == 200, me
    assert me["id"] == new["id"]
    assert (me["full_name"], me["display_name"]) == ("New Person", "New Person")  # display_name defaults
    assert (me["invitation_status"], me["registration_status"]) == ("accepted", "registered")
    assert (me["invited_on"], me["registered_on"]) == (T0, "2026-01-05T10:00:00.000Z")
    assert me["personal_meeting_id"] == new["personal_meeting_id"]
    code, body, _ = await sign_in(h, "new.person@example.com", PASSWORD)  # the password was stored
    assert code == 201, body

    # The user of another account confirms with the token alone, keeps their names, and moves in.
    code, body = await call(
        h, "POST", "/api/v1/invitations/accept", body={"token": alice_link}, anonymous=True
    )
    assert code == 200, body
    code, me = await call(h, "GET", "/api/v1/me", body["token"])
    assert code == 200, me
    assert (me["id"], me["account_id"], me["is_admin"]) == (alice.id, account_id, False)
    assert (me["full_name"], me["display_name"]) == ("Alice Other", "Alice")
    assert (me["invitation_status"], me["registration_status"], me["registered_on"]) == (
        "accepted",
        "registered",
        T0,
    )
    assert (await profile(h, alice.id))["personal_meeting_id"] == me["personal_meeting_id"]  # a member now

    # Each link works once.
    for token in (new_token, alice_link):
        code, body = await call(
            h, "POST", "/api/v1/invitations/accept", body={"token": token}, anonymous=True
        )
        assert (code, body["error"]) == (404, "not_found"), body
        assert (await h.client.get(f"/invitations/{token}")).status == 404


@BOTH_ENGINES
async def test_invitation_link_expires(app: Harness, tmp_path: Path) -> None:
    h = app
    late = (await invite(h, "late@example.com"))["late@example.com"]
    token = link_token(mail_to(tmp_path, "late@example.com"))
    h.clock.advance(TTL_SECONDS - 60)
    assert (await h.client.get(f"/invitations/{token}")).status == 200  # a minute left
    h.clock.advance(120)
    resp = await h.client.get(f"/invitations/{token}")
    assert resp.status == 404
    assert "unknown, already used or expired" in await resp.text()
    accept = {"token": token, "full_name": "Late Comer", "password": PASSWORD}
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
    assert (code, body["error"]) == (404, "not_found"), body
    after = await profile(h, late["id"])
    assert (after["registration_status"], after["full_name"], after["registered_on"]) == (
        "unregistered",
        "late@example.com",
        None,
    )


async def test_invitation_limits_and_invalid_addresses(app: Harness, tmp_path: Path) -> None:
    h = app
    before = await snapshot(h)
    fifty_one = [f"p{i}@example.com" for i in range(51)]
    code, body = await call(
        h, "POST", f"/api/v1/accounts/{h.admin.account_id}/invitations", body={"emails": fifty_one}
    )
    assert (code, body["error"]) == (400, "invalid"), body
    assert "at most 50" in body["message"] and "51" in body["message"]

    code, body = await call(
        h,
        "POST",
        f"/api/v1/accounts/{h.admin.account_id}/invitations",
        body={"emails": ["fine@example.com", "not an address"]},
    )
    assert (code, body["error"]) == (400, "invalid"), body
    assert "'not an address'" in body["message"]  # names the address at fault

    # Addresses a mail server would read as something else are refused, not stored and mailed.
    for sneaky in ("a,b@example.com", "a<b@example.com", "boss(x)@example.com", "a..b@example.com"):
        code, body = await call(
            h, "POST", f"/api/v1/accounts/{h.admin.account_id}/invitations", body={"emails": [sneaky]}
        )
        assert (code, body["error"]) == (400, "invalid"), (sneaky, body)

    for emails in ([], "x@example.com", [1, 2]):
        code, body = await call(
            h, "POST", f"/api/v1/accounts/{h.admin.account_id}/invitations", body={"emails": emails}
        )
        assert code == 400, (emails, body)
    # A refused call invites nobody, not even its valid addresses.
    assert await snapshot(h) == before
    assert outbox(tmp_path) == []

    invited = await invite(h, *fifty_one[:50])
    assert len(invited) == 50
    assert {p["invitation_status"] for p in invited.values()} == {"pending"}
    assert len(outbox(tmp_path)) == 50
    # The same address twice (in any case) is one invitation and one mail.
    assert list(await invite(h, "Twice@Example.com", "twice@example.COM")) == ["twice@example.com"]
    assert len(outbox(tmp_path)) == 51


async def test_inviting_again_replaces_the_link(app: Harness, tmp_path: Path) -> None:
    h = app
    await invite(h, "twice@example.com")
    h.clock.advance(60)
    again = (await invite(h, "twice@example.com"))["twice@example.com"]
    assert again["invited_on"] == "2026-01-05T09:01:00.000Z"
    first, second = (link_token(m) for m in outbox(tmp_path))
    assert (await h.client.get(f"/invitations/{first}")).status == 404
    assert (await h.client.get(f"/invitations/{second}")).status == 200
    # A registered member is listed but not invited (nor mailed) again.
    listed = await invite(h, "admin@localhost")
    assert listed["admin@localhost"]["registration_status"] == "registered"
    assert len(outbox(tmp_path)) == 2


async def test_the_only_admin_of_another_account_cannot_leave_it(app: Harness, tmp_path: Path) -> None:
    h = app
    other_id, boss, _ = await other_account(h)
    colleague = User("colleague-id", other_id, "colleague@other.example", "colleague@other.example", False)
    async with h.services.store.transaction() as conn:
        await qa.insert_user(conn, colleague, h.clock.now())
    await invite(h, "boss@other.example")
    token = link_token(mail_to(tmp_path, "boss@other.example"))
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body={"token": token}, anonymous=True)
    assert (code, body["error"]) == (409, "conflict"), body
    assert "only administrator" in body["message"]
    stayed = await h.services.accounts.user("boss@other.example")
    assert (stayed.account_id, stayed.is_admin) == (other_id, True)
    assert stayed.id == boss.id


async def test_accepting_moves_an_unregistered_person_into_the_inviting_account(
    app: Harness, tmp_path: Path
) -> None:
    h = app
    other_id, _, boss_token = await other_account(h)
    code, body = await call(
        h, "POST", f"/api/v1/accounts/{other_id}/invitations", boss_token, {"emails": ["both@example.com"]}
    )
    assert code == 201, body
    invited = (await invite(h, "both@example.com"))["both@example.com"]
    [ours] = [m for m in outbox(tmp_path) if m["Subject"] == "Join chimebot on chimebot"]
    accept = {"token": link_token(ours), "full_name": "Both", "password": PASSWORD}
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
    assert code == 200, body
    code, me = await call(h, "GET", "/api/v1/me", body["token"])
    assert (me["id"], me["registration_status"]) == (invited["id"], "registered")
    assert me["account_id"] == h.admin.account_id  # the account whose link was accepted
    assert (me["full_name"], me["invitation_status"]) == ("Both", "accepted")


async def test_what_another_account_set_on_an_invitee_does_not_come_along(
    app: Harness, tmp_path: Path
) -> None:
    # The other account's admin invites the person first, makes them an administrator, gives them
    # Basic, suspends them and learns their PIN; then we invite them and they accept our link.
    h = app
    other_id, _, boss_token = await other_account(h)
    code, body = await call(
        h, "POST", f"/api/v1/accounts/{other_id}/invitations", boss_token, {"emails": ["x@example.com"]}
    )
    assert code == 201, body
    theirs = body["users"][0]
    change = {"is_admin": True, "license": "basic"}
    code, body = await call(h, "PATCH", f"/api/v1/users/{theirs['id']}", boss_token, change)
    assert code == 200, body
    code, body = await call(h, "POST", f"/api/v1/users/{theirs['id']}/suspend", boss_token)
    assert (code, body["registration_status"]) == (200, "suspended")
    await invite(h, "x@example.com")
    [ours] = [m for m in outbox(tmp_path) if m["Subject"] == "Join chimebot on chimebot"]
    accept = {"token": link_token(ours), "full_name": "X", "password": PASSWORD}
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
    assert code == 200, body
    code, me = await call(h, "GET", "/api/v1/me", body["token"])
    assert me["account_id"] == h.admin.account_id
    assert (me["is_admin"], me["license"], me["registration_status"]) == (False, "pro", "registered")
    assert me["personal_pin"] != theirs["personal_pin"]
    # The other account's admin can no longer change them.
    code, body = await call(h, "POST", f"/api/v1/users/{theirs['id']}/suspend", boss_token)
    assert code == 404, body


async def test_moving_to_another_account_leaves_the_old_accounts_rooms(app: Harness, tmp_path: Path) -> None:
    h = app
    mover, mover_token = await h.user("mover@example.com")
    await set_password(h, mover.id)
    room_id = await h.room("old-room")
    code, body = await call(h, "POST", f"/api/v1/rooms/{room_id}/members", body={"email": mover.email})
    assert code == 201, body
    other_id, _, boss_token = await other_account(h)
    code, body = await call(
        h, "POST", f"/api/v1/accounts/{other_id}/invitations", boss_token, {"emails": [mover.email]}
    )
    assert code == 201, body
    async with h.client.ws_connect("/api/v1/stream", headers=h.auth(mover_token)) as ws:
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "stream.ready"
        accept = {"token": link_token(mail_to(tmp_path, mover.email))}
        code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
        assert code == 200, body
        frame = json.loads((await ws.receive(timeout=5)).data)
    assert (frame["type"], frame["room_id"], frame["data"]["user_id"]) == ("member.left", room_id, mover.id)
    code, body = await call(h, "GET", "/api/v1/rooms", body["token"])
    assert (code, body["rooms"]) == (200, [])
    code, body = await call(h, "GET", f"/api/v1/rooms/{room_id}/members")
    assert [m["user_id"] for m in body["members"]] == [h.admin.id]
    # The account they left sees it in its audit log.
    code, body = await call(h, "GET", "/api/v1/audit?action=users.left_account")
    assert [(e["actor"], e["target"]) for e in body["entries"]] == [(mover.email, mover.email)]
    assert other_id in body["entries"][0]["detail"]


# -- 2. failed delivery ----------------------------------------------------------------------------------


class RefusingInbox:
    """An aiosmtpd handler that refuses recipients whose local part is "nobody" and keeps the rest."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.refuse = True

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Refuse "nobody@…" with 550 while ``refuse`` is set."""
        if self.refuse and address.startswith("nobody@"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the envelope."""
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[RefusingInbox, int]]:
    """A real SMTP server (aiosmtpd) on loopback; yields its handler and port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = RefusingInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def start_app(config: Config, aiohttp_client: Any, tmp_path: Path) -> Harness:
    """The app for a config, as the ``app`` fixture builds it."""
    clock = FakeClock()
    services = build_services(config, tmp_path, clock)
    client: TestClient = await aiohttp_client(app_for(services))
    admin = await services.accounts.operator()
    return Harness(client, services, clock, admin, await services.signin.create_token(admin, "test"))


@pytest.fixture
async def smtp_app(
    db_url: str, smtp_server: tuple[RefusingInbox, int], aiohttp_client: Any, tmp_path: Path
) -> AsyncIterator[tuple[Harness, RefusingInbox]]:
    """The app sending mail through ``smtp_server``, and the server's handler."""
    inbox, port = smtp_server
    config = make_config(db_url, smtp={"host": "127.0.0.1", "port": port, "security": "none"})
    yield await start_app(config, aiohttp_client, tmp_path), inbox


async def test_refused_delivery_marks_the_invitation_failed(
    smtp_app: tuple[Harness, RefusingInbox], tmp_path: Path
) -> None:
    h, inbox = smtp_app
    invited = await invite(h, "nobody@example.com", "somebody@example.com")
    failed, sent = invited["nobody@example.com"], invited["somebody@example.com"]
    assert failed["invitation_status"] == "failed"
    assert "550" in failed["failure_reason"] and "nobody@example.com" in failed["failure_reason"]
    assert failed["registration_status"] == "unregistered"
    assert (sent["invitation_status"], sent["failure_reason"]) == ("pending", None)
    assert [e.rcpt_tos for e in inbox.envelopes] == [["somebody@example.com"]]
    received = cast(
        EmailMessage,
        email.message_from_bytes(inbox.envelopes[0].original_content or b"", policy=policy.default),
    )
    link_token(received)
    assert not (tmp_path / "outbox").exists()  # with [smtp] host, nothing goes to the outbox

    # Stored, not only answered: the list shows it, and filters by it.
    assert [p["primary_email"] for p in await list_users(h, "invitation_status=failed")] == [
        "nobody@example.com"
    ]
    assert (await profile(h, failed["id"]))["failure_reason"] == failed["failure_reason"]

    # Inviting again once the server takes the address renews the invitation.
    inbox.refuse = False
    again = (await invite(h, "nobody@example.com"))["nobody@example.com"]
    assert (again["invitation_status"], again["failure_reason"]) == ("pending", None)
    assert [e.rcpt_tos for e in inbox.envelopes][-1] == ["nobody@example.com"]


# -- 3. the users list -----------------------------------------------------------------------------------


async def populate(h: Harness, tmp_path: Path) -> dict[str, str]:
    """An account with users in every state; return their ids by address.

    admin@localhost (no invitation), direct@example.com (made without invitation), a@other.example
    (invited from another account, accepted), inv1..inv3 (pending; inv2 Basic, inv3 suspended).
    """
    _, alice, _ = await other_account(h, admin_email="a@other.example")
    direct, _ = await h.user("direct@example.com")
    invited = await invite(h, "inv1@example.com", "inv2@example.com", "inv3@example.com", "a@other.example")
    token = link_token(mail_to(tmp_path, "a@other.example"))
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body={"token": token}, anonymous=True)
    assert code == 200, body
    code, body = await call(h, "POST", f"/api/v1/users/{invited['inv3@example.com']['id']}/suspend")
    assert code == 200, body
    code, body = await call(
        h, "PATCH", f"/api/v1/users/{invited['inv2@example.com']['id']}", body={"license": "basic"}
    )
    assert code == 200, body
    ids = {address: p["id"] for address, p in invited.items()}
    return ids | {"admin@localhost": h.admin.id, "direct@example.com": direct.id, "a@other.example": alice.id}


async def test_users_list_filters_and_pages(app: Harness, tmp_path: Path) -> None:
    h = app
    ids = await populate(h, tmp_path)
    everyone = await list_users(h)
    addresses = [p["primary_email"] for p in everyone]
    assert addresses == sorted(ids)  # ordered by address
    assert {p["primary_email"]: p["id"] for p in everyone} == ids
    states = {
        p["primary_email"]: (p["registration_status"], p["invitation_status"], p["license"]) for p in everyone
    }
    assert states == {
        "a@other.example": ("registered", "accepted", "pro"),
        "admin@localhost": ("registered", "accepted", "pro"),
        "direct@example.com": ("registered", "accepted", "pro"),
        "inv1@example.com": ("unregistered", "pending", "pro"),
        "inv2@example.com": ("unregistered", "pending", "basic"),
        "inv3@example.com": ("suspended", "pending", "pro"),
    }

    async def emails(query: str) -> list[str]:
        return [p["primary_email"] for p in await list_users(h, query)]

    assert await emails("registration_status=registered") == [
        "a@other.example",
        "admin@localhost",
        "direct@example.com",
    ]
    assert await emails("registration_status=unregistered") == ["inv1@example.com", "inv2@example.com"]
    assert await emails("registration_status=suspended") == ["inv3@example.com"]
    assert await emails("license=basic") == ["inv2@example.com"]
    assert await emails("license=pro") == [a for a in addresses if a != "inv2@example.com"]
    assert await emails("invitation_status=pending") == [
        "inv1@example.com",
        "inv2@example.com",
        "inv3@example.com",
    ]
    assert await emails("invitation_status=failed") == []
    assert await emails("registration_status=unregistered&license=pro") == ["inv1@example.com"]

    # Pages of every size cover each user exactly once, in order.
    for limit, query in ((1, ""), (2, ""), (4, ""), (1, "&registration_status=registered")):
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            path = f"/api/v1/accounts/{h.admin.account_id}/users?limit={limit}{query}"
            code, body = await call(h, "GET", path + (f"&cursor={cursor}" if cursor else ""))
            assert code == 200, body
            assert 1 <= len(body["users"]) <= limit
            seen += [p["primary_email"] for p in body["users"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        expected = await emails(query.lstrip("&"))
        assert seen == expected, (limit, query)
        assert pages == -(-len(expected) // limit)

    for query, word in (
        ("registration_status=deleted", "registration_status"),
        ("invitation_status=sent", "invitation_status"),
        ("license=gold", "license"),
        ("role=admin", "role"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
    ):
        code, body = await call(h, "GET", f"/api/v1/accounts/{h.admin.account_id}/users?{query}")
        assert (code, body["error"]) == (400, "invalid"), (query, body)
        assert word in body["message"], (query, body)


async def test_invitation_status_filter_matches_what_the_list_shows(app: Harness, tmp_path: Path) -> None:
    h = app
    await populate(h, tmp_path)
    everyone = await list_users(h)
    shown = [p["primary_email"] for p in everyone if p["invitation_status"] == "accepted"]
    assert shown == ["a@other.example", "admin@localhost", "direct@example.com"]
    filtered = [p["primary_email"] for p in await list_users(h, "invitation_status=accepted")]
    assert filtered == shown


# -- 4. Pro gating ---------------------------------------------------------------------------------------


async def test_basic_users_are_refused_pro_features(app: Harness) -> None:
    h = app
    pro, pro_token = await h.user("pro@example.com")
    basic, basic_token = await h.user("basic@example.com")
    scheduled = {"type": "scheduled", "start_at": "2026-02-01T10:00:00Z", "topic": "Planning"}

    # While still Pro, the future Basic user creates a meeting to try recording later.
    code, own = await call(h, "POST", "/api/v1/meetings", basic_token, {"type": "instant"})
    assert code == 201, own
    code, body = await call(h, "PATCH", f"/api/v1/users/{basic.id}", body={"license": "basic"})
    assert (code, body["license"]) == (200, "basic"), body
    meetings_before = (await snapshot(h))["meetings"]

    for request, feature in ((scheduled, "scheduling meetings"), ({"type": "instant"}, "instant meetings")):
        code, body = await call(h, "POST", "/api/v1/meetings", basic_token, request)
        assert (code, body["error"]) == (403, "pro_required"), body
        assert feature in body["message"].lower()
        assert "administrator" in body["message"] and "Pro" in body["message"]
    code, body = await call(h, "POST", f"/api/v1/meetings/{own['id']}/recording", basic_token)
    assert (code, body["error"]) == (403, "pro_required"), body
    assert "recording" in body["message"].lower() and "administrator" in body["message"]
    assert (await snapshot(h))["meetings"] == meetings_before  # refused, not half done

    code, body = await call(h, "POST", "/api/v1/meetings", pro_token, scheduled)
    assert code == 201, body
    assert (body["type"], body["start_at"], body["host_id"], body["topic"]) == (
        "scheduled",
        "2026-02-01T10:00:00.000Z",
        pro.id,
        "Planning",
    )
    assert DIGITS.fullmatch(body["id"]) and len(body["id"]) == 10
    assert body["join_url"] == f"{BASE_URL}/meetings/{body['id']}"
    code, body = await call(h, "POST", "/api/v1/meetings", pro_token, {"type": "instant"})
    assert (code, body["type"], body["start_at"]) == (201, "instant", T0), body

    # Pro again: the same user may record the meeting they host.
    code, body = await call(h, "PATCH", f"/api/v1/users/{basic.id}", body={"license": "pro"})
    assert code == 200, body
    code, body = await call(h, "POST", f"/api/v1/meetings/{own['id']}/recording", basic_token)
    assert (code, body) == (202, {"recording": True})

    code, body = await call(h, "PATCH", f"/api/v1/users/{basic.id}", body={"license": "enterprise"})
    assert (code, body["error"]) == (400, "invalid"), body


# -- 5. suspension, last admin, PIN, logout --------------------------------------------------------------


@BOTH_ENGINES
async def test_suspend_unsuspend_and_sign_in(app: Harness) -> None:
    h = app
    user, token = await h.user("worker@example.com")
    await set_password(h, user.id)

    code, body = await call(h, "POST", f"/api/v1/users/{user.id}/suspend")
    assert (code, body["registration_status"]) == (200, "suspended"), body
    code, body = await call(h, "GET", "/api/v1/me", token)
    assert (code, body["error"]) == (403, "suspended"), body
    code, body, _ = await sign_in(h, "worker@example.com", PASSWORD)
    assert (code, body["error"]) == (403, "suspended"), body
    assert "token" not in body
    tokens = [t["name"] for t in (await snapshot(h))["api_tokens"] if t["user_id"] == user.id]
    assert tokens == ["test"]  # the refused sign-in made none

    code, body = await call(h, "POST", f"/api/v1/users/{user.id}/unsuspend")
    assert (code, body["registration_status"]) == (200, "registered"), body
    code, body = await call(h, "GET", "/api/v1/me", token)
    assert (code, body["id"]) == (200, user.id), body
    code, body, _ = await sign_in(h, "worker@example.com", PASSWORD)
    assert code == 201, body
    code, me = await call(h, "GET", "/api/v1/me", body["token"])
    assert (code, me["id"]) == (200, user.id)


@BOTH_ENGINES
async def test_suspended_invited_person_cannot_accept(app: Harness, tmp_path: Path) -> None:
    h = app
    invited = (await invite(h, "pending@example.com"))["pending@example.com"]
    token = link_token(mail_to(tmp_path, "pending@example.com"))
    code, body = await call(h, "POST", f"/api/v1/users/{invited['id']}/suspend")
    assert (code, body["registration_status"]) == (200, "suspended"), body
    accept = {"token": token, "full_name": "Pending", "password": PASSWORD}
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
    assert (code, body["error"]) == (403, "suspended"), body
    # Unsuspended, someone who never registered is unregistered again, and the link still works.
    code, body = await call(h, "POST", f"/api/v1/users/{invited['id']}/unsuspend")
    assert (code, body["registration_status"], body["registered_on"]) == (200, "unregistered", None), body
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
    assert code == 200, body
    assert (await profile(h, invited["id"]))["registration_status"] == "registered"


@BOTH_ENGINES
async def test_last_admin_is_kept(app: Harness) -> None:
    h = app
    code, body = await call(h, "POST", f"/api/v1/users/{h.admin.id}/suspend")
    assert (code, body["error"]) == (409, "conflict"), body
    assert "yourself" in body["message"]
    code, body = await call(h, "PATCH", f"/api/v1/users/{h.admin.id}", body={"is_admin": False})
    assert (code, body["error"]) == (409, "conflict"), body
    assert "last administrator" in body["message"]
    me = await profile(h, h.admin.id)
    assert (me["is_admin"], me["registration_status"]) == (True, "registered")

    # With a second admin, either may step down; once one is suspended the other is the last again.
    second, second_token = await h.user("second@example.com", admin=True)
    code, body = await call(h, "POST", f"/api/v1/users/{h.admin.id}/suspend", second_token)
    assert (code, body["registration_status"]) == (200, "suspended"), body
    code, body = await call(h, "PATCH", f"/api/v1/users/{second.id}", second_token, {"is_admin": False})
    assert (code, body["error"]) == (409, "conflict"), body
    # The command line acts as the oldest active administrator, now the second one; and the service
    # itself (whoever calls it) will not suspend the last active administrator.
    assert (await h.services.accounts.operator()).id == second.id
    with pytest.raises(Conflict, match="last administrator"):
        await h.services.users.suspend(h.admin, second.id)
    assert (await profile(h, second.id, second_token))["registration_status"] == "registered"
    code, body = await call(h, "POST", f"/api/v1/users/{h.admin.id}/unsuspend", second_token)
    assert (code, body["registration_status"]) == (200, "registered"), body
    code, body = await call(h, "PATCH", f"/api/v1/users/{second.id}", second_token, {"is_admin": False})
    assert (code, body["is_admin"]) == (200, False), body


async def test_a_suspended_admin_can_be_demoted(app: Harness) -> None:
    h = app
    former, _ = await h.user("former@example.com", admin=True)
    code, body = await call(h, "POST", f"/api/v1/users/{former.id}/suspend")
    assert code == 200, body
    # h.admin stays an active administrator whatever happens to the suspended one.
    code, body = await call(h, "PATCH", f"/api/v1/users/{former.id}", body={"is_admin": False})
    assert (code, body.get("is_admin")) == (200, False), body


@BOTH_ENGINES
async def test_reset_pin_and_logout(app: Harness) -> None:
    h = app
    user, token = await h.user("worker@example.com")
    before = await profile(h, user.id)
    code, after = await call(h, "POST", f"/api/v1/users/{user.id}/reset-pin")
    assert code == 200, after
    assert re.fullmatch(r"[1-9]\d{5}", after["personal_pin"])
    assert after["personal_pin"] != before["personal_pin"]
    assert {k: v for k, v in after.items() if k != "personal_pin"} == {
        k: v for k, v in before.items() if k != "personal_pin"
    }
    code, me = await call(h, "GET", "/api/v1/me", token)
    assert me["personal_pin"] == after["personal_pin"]

    code, body = await call(h, "POST", "/api/v1/tokens", token, {"name": "laptop"})
    assert code == 201, body
    second = body["token"]
    link = await h.services.signin.signin_link(user)
    code, body = await call(h, "POST", f"/api/v1/users/{user.id}/logout")
    assert (code, body) == (200, {"revoked_tokens": 2})
    for old in (token, second):
        code, body = await call(h, "GET", "/api/v1/me", old)
        assert (code, body["error"]) == (401, "unauthorized"), body
    assert not await h.services.signin.signin_link_usable(link.rsplit("/", 1)[1])
    assert (await profile(h, user.id))["registration_status"] == "registered"  # signed out, not suspended
    code, body = await call(h, "GET", "/api/v1/me")
    assert code == 200  # the admin's own token is untouched


# -- 6. admin-only routes --------------------------------------------------------------------------------

# (method, path template, body, the admin's own status); {account_id} and {user_id} are filled in.
ADMIN_ROUTES: list[tuple[str, str, Any, int]] = [
    ("PATCH", "/api/v1/accounts/{account_id}", {"name": "Taken over", "settings": {"dial_out": False}}, 200),
    ("POST", "/api/v1/accounts/{account_id}/domains", {"domain": "example.net"}, 201),
    ("DELETE", "/api/v1/accounts/{account_id}/domains/{domain}", None, 204),
    ("POST", "/api/v1/accounts/{account_id}/invitations", {"emails": ["intruder@example.net"]}, 201),
    ("DELETE", "/api/v1/accounts/{account_id}/invitations/{user_id}", None, 204),
    ("GET", "/api/v1/accounts/{account_id}/users", None, 200),
    ("GET", "/api/v1/accounts/{account_id}/usage", None, 200),
    ("GET", "/api/v1/users/{user_id}", None, 200),
    ("PATCH", "/api/v1/users/{user_id}", {"license": "basic", "is_admin": True}, 200),
    ("POST", "/api/v1/users/{user_id}/suspend", None, 200),
    ("POST", "/api/v1/users/{user_id}/unsuspend", None, 200),
    ("POST", "/api/v1/users/{user_id}/reset-pin", None, 200),
    ("POST", "/api/v1/users/{user_id}/logout", None, 200),
    ("GET", "/api/v1/audit", None, 200),
    ("GET", "/api/v1/calendars", None, 200),
    ("GET", "/api/v1/calendars/occurrences", None, 200),
    ("GET", "/api/v1/bots/{name}/deliveries", None, 200),
    ("POST", "/api/v1/bots/{name}/deliveries/replay", {}, 200),
]


async def _noop(request: Any, admin: User) -> Any:
    """A handler for admin_only to wrap, to learn the code object of its wrappers."""


async def test_every_admin_only_route_is_checked_below(app: Harness) -> None:
    checked = admin_only(_noop).__code__  # every @admin_only handler is a closure over this code
    routes = {
        (r.method, r.resource.canonical)
        for r in app.client.server.app.router.routes()
        if r.method != "HEAD" and r.resource is not None and getattr(r.handler, "__code__", None) is checked
    }
    assert routes == {(method, path) for method, path, _, _ in ADMIN_ROUTES}


@BOTH_ENGINES
@pytest.mark.parametrize(
    ("method", "template", "payload", "ok_status"),
    ADMIN_ROUTES,
    ids=[f"{m} {t}" for m, t, _, _ in ADMIN_ROUTES],
)
async def test_admin_routes_refuse_everyone_else(
    app: Harness, tmp_path: Path, method: str, template: str, payload: Any, ok_status: int
) -> None:
    h, account_id = app, app.admin.account_id
    code, body = await call(h, "PATCH", f"/api/v1/accounts/{account_id}", body={"type": "enterprise"})
    assert code == 200, body
    await h.services.accounts.claim_domain(h.admin, "example.org", operator=True)  # as the CLI does
    # The administrator who finally does each thing has an address in the domain it claims.
    _, chief_token = await h.user("chief@example.net", admin=True)
    target, _ = await h.user("target@example.org")
    member, member_token = await h.user("member@example.org")
    former, former_token = await h.user("former@example.org", admin=True)
    code, body = await call(h, "POST", f"/api/v1/users/{former.id}/suspend")
    assert code == 200, body
    other_id, boss, boss_token = await other_account(h)
    # An open invitation to withdraw (made in the store: nothing is mailed, the outbox stays empty).
    invitee = User(
        str(uuid.uuid4()),
        account_id,
        "invitee@example.org",
        "invitee@example.org",
        False,
        "pro",
        "unregistered",
    )
    async with h.services.store.transaction() as conn:
        await qa.insert_user(conn, invitee, h.clock.now())
        await qa.put_invitation(
            conn,
            account_id=account_id,
            user_id=invitee.id,
            token_hash="0" * 64,
            invited_by=h.admin.id,
            at=h.clock.now(),
            expires_at=h.clock.now() + timedelta(days=1),
        )
    # unsuspend is only a change for a suspended user: aim it at the suspended admin.
    user_id = former.id if template.endswith("/unsuspend") else target.id
    if template.endswith("/invitations/{user_id}"):
        user_id = invitee.id
    path = template.format(account_id=account_id, user_id=user_id, domain="example.org", name="echo")
    await declare_bot(h, "echo")  # a bot, as the config would declare it
    account_scoped = "{account_id}" in template
    before = await snapshot(h)

    code, body = await call(h, method, path, member_token, payload)
    assert (code, body["error"]) == (403, "admin_required"), body
    code, body = await call(h, method, path, former_token, payload)
    assert (code, body["error"]) == (403, "suspended"), body
    code, body = await call(h, method, path, token=None, body=payload, anonymous=True)
    assert (code, body["error"]) == (401, "unauthorized"), body
    code, body = await call(h, method, path, boss_token, payload)
    if account_scoped:
        assert (code, body["error"]) == (403, "admin_required"), body
    elif template.startswith("/api/v1/users/"):
        assert (code, body["error"]) == (404, "not_found"), body
    elif template.startswith("/api/v1/bots"):
        # Bots are the server's; another account's administrator sees only its own rooms' deliveries.
        assert code == 200, body
        assert body in ({"deliveries": [], "next_before": None}, {"replayed": []}), body
    elif template.startswith("/api/v1/calendars"):
        # Calendars are the server's: any administrator sees their status; occurrences are filtered
        # to organizers of the caller's account (test_autocall checks the filter with occurrences).
        assert code == 200, body
    else:  # the audit log: the other admin reads their own account's, which holds nothing of ours
        assert code == 200, body
        assert {e["actor"] for e in body["entries"]} <= {"boss@other.example"}
    assert await snapshot(h) == before
    assert outbox(tmp_path) == []

    # A refused change is in the account's audit log, with who tried it on what.
    if method != "GET":
        code, log = await call(h, "GET", "/api/v1/audit?outcome=refused&actor=member@example.org")
        assert code == 200, log
        ids = {"account_id": account_id, "user_id": user_id, "domain": "example.org", "name": "echo"}
        target = " ".join(f"{k}={ids[k]}" for k in re.findall(r"{(\w+)}", template))
        assert [(e["actor_id"], e["status"], e["target"]) for e in log["entries"]] == [
            (member.id, 403, target)
        ]

    # The same request from the account's administrator works: the refusals were about the caller.
    code, body = await call(h, method, path, chief_token, payload)
    assert code == ok_status, body
    assert boss.account_id == other_id != account_id


# -- 7. password sign-in and its limits ------------------------------------------------------------------


async def test_password_sign_in_is_throttled_per_address(app: Harness) -> None:
    h = app
    user, _ = await h.user("worker@example.com")
    await set_password(h, user.id)
    code, body, _ = await sign_in(h, "Worker@Example.com", PASSWORD)
    assert code == 201, body
    assert body["user"]["id"] == user.id
    code, me = await call(h, "GET", "/api/v1/me", body["token"])
    assert (code, me["id"]) == (200, user.id)
    # Signing in successfully does not use up the limit: only failures count.
    code, body, _ = await sign_in(h, "worker@example.com", PASSWORD)
    assert code == 201, body
    for _ in range(5):  # the default signin_attempts_per_address
        code, body, _ = await sign_in(h, "worker@example.com", "wrong password!")
        assert (code, body["error"]) == (401, "wrong_password"), body
    code, body, retry_after = await sign_in(h, "worker@example.com", PASSWORD)
    assert (code, body["error"]) == (429, "rate_limited"), body
    assert retry_after == str(WINDOW_SECONDS // 5)  # one attempt comes back every 180 s
    # Other addresses of the account are not held back by this one.
    code, body, _ = await sign_in(h, "admin@localhost", "wrong password!")
    assert (code, body["error"]) == (401, "wrong_password"), body

    h.clock.advance(WINDOW_SECONDS)
    code, body, _ = await sign_in(h, "worker@example.com", PASSWORD)
    assert code == 201, body


@pytest.mark.parametrize("app_config", [{"accounts": {"signin_attempts_per_account": 3}}], indirect=True)
async def test_password_sign_in_is_throttled_per_account(app: Harness) -> None:
    h = app
    for n in range(1, 5):
        await h.user(f"u{n}@example.com")
    _, _, _ = await other_account(h, admin_email="boss@other.example")
    for n in range(1, 4):
        code, body, _ = await sign_in(h, f"u{n}@example.com", "wrong password!")
        assert (code, body["error"]) == (401, "wrong_password"), body
    # A fourth address, fresh for the per-address limit, finds the account's attempts used up.
    code, body, retry_after = await sign_in(h, "u4@example.com", "wrong password!")
    assert (code, body["error"]) == (429, "rate_limited"), body
    assert retry_after == str(WINDOW_SECONDS // 3)
    code, body, _ = await sign_in(h, "u1@example.com", "wrong password!")
    assert code == 429, body
    # Another account has its own budget.
    code, body, _ = await sign_in(h, "boss@other.example", "wrong password!")
    assert (code, body["error"]) == (401, "wrong_password"), body

    h.clock.advance(WINDOW_SECONDS)
    code, body, _ = await sign_in(h, "u4@example.com", "wrong password!")
    assert (code, body["error"]) == (401, "wrong_password"), body


# -- 8. enterprise accounts and claimed domains ----------------------------------------------------------


@BOTH_ENGINES
async def test_claimed_domain_lets_people_sign_up(app: Harness, tmp_path: Path) -> None:
    h = app
    account_id, _boss, tok = await other_account(h, "Org", "boss@example.org")
    domains = f"/api/v1/accounts/{account_id}/domains"
    code, body = await call(h, "POST", domains, tok, {"domain": "example.org"})
    assert (code, body["error"]) == (409, "conflict"), body  # a team account claims nothing
    assert "enterprise" in body["message"]

    code, account = await call(h, "PATCH", f"/api/v1/accounts/{account_id}", tok, {"type": "enterprise"})
    assert (code, account["type"]) == (200, "enterprise"), account
    assert account["settings"] == {"remote_control": True, "dial_out": True}
    # Only the domain of the administrator's own address; the operator claims others with the CLI.
    code, body = await call(h, "POST", domains, tok, {"domain": "gmail.com"})
    assert (code, body["error"]) == (403, "domain_not_yours"), body
    assert "chimebot admin claim-domain gmail.com --as boss@example.org" in body["message"]
    code, account = await call(h, "POST", domains, tok, {"domain": "Example.ORG."})
    assert code == 201, account
    assert account["domains"] == ["example.org"]
    code, account = await call(h, "GET", f"/api/v1/accounts/{account_id}", tok)
    assert (code, account["domains"]) == (200, ["example.org"])
    code, body = await call(h, "POST", domains, tok, {"domain": "not a domain"})
    assert (code, body["error"]) == (400, "invalid"), body

    # A second account (its admin also has an address there) cannot take the domain.
    rival_id, _, rival_token = await other_account(h, "Rival", "rival@example.org", "enterprise")
    code, body = await call(
        h, "POST", f"/api/v1/accounts/{rival_id}/domains", rival_token, {"domain": "example.org"}
    )
    assert (code, body["error"]) == (409, "conflict"), body
    assert "another account" in body["message"]
    code, rival = await call(h, "GET", f"/api/v1/accounts/{rival_id}", rival_token)
    assert (code, rival["domains"]) == (200, [])
    code, body = await call(h, "PATCH", f"/api/v1/accounts/{account_id}", tok, {"type": "team"})
    assert (code, body["error"]) == (409, "conflict"), body  # domains must be released first

    code, body = await call(h, "POST", "/api/v1/signup", body={"email": "Joiner@Example.org"}, anonymous=True)
    assert (code, body["status"]) == (202, "sent"), body
    token = link_token(mail_to(tmp_path, "joiner@example.org"))
    code, page = await call(h, "GET", f"/api/v1/accounts/{account_id}/users?limit=200", tok)
    [pending] = [p for p in page["users"] if p["primary_email"] == "joiner@example.org"]
    assert (pending["registration_status"], pending["invitation_status"]) == ("unregistered", "pending")
    accept = {"token": token, "full_name": "Joiner", "display_name": "J", "password": PASSWORD}
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
    assert code == 200, body
    code, me = await call(h, "GET", "/api/v1/me", body["token"])
    assert code == 200, me
    assert (me["account_id"], me["primary_email"], me["registration_status"]) == (
        account_id,
        "joiner@example.org",
        "registered",
    )
    assert (me["full_name"], me["display_name"], me["is_admin"]) == ("Joiner", "J", False)

    mails = len(outbox(tmp_path))
    for address in ("someone@unclaimed.example", "someone@sub.example.org"):
        code, body = await call(h, "POST", "/api/v1/signup", body={"email": address}, anonymous=True)
        assert (code, body["error"]) == (403, "signup_closed"), body
    assert len(outbox(tmp_path)) == mails
    async with h.services.store.read() as conn:
        assert await qa.user_by_email(conn, "someone@unclaimed.example") is None

    # Anyone may ask, so asking is limited: 5 requests per address (the sign-in limit) in the window.
    for _ in range(5):
        code, body = await call(
            h, "POST", "/api/v1/signup", body={"email": "eager@example.org"}, anonymous=True
        )
        assert code == 202, body
    code, body = await call(h, "POST", "/api/v1/signup", body={"email": "eager@example.org"}, anonymous=True)
    assert (code, body["error"]) == (429, "rate_limited"), body
    assert len([m for m in outbox(tmp_path) if m["To"] == "eager@example.org"]) == 5

    code, body = await call(h, "DELETE", f"{domains}/example.org", tok)
    assert code == 204, body
    code, body = await call(h, "POST", "/api/v1/signup", body={"email": "late@example.org"}, anonymous=True)
    assert (code, body["error"]) == (403, "signup_closed"), body
    code, body = await call(
        h, "POST", f"/api/v1/accounts/{rival_id}/domains", rival_token, {"domain": "example.org"}
    )
    assert (code, body["domains"]) == (201, ["example.org"]), body  # free again


# -- 9. the audit log ------------------------------------------------------------------------------------


@BOTH_ENGINES
async def test_audit_log_records_changes_and_refusals_without_secrets(app: Harness, tmp_path: Path) -> None:
    h, account_id = app, app.admin.account_id
    member, member_token = await h.user("member@example.com")
    await set_password(h, member.id)
    secrets = {h.token, member_token, PASSWORD}

    invited = await invite(h, "new@example.com", "form@example.com")
    new_token = link_token(mail_to(tmp_path, "new@example.com"))
    form_token = link_token(mail_to(tmp_path, "form@example.com"))
    secrets |= {new_token, form_token}
    accept = {"token": new_token, "full_name": "New One", "password": PASSWORD}
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
    assert code == 200, body
    secrets.add(body["token"])
    code, body = await call(h, "POST", "/api/v1/invitations/accept", body=accept, anonymous=True)
    assert code == 404, body  # used: refused, and the token is not written down
    # The HTML form carries the token in the path.
    resp = await h.client.post(
        f"/invitations/{form_token}", data={"full_name": "Form User", "password": PASSWORD}
    )
    assert resp.status == 200, await resp.text()
    secrets |= set(re.findall(r"<code>([A-Za-z0-9_-]{20,})</code>", await resp.text()))
    code, body, _ = await sign_in(h, "member@example.com", PASSWORD)
    assert code == 201, body
    secrets.add(body["token"])
    code, body, _ = await sign_in(h, "member@example.com", "not the password " + PASSWORD[::-1])
    assert code == 401, body
    secrets.add("not the password " + PASSWORD[::-1])

    code, body = await call(
        h, "POST", f"/api/v1/users/{invited['form@example.com']['id']}/suspend", member_token
    )
    assert (code, body["error"]) == (403, "admin_required"), body
    code, body = await call(h, "POST", f"/api/v1/users/{invited['form@example.com']['id']}/suspend")
    assert code == 200, body
    code, body = await call(h, "PATCH", f"/api/v1/users/{member.id}", body={"license": "basic"})
    assert code == 200, body
    code, body = await call(h, "POST", "/api/v1/tokens", member_token, {"name": "ci"})
    assert code == 201, body
    secrets.add(body["token"])

    code, log = await call(h, "GET", "/api/v1/audit")
    assert code == 200, log
    entries = log["entries"]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)  # newest first
    suspend_target = f"user_id={invited['form@example.com']['id']}"
    by_action = {(e["action"], e["outcome"], e["actor"]): e for e in entries}
    ok = by_action[("users.suspend", "ok", "admin@localhost")]
    assert (ok["target"], ok["address"], ok["status"], ok["source"]) == (
        suspend_target,
        "127.0.0.1",
        200,
        "api",
    )
    assert ok["actor_id"] == h.admin.id
    refused = by_action[("users.suspend", "refused", "member@example.com")]
    assert (refused["target"], refused["status"], refused["actor_id"]) == (suspend_target, 403, member.id)
    assert refused["detail"].startswith("admin_required: ")
    invitation = by_action[("invitations.create", "ok", "admin@localhost")]
    assert (invitation["target"], invitation["status"]) == (
        f"account_id={account_id} new@example.com form@example.com",
        201,
    )
    assert by_action[("users.update", "ok", "admin@localhost")]["target"] == f"user_id={member.id}"
    assert by_action[("invitations.accept", "ok", "new@example.com")]["status"] == 200
    assert by_action[("invitations.accept", "ok", "form@example.com")]["target"] is None  # not the token
    assert by_action[("sessions.sign_in", "ok", "member@example.com")]["status"] == 201
    assert by_action[("tokens.create", "ok", "member@example.com")]["status"] == 201

    code, body = await call(h, "GET", "/api/v1/audit?action=users.suspend")
    assert code == 200, body
    assert [(e["outcome"], e["actor"]) for e in body["entries"]] == [
        ("ok", "admin@localhost"),
        ("refused", "member@example.com"),
    ]
    code, body = await call(h, "GET", "/api/v1/audit?outcome=refused")
    assert code == 200, body
    assert body["entries"] and {e["outcome"] for e in body["entries"]} == {"refused"}
    code, body = await call(h, "GET", "/api/v1/audit?outcome=refused&actor=member@example.com")
    assert [e["action"] for e in body["entries"]] == ["users.suspend"]
    code, body = await call(h, "GET", "/api/v1/audit?limit=2")
    assert (code, len(body["entries"])) == (200, 2) and body["next_cursor"], body
    code, body = await call(h, "GET", f"/api/v1/audit?limit=2&cursor={body['next_cursor']}")
    assert [e["id"] for e in body["entries"]] == [e["id"] for e in entries[2:4]]
    code, body = await call(h, "GET", "/api/v1/audit?password=x")
    assert (code, body["error"]) == (400, "invalid"), body

    # No credential reaches the table, in any column.
    rows = await audit_rows(h)
    assert len(rows) >= len(entries)
    # The refused sign-in is recorded, with the address tried and without the password.
    [failed] = [r for r in rows if r["action"] == "sessions.sign_in" and r["outcome"] == "refused"]
    assert (failed["target"], failed["status"], failed["address"]) == ("member@example.com", 401, "127.0.0.1")
    for row in rows:
        for column, value in row.items():
            for secret in secrets:
                assert secret not in str(value), (column, row["action"])


async def test_refused_sign_ins_are_listed_for_the_account(app: Harness) -> None:
    h = app
    await h.user("member@example.com")
    code, body, _ = await sign_in(h, "member@example.com", "not the password")
    assert code == 401, body
    code, body, _ = await sign_in(h, "stranger@nowhere.example", "not the password")
    assert code == 401, body
    _, _, boss_token = await other_account(h)
    code, body = await call(h, "GET", "/api/v1/audit?action=sessions.sign_in&outcome=refused")
    assert code == 200, body
    # Filed under the account of the address tried; an address nobody has is in no account's log.
    assert [(e["actor"], e["target"], e["status"]) for e in body["entries"]] == [
        ("anonymous", "member@example.com", 401)
    ]
    code, body = await call(h, "GET", "/api/v1/audit?action=sessions.sign_in", boss_token)
    assert (code, body["entries"]) == (200, []), body


async def test_refusals_of_a_suspended_user_name_them(app: Harness) -> None:
    h = app
    former, former_token = await h.user("former@example.com", admin=True)
    target, _ = await h.user("target@example.com")
    code, body = await call(h, "POST", f"/api/v1/users/{former.id}/suspend")
    assert code == 200, body
    code, body = await call(h, "POST", f"/api/v1/users/{target.id}/suspend", former_token)
    assert (code, body["error"]) == (403, "suspended"), body
    code, body = await call(h, "GET", "/api/v1/audit?outcome=refused")
    assert code == 200, body
    assert [(e["actor"], e["action"], e["target"]) for e in body["entries"]] == [
        ("former@example.com", "users.suspend", f"user_id={target.id}")
    ]


async def test_times_before_year_one_in_utc_are_refused_not_a_server_error(app: Harness) -> None:
    h = app
    early = "0001-01-01T00:00:00%2B01:00"  # valid ISO 8601, but before datetime.min once in UTC
    code, body = await call(h, "GET", f"/api/v1/audit?since={early}")
    assert (code, body["error"]) == (400, "invalid"), body
    meeting = {"type": "scheduled", "start_at": "0001-01-01T00:00:00+01:00"}
    code, body = await call(h, "POST", "/api/v1/meetings", body=meeting)
    assert (code, body["error"]) == (400, "invalid"), body
    assert "start_at" in body["message"]


async def test_a_new_password_signs_the_user_out_everywhere_else(app: Harness) -> None:
    h = app
    user, here = await h.user("changer@example.com")
    await set_password(h, user.id)
    elsewhere = await h.services.signin.create_token(user, "laptop")
    new = {"password": "a brand new passphrase", "current_password": "not it"}
    code, body = await call(h, "PATCH", "/api/v1/me", here, new)
    assert (code, body["error"]) == (403, "wrong_password"), body
    code, body = await call(h, "GET", "/api/v1/me", elsewhere)
    assert code == 200, body  # a refused change revokes nothing

    code, body = await call(h, "PATCH", "/api/v1/me", here, new | {"current_password": PASSWORD})
    assert code == 200, body
    code, body = await call(h, "GET", "/api/v1/me", elsewhere)
    assert (code, body["error"]) == (401, "unauthorized"), body
    code, body = await call(h, "GET", "/api/v1/me", here)
    assert (code, body["primary_email"]) == (200, "changer@example.com")
    code, body, _ = await sign_in(h, "changer@example.com", "a brand new passphrase")
    assert code == 201, body
    code, body, _ = await sign_in(h, "changer@example.com", PASSWORD)
    assert (code, body["error"]) == (401, "wrong_password"), body


async def test_withdrawing_an_invitation(app: Harness, tmp_path: Path) -> None:
    h, account_id = app, app.admin.account_id
    _, alice, _ = await other_account(h, admin_email="a@other.example")
    invited = await invite(h, "typo@example.com", "a@other.example")
    links = {a: link_token(mail_to(tmp_path, a)) for a in ("typo@example.com", "a@other.example")}
    for address, person in invited.items():
        code, body = await call(h, "DELETE", f"/api/v1/accounts/{account_id}/invitations/{person['id']}")
        assert code == 204, (address, body)
        code, body = await call(h, "DELETE", f"/api/v1/accounts/{account_id}/invitations/{person['id']}")
        assert (code, body["error"]) == (404, "not_found"), body  # nothing open any more
        assert (await h.client.get(f"/invitations/{links[address]}")).status == 404
    assert {p["primary_email"] for p in await list_users(h)} == {"admin@localhost"}
    async with h.services.store.read() as conn:
        assert await qa.user_by_email(conn, "typo@example.com") is None  # never registered: gone
        kept = await qa.user_by_email(conn, "a@other.example")
    assert kept is not None and (kept.account_id, kept.is_admin) == (alice.account_id, True)  # untouched
