"""The admin's first hour, end to end with the CLI and the REST API against a running server:
create an account, invite two people (one who already has a user, one new), both accept, give one
of them Basic, and see that their Pro attempts are refused while the other's succeed."""

from __future__ import annotations

import email
import json
import re
import subprocess
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.test_cli import as_json, chimebot, server  # noqa: F401  (server is a fixture)

PASSWORD = "correct horse battery"


def invitation_token(outbox: Path, to: str) -> str:
    """The token of the newest invitation link mailed to an address (the outbox holds .eml files)."""
    for path in sorted(outbox.glob("*.eml"), reverse=True):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"] == to:
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            found = re.search(r"/invitations/([A-Za-z0-9_-]+)", body.get_content())
            assert found, body.get_content()
            return found.group(1)
    raise AssertionError(f"no invitation to {to} in {sorted(p.name for p in outbox.iterdir())}")


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    """One REST call: (status, JSON body)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_seed_walkthrough_with_the_cli_and_the_rest_api(
    server: tuple[str, Path, str, subprocess.Popen[str]],  # noqa: F811
) -> None:
    base, cwd, _, proc = server
    api = f"{base}/api/v1"
    outbox = cwd / "chimebot-data" / "outbox"
    async with aiohttp.ClientSession() as http:
        # Alice already has a user: she was invited to the first account and chose her name there.
        as_json(chimebot("admin", "invite", "alice@example.com", "--json", cwd=cwd))
        status, body = await call(
            http,
            "POST",
            f"{api}/invitations/accept",
            json={
                "token": invitation_token(outbox, "alice@example.com"),
                "full_name": "Alice Liddell",
                "display_name": "Alice",
                "password": PASSWORD,
            },
        )
        assert status == 200, body

        # Create the account; its administrator signs in with the one-time link the CLI prints.
        created = as_json(
            chimebot("admin", "create-account", "Acme", "--admin", "boss@acme.example", "--json", cwd=cwd)
        )
        account_id = created["account"]["id"]
        # The CLI does not know the server's --port; [server] public_url would make the link exact.
        link = base + urlsplit(created["signin_link"]).path
        async with http.post(link, headers={"Accept": "application/json"}) as resp:
            assert resp.status == 200
            boss = (await resp.json())["token"]

        # Invite two people through the API.
        status, body = await call(
            http,
            "POST",
            f"{api}/accounts/{account_id}/invitations",
            boss,
            json={"emails": ["alice@example.com", "Bob@New.Example"]},
        )
        assert status == 201, body
        invited = {u["primary_email"]: u for u in body["users"]}
        assert invited["bob@new.example"]["invitation_status"] == "pending"
        assert invited["bob@new.example"]["registration_status"] == "unregistered"
        assert invited["bob@new.example"]["full_name"] == "bob@new.example"  # defaults to the address
        assert invited["bob@new.example"]["display_name"] == "bob@new.example"
        assert invited["alice@example.com"]["invitation_status"] == "pending"
        # Alice's user in the other account stays private until she accepts.
        assert invited["alice@example.com"]["registration_status"] == "unregistered"
        assert invited["alice@example.com"]["full_name"] == "alice@example.com"

        # Both accept: Alice keeps her name and password; Bob sets his.
        status, accepted = await call(
            http,
            "POST",
            f"{api}/invitations/accept",
            json={"token": invitation_token(outbox, "alice@example.com")},
        )
        assert status == 200, accepted
        alice = accepted["token"]
        # Bob opens his link first: the page asks a new person for a name and a password.
        async with http.get(f"{base}/invitations/{invitation_token(outbox, 'bob@new.example')}") as resp:
            page = await resp.text()
            assert resp.status == 200 and "Join Acme" in page and "password" in page, page
        status, accepted = await call(
            http,
            "POST",
            f"{api}/invitations/accept",
            json={
                "token": invitation_token(outbox, "bob@new.example"),
                "full_name": "Bob Builder",
                "password": PASSWORD,
            },
        )
        assert status == 200, accepted
        bob = accepted["token"]

        status, body = await call(http, "GET", f"{api}/accounts/{account_id}/users", boss)
        assert status == 200
        users = {u["primary_email"]: u for u in body["users"]}
        assert set(users) == {"boss@acme.example", "alice@example.com", "bob@new.example"}
        for address, full_name, display_name in (
            ("alice@example.com", "Alice Liddell", "Alice"),
            ("bob@new.example", "Bob Builder", "Bob Builder"),
        ):
            user = users[address]
            assert (user["invitation_status"], user["registration_status"]) == ("accepted", "registered")
            assert (user["full_name"], user["display_name"]) == (full_name, display_name)
            assert user["account_id"] == account_id
            assert user["invited_on"] and user["registered_on"]
            assert re.fullmatch(r"[1-9]\d{9}", user["personal_meeting_id"])
            assert re.fullmatch(r"\d{6}", user["personal_pin"])
            assert user["license"] == "pro"  # the default, as Amazon Chime did

        # Basic for Bob, with the CLI acting as Acme's administrator.
        changed = as_json(
            chimebot(
                "admin", "license", "bob@new.example", "basic", "--as", "boss@acme.example", "--json", cwd=cwd
            )
        )
        assert changed["license"] == "basic"

        # Bob's Pro attempts are refused with the reason; Alice's succeed.
        for meeting in ({"type": "instant"}, {"type": "scheduled", "start_at": "2026-12-01T10:00:00Z"}):
            status, body = await call(http, "POST", f"{api}/meetings", bob, json=meeting)
            assert status == 403, body
            assert body["error"] == "pro_required"
            assert "Pro license" in body["message"] and "administrator" in body["message"]
            feature = "Instant meetings" if meeting["type"] == "instant" else "Scheduling meetings"
            assert body["message"].startswith(feature)
            status, body = await call(http, "POST", f"{api}/meetings", alice, json=meeting)
            assert status == 201, body
            assert re.fullmatch(r"[1-9]\d{9}", body["id"])
        status, body = await call(http, "POST", f"{api}/meetings/{body['id']}/recording", alice)
        assert status == 202, body

        # Who did what is in the audit log, from both the API and the CLI.
        entries = as_json(chimebot("admin", "audit", "--as", "boss@acme.example", "--json", cwd=cwd))
        seen = {(e["source"], e["action"], e["outcome"]) for e in entries}
        assert ("cli", "admin.license", "ok") in seen
        assert ("api", "invitations.create", "ok") in seen
        assert ("api", "meetings.create", "refused") in seen
        status, body = await call(http, "GET", f"{api}/audit?action=admin.license", boss)
        assert status == 200 and [e["target"] for e in body["entries"]] == ["bob@new.example"]
        status, body = await call(http, "GET", f"{api}/audit?action=invitations.create", boss)
        assert [e["target"] for e in body["entries"]] == [
            f"account_id={account_id} alice@example.com Bob@New.Example"
        ]

        # Bob renames himself and changes his password, then signs in with it.
        new_password = "a much longer passphrase"
        status, body = await call(http, "PATCH", f"{api}/me", bob, json={"password": new_password})
        assert (status, body["error"]) == (403, "wrong_password")
        status, body = await call(
            http,
            "PATCH",
            f"{api}/me",
            bob,
            json={"display_name": "Bob", "password": new_password, "current_password": PASSWORD},
        )
        assert status == 200 and (body["display_name"], body["full_name"]) == ("Bob", "Bob Builder"), body
        status, body = await call(
            http, "POST", f"{api}/sessions", json={"email": "bob@new.example", "password": PASSWORD}
        )
        assert (status, body["error"]) == (401, "wrong_password")
        # Acme's administrator sees the refused attempt on one of Acme's users.
        status, seen = await call(http, "GET", f"{api}/audit?action=sessions.sign_in&outcome=refused", boss)
        assert [(e["actor"], e["target"], e["status"]) for e in seen["entries"]] == [
            ("anonymous", "bob@new.example", 401)
        ]
        status, body = await call(
            http, "POST", f"{api}/sessions", json={"email": "BOB@new.example", "password": new_password}
        )
        assert status == 201 and body["user"]["display_name"] == "Bob"
        status, me = await call(http, "GET", f"{api}/me", body["token"])
        assert status == 200 and me["license"] == "basic" and me["primary_email"] == "bob@new.example"

        # The report sees Alice's recording as an active Pro day; Bob has none.
        report = as_json(chimebot("admin", "usage", "--as", "boss@acme.example", "--json", cwd=cwd))
        assert [(u["email"], u["active_day_count"], u["charge"]) for u in report["users"]] == [
            ("alice@example.com", 1, "3.00")
        ]

        everything = as_json(
            chimebot("admin", "audit", "--all-accounts", "--limit", "500", "--json", cwd=cwd)
        )

    # No credential reached the server's output (access log included) or the audit log.
    invitations = [invitation_token(outbox, a) for a in ("alice@example.com", "bob@new.example")]
    secrets = [boss, alice, bob, PASSWORD, new_password, link.rsplit("/", 1)[1], *invitations]
    proc.terminate()
    output = proc.communicate(timeout=15)[0]
    assert "GET /invitations/<redacted> 200" in output  # the access log is in there, without the token
    audit_text = json.dumps(everything)
    assert [s for s in secrets if s in output] == []
    assert [s for s in secrets if s in audit_text] == []
