"""``/hooks/{token}`` and ``/api/webhooks/{id}/{token}``: every dialect, template, auth mode and
idempotency rule of SPEC §3, over real HTTP to the running app with a real database."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import select
from yarl import URL

from chimebot.store import schema
from tests.conftest import Harness
from tests.template_cases import PRODUCERS, body_of, expected_of, headers_of, template_cases
from webhooks import discord, signing, slack, teams
from webhooks.message import DialectError

FIXTURES = Path(__file__).parent / "fixtures"
FAST = {"webhooks": {"rate_per_second": 1000.0, "burst": 1000}}  # tests that post many messages


async def history(app: Harness, room_id: str) -> list[dict[str, Any]]:
    """The room's messages, newest first."""
    resp = await app.client.get(f"/api/v1/rooms/{room_id}/messages", headers=app.auth())
    assert resp.status == 200
    return (await resp.json())["messages"]


async def configure(app: Harness, hook: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """Change a webhook's settings through the API; return the answer."""
    resp = await app.client.patch(f"/api/v1/webhooks/{hook['id']}", json=settings, headers=app.auth())
    assert resp.status == 200, await resp.text()
    return await resp.json()


def fixtures(dialect: str) -> list[Path]:
    """The documented bodies of a dialect, one test each."""
    return sorted((FIXTURES / dialect).glob("*.json"))


# -- Slack and Mattermost ---------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_slack_json_form_and_multipart_bodies_post_the_same_message(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id, "Deploys")
    assert hook["hooks_url"].endswith(f"/hooks/{hook['token']}")
    body = {"text": "Deployed <https://ci.example.com/42|build 42> to prod", "username": "ci-bot"}
    path = f"/hooks/{hook['token']}"
    resp = await app.client.post(path, json=body)
    assert resp.status == 200
    assert resp.content_type == "text/plain" and await resp.text() == "ok"
    app.clock.advance(2)  # the webhook's rate: 1 per second
    form = urlencode({"payload": json.dumps(body)})
    resp = await app.client.post(
        path, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (resp.status, await resp.text()) == (200, "ok")
    app.clock.advance(2)
    multipart = aiohttp.FormData()
    multipart.add_field("payload", json.dumps(body))
    resp = await app.client.post(path, data=multipart)
    assert (resp.status, await resp.text()) == (200, "ok")
    messages = await history(app, room_id)
    assert len(messages) == 3
    for message in messages:
        assert message["content"] == "Deployed [build 42](https://ci.example.com/42) to prod"
        assert message["format"] == "markdown"
        assert message["sender"] == {"kind": "webhook", "id": hook["id"], "name": "ci-bot (Webhook)"}


@pytest.mark.parametrize("app_config", [FAST], indirect=True)
@pytest.mark.parametrize("dialect", ["slack", "teams", "discord"])
async def test_every_documented_body_is_stored_as_its_dialect_renders_it(app: Harness, dialect: str) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    render = {"slack": slack.render, "teams": teams.render, "discord": discord.render}[dialect]
    bodies = fixtures(dialect)
    assert bodies, f"no fixtures for {dialect}"
    for path in bodies:
        resp = await app.client.post(
            f"/hooks/{hook['token']}", data=path.read_bytes(), headers={"Content-Type": "application/json"}
        )
        try:
            expected = render(json.loads(path.read_bytes()))
        except DialectError as refused:  # documented bodies a dialect refuses are refused the same way
            assert resp.status == refused.status, path.name
            continue
        assert resp.status in (200, 204), (path.name, await resp.text())
        [message, *_] = await history(app, room_id)
        assert message["content"] == expected.text(), path.name
        if expected.username:
            assert message["sender"]["name"] == f"{expected.username} (Webhook)"
    status = await (await app.client.get(f"/api/v1/webhooks/{hook['id']}", headers=app.auth())).json()
    assert status["last_dialect"] == dialect


async def test_slack_broadcasts_become_chime_mentions(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    resp = await app.client.post(f"/hooks/{hook['token']}", json={"text": "<!channel> deploy at 5, <!here>"})
    assert resp.status == 200
    [message] = await history(app, room_id)
    assert message["content"] == "@All deploy at 5, @Present"
    assert message["mentions"]["all"] is True and message["mentions"]["present"] is True


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_payload"),
        (b"{}", 400, "invalid_payload"),  # no dialect's shape
        (b'{"text": ""}', 400, "no_text"),
        (b'{"text": 5}', 400, "invalid_payload"),
        (
            json.dumps({"text": "x", "attachments": [{"text": "a"}] * 101}).encode(),
            400,
            "too_many_attachments",
        ),
        (json.dumps({"text": "x" * 5000}).encode(), 413, "msg_too_long"),
    ],
)
async def test_slack_errors_carry_slacks_names(app: Harness, body: bytes, status: int, code: str) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    resp = await app.client.post(
        f"/hooks/{hook['token']}", data=body, headers={"Content-Type": "application/json"}
    )
    assert (resp.status, await resp.text()) == (status, code)
    assert resp.content_type == "text/plain"
    assert await history(app, room_id) == []


async def test_unknown_token_rate_limit_and_body_limit_answer_like_slack(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    resp = await app.client.post("/hooks/not-a-real-token-at-all", json={"text": "x"})
    assert (resp.status, await resp.text()) == (404, "no_service")
    resp = await app.client.post("/hooks/bad%20chars", json={"text": "x"})
    assert (resp.status, await resp.text()) == (404, "no_service")
    assert (await app.client.post(f"/hooks/{hook['token']}", json={"text": "one"})).status == 200
    resp = await app.client.post(f"/hooks/{hook['token']}", json={"text": "two"})
    assert (resp.status, await resp.text()) == (429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    app.clock.advance(2)
    resp = await app.client.post(f"/hooks/{hook['token']}", data=b"x" * 70_000)
    assert resp.status == 413
    # The same webhook answers on Chime's URL too.
    app.clock.advance(2)
    resp = await app.client.post(URL(hook["url"]).path_qs, json={"Content": "via chime"})
    assert resp.status == 200
    assert [m["content"] for m in await history(app, room_id)] == ["via chime", "one"]


@pytest.mark.parametrize("app_config", [FAST], indirect=True)
async def test_channel_is_honoured_only_when_the_webhook_is_unlocked(app: Harness) -> None:
    home = await app.room("home")
    other = await app.room("other")
    hook = await app.webhook(home)
    body = {"text": "hello", "channel": "#other"}
    assert (await app.client.post(f"/hooks/{hook['token']}", json=body)).status == 200
    assert [m["content"] for m in await history(app, home)] == ["hello"]  # locked: channel ignored
    await configure(app, hook, locked=False)
    assert (await app.client.post(f"/hooks/{hook['token']}", json=body)).status == 200
    assert [m["content"] for m in await history(app, other)] == ["hello"]
    resp = await app.client.post(f"/hooks/{hook['token']}", json={"text": "x", "channel": "nowhere"})
    assert (resp.status, await resp.text()) == (404, "channel_not_found")


# -- Teams and Discord ------------------------------------------------------------------------------


async def test_teams_cards_are_answered_with_1(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    card = json.loads((FIXTURES / "teams" / "connector_card.json").read_text())
    resp = await app.client.post(f"/hooks/{hook['token']}", json=card)
    assert (resp.status, await resp.text()) == (200, "1")
    [message] = await history(app, room_id)
    assert message["content"] == teams.render(card).text()
    assert message["content"].startswith(f"**{card['summary']}**") or card["summary"] in message["content"]


@pytest.mark.parametrize("app_config", [FAST], indirect=True)
async def test_discord_url_answers_204_or_the_message_with_wait(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id, "Alerts")
    url = URL(hook["discord_url"]).path
    assert url == f"/api/webhooks/{hook['id']}/{hook['token']}"
    resp = await app.client.post(url, json={"content": "plain"})
    assert resp.status == 204
    resp = await app.client.post(f"{url}?wait=true", json={"content": "waited", "username": "Grafana"})
    assert resp.status == 200
    answer = await resp.json()
    [message, _] = await history(app, room_id)
    assert answer["id"] == message["id"] and answer["content"] == "waited"
    assert answer["channel_id"] == room_id and answer["webhook_id"] == hook["id"]
    assert answer["author"]["username"] == "Grafana (Webhook)" and answer["author"]["bot"] is True
    # Discord's multipart form, with payload_json and a file that a chat message cannot carry.
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps({"content": "with a file"}))
    form.add_field("files[0]", b"log line", filename="build.log", content_type="text/plain")
    assert (await app.client.post(url, data=form)).status == 204
    [message, *_] = await history(app, room_id)
    assert message["content"] == "with a file\n\n_(not shown: files)_"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/webhooks/{id}/wrong-token", {"content": "x"}, 401, 50027),
        ("/api/webhooks/no-such-hook/{token}", {"content": "x"}, 404, 10015),
        ("/api/webhooks/{id}/{token}", {"content": ""}, 400, 50006),
        ("/api/webhooks/{id}/{token}", {"embeds": "nope"}, 400, 50035),
    ],
)
async def test_discord_errors_are_discords(
    app: Harness, path: str, body: Any, status: int, code: int
) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    resp = await app.client.post(path.format(id=hook["id"], token=hook["token"]), json=body)
    assert resp.status == status
    answer = await resp.json()
    assert answer["code"] == code and answer["message"]


# -- templates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("producer", "case"), template_cases(id_separator="-"))
async def test_builtin_templates_turn_real_payloads_into_the_expected_message(
    app: Harness, producer: str, case: str
) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    await configure(app, hook, template=producer)
    resp = await app.client.post(
        f"/hooks/{hook['token']}",
        data=body_of(producer, case),
        headers={"Content-Type": "application/json", **headers_of(producer, case)},
    )
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    expected = expected_of(producer, case)
    messages = await history(app, room_id)
    if not expected:
        assert answer["MessageId"] is None and messages == []
        return
    [message] = messages
    assert answer == {"MessageId": message["id"], "RoomId": room_id}
    assert message["content"] == expected


ENDLESS = {"templates": [{"name": "endless", "path": str(FIXTURES / "templates" / "endless.md.j2")}]}


@pytest.mark.parametrize("app_config", [ENDLESS], indirect=True)
async def test_a_failing_template_is_reported_to_admins_not_the_sender(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    await configure(app, hook, template="endless")
    started = asyncio.get_running_loop().time()
    resp = await app.client.post(f"/hooks/{hook['token']}", json={"text": "never shown"})
    assert asyncio.get_running_loop().time() - started < 5  # stopped at its time limit (0.5 s)
    assert resp.status == 422
    answer = await resp.json()
    assert answer["error"] == "template_failed" and "time limit" not in answer["message"]
    status = await (await app.client.get(f"/api/v1/webhooks/{hook['id']}", headers=app.auth())).json()
    assert status["last_error"] == "template 'endless': the template ran past its time limit"
    assert status["last_error_at"] is not None
    async with app.services.store.read() as conn:
        rows = (
            (await conn.execute(select(schema.events).where(schema.events.c.type == "webhook.failed")))
            .mappings()
            .all()
        )
    assert [(r["room_id"], r["user_id"]) for r in rows] == [(app.admin.id, app.admin.id)]
    assert json.loads(rows[0]["payload"])["webhook_id"] == hook["id"]
    assert await history(app, room_id) == []


# -- authentication and idempotency -----------------------------------------------------------------


@pytest.mark.parametrize("app_config", [FAST], indirect=True)
async def test_bearer_webhooks_take_the_token_only_in_the_header(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    shown = await configure(app, hook, auth="bearer")
    assert shown["hooks_url"].endswith(f"/hooks/{hook['id']}")
    bearer = {"Authorization": f"Bearer {hook['token']}"}
    resp = await app.client.post(f"/hooks/{hook['id']}", json={"text": "by header"}, headers=bearer)
    assert (resp.status, await resp.text()) == (200, "ok")
    resp = await app.client.post(f"/incomingwebhooks/{hook['id']}", json={"Content": "chime"}, headers=bearer)
    assert resp.status == 200
    resp = await app.client.post(f"/hooks/{hook['token']}", json={"text": "token in URL"})
    assert (resp.status, await resp.text()) == (403, "invalid_token")
    resp = await app.client.post(f"/hooks/{hook['id']}", json={"text": "no token"})
    assert (resp.status, await resp.text()) == (403, "invalid_token")
    wrong = {"Authorization": "Bearer not-the-token"}
    resp = await app.client.post(f"/hooks/{hook['id']}", json={"text": "wrong"}, headers=wrong)
    assert (resp.status, await resp.text()) == (403, "invalid_token")
    assert [m["content"] for m in await history(app, room_id)] == ["chime", "by header"]


@pytest.mark.parametrize("app_config", [FAST], indirect=True)
async def test_standard_webhooks_signatures_are_required_and_replays_post_once(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    shown = await configure(app, hook, auth="standard-webhooks", signing_secret="generate")
    secret = shown["signing_secret"]
    assert secret.startswith("whsec_")
    again = await (await app.client.get(f"/api/v1/webhooks/{hook['id']}", headers=app.auth())).json()
    assert "signing_secret" not in again  # shown once
    body = json.dumps({"text": "signed"}).encode()
    headers = signing.standard_headers(secret, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", body, app.clock.now())
    path = f"/hooks/{hook['id']}"
    for _ in range(2):  # the sender retries with the same webhook-id: one message
        resp = await app.client.post(path, data=body, headers={**headers, "Content-Type": "application/json"})
        assert (resp.status, await resp.text()) == (200, "ok")
    assert [m["content"] for m in await history(app, room_id)] == ["signed"]
    tampered = {**headers, signing.WEBHOOK_ID: "msg_other"}
    resp = await app.client.post(path, data=body, headers=tampered)
    assert (resp.status, await resp.text()) == (403, "invalid_signature")
    old = signing.standard_headers(secret, "msg_old", body, app.clock.now() - timedelta(minutes=6))
    resp = await app.client.post(path, data=body, headers=old)
    assert (resp.status, await resp.text()) == (403, "invalid_signature")
    resp = await app.client.post(path, data=body)
    assert (resp.status, await resp.text()) == (403, "invalid_signature")


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("app_config", [FAST], indirect=True)
async def test_an_idempotency_key_seen_before_returns_the_first_result(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    key = {"Idempotency-Key": "deploy-42"}
    chime_url = URL(hook["url"]).path_qs
    first = await app.client.post(chime_url, json={"Content": "once"}, headers=key)
    second = await app.client.post(chime_url, json={"Content": "once"}, headers=key)
    assert first.status == second.status == 200
    assert await first.json() == await second.json()
    # Concurrent resends: the writer records the key with the message, so only one commits.
    keyed = {"Idempotency-Key": "burst-1"}
    answers = await asyncio.gather(
        *(app.client.post(f"/hooks/{hook['token']}", json={"text": "burst"}, headers=keyed) for _ in range(5))
    )
    assert [a.status for a in answers] == [200] * 5
    assert [m["content"] for m in await history(app, room_id)] == ["burst", "once"]
    # A template that drops the event remembers the key too.
    await configure(app, hook, template="github")
    dropped = {"Idempotency-Key": "gh-1", "X-GitHub-Event": "zen"}
    for _ in range(2):
        resp = await app.client.post(
            f"/hooks/{hook['token']}", json={"zen": "Keep it simple"}, headers=dropped
        )
        assert resp.status == 200
    resp = await app.client.post(
        f"/hooks/{hook['token']}", json={"text": "x"}, headers={"Idempotency-Key": "k" * 256}
    )
    assert (resp.status, (await resp.json())["error"]) == (400, "invalid")  # a template webhook: JSON


async def test_idempotency_keys_are_forgotten_after_receipt_hours(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    key = {"Idempotency-Key": "nightly-report"}
    assert (
        await app.client.post(f"/hooks/{hook['token']}", json={"text": "day 1"}, headers=key)
    ).status == 200
    app.clock.advance(23 * 3600)
    assert await app.services.incoming.receiver.prune() == 0
    assert (
        await app.client.post(f"/hooks/{hook['token']}", json={"text": "again"}, headers=key)
    ).status == 200
    app.clock.advance(2 * 3600)  # 25 h after the first: past the default 24
    assert await app.services.incoming.receiver.prune() == 1
    assert (
        await app.client.post(f"/hooks/{hook['token']}", json={"text": "day 2"}, headers=key)
    ).status == 200
    assert [m["content"] for m in await history(app, room_id)] == ["day 2", "day 1"]


# -- management -------------------------------------------------------------------------------------


async def test_settings_are_checked_and_shown(app: Harness) -> None:
    room_id = await app.room()
    resp = await app.client.post(
        f"/api/v1/rooms/{room_id}/webhooks",
        json={"name": "Alerts", "template": "alertmanager", "dialect": "auto"},
        headers=app.auth(),
    )
    assert resp.status == 201
    hook = await resp.json()
    assert (hook["template"], hook["dialect"], hook["locked"], hook["auth"]) == (
        "alertmanager",
        "auto",
        True,
        "token",
    )
    for bad, code in (
        ({"dialect": "irc"}, "invalid"),
        ({"template": "nope"}, "unknown_template"),
        ({"auth": "basic"}, "invalid"),
        ({"locked": "yes"}, "invalid"),
        ({"signing_secret": "plain"}, "invalid"),
        ({"colour": "red"}, "invalid"),
    ):
        resp = await app.client.patch(f"/api/v1/webhooks/{hook['id']}", json=bad, headers=app.auth())
        assert resp.status == 400, bad
        assert (await resp.json())["error"] == code
    templates = await (await app.client.get("/api/v1/webhooks/templates", headers=app.auth())).json()
    assert templates["templates"][:7] == list(PRODUCERS)
    _, token = await app.user("basic@example.com")
    resp = await app.client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"locked": False}, headers=app.auth(token)
    )
    assert resp.status in (403, 404)


SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks specification's example
DECLARED = {
    "env": {"DEPLOY_TOKEN": "declared-token-0123456789", "DEPLOY_SIGNING": SIGNING_SECRET},
    "templates": [{"name": "deploys", "path": str(FIXTURES / "templates" / "deploys.md.j2")}],
    "rooms": [
        {
            "name": "Deployments",
            "webhooks": [
                {
                    "name": "Deploys",
                    "id": "deploys",
                    "token_env": "DEPLOY_TOKEN",
                    "template": "deploys",
                    "auth": "bearer",
                },
                {
                    "name": "Signed",
                    "id": "signed",
                    "token_env": "DEPLOY_TOKEN",
                    "auth": "standard-webhooks",
                    "signing_secret_env": "DEPLOY_SIGNING",
                    "dialect": "slack",
                    "locked": False,
                },
            ],
        }
    ],
}


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("app_config", [DECLARED], indirect=True)
async def test_webhooks_declared_in_the_config_file_take_its_settings(app: Harness) -> None:
    rooms = await (await app.client.get("/api/v1/rooms", headers=app.auth())).json()
    [room] = [r for r in rooms["rooms"] if r["name"] == "Deployments"]
    bearer = {"Authorization": "Bearer declared-token-0123456789"}
    resp = await app.client.post(
        "/hooks/deploys", json={"service": "api", "version": "1.4.2"}, headers=bearer
    )
    assert resp.status == 200, await resp.text()
    body = json.dumps({"text": "signed and sent"}).encode()
    signed = signing.standard_headers(SIGNING_SECRET, "msg_1", body, app.clock.now())
    resp = await app.client.post("/hooks/signed", data=body, headers=signed)
    assert (resp.status, await resp.text()) == (200, "ok")
    assert [m["content"] for m in await history(app, room["id"])] == [
        "signed and sent",
        "Deployed **api** 1.4.2",
    ]
    shown = await (await app.client.get("/api/v1/webhooks/signed", headers=app.auth())).json()
    assert (shown["auth"], shown["dialect"], shown["locked"], shown["from_config"]) == (
        "standard-webhooks",
        "slack",
        False,
        True,
    )
    assert shown["hooks_url"].endswith("/hooks/signed") and "signing_secret" not in shown
    resp = await app.client.patch("/api/v1/webhooks/deploys", json={"template": None}, headers=app.auth())
    assert (resp.status, (await resp.json())["error"]) == (409, "declared_in_config")
