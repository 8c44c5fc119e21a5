"""The Chime incoming-webhook endpoint, every answer of SPEC §3, over real HTTP to the running app."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import uuid
from pathlib import Path

import pytest

from chimebot.config import Config, parse_config
from chimebot.services import build_services
from tests.conftest import Harness, make_config

FIXTURES = Path(__file__).parent / "fixtures" / "chime"


def hook_url(hook: dict, token: str | None = None) -> str:
    """The path a Chime client posts to."""
    return f"/incomingwebhooks/{hook['id']}?token={hook['token'] if token is None else token}"


async def history(app: Harness, room_id: str) -> list[dict]:
    """The room's messages, newest first."""
    resp = await app.client.get(f"/api/v1/rooms/{room_id}/messages", headers=app.auth())
    assert resp.status == 200
    return (await resp.json())["messages"]


async def test_aws_documentation_example_is_posted_as_the_webhook(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id, "Build Bot")
    body = (FIXTURES / "aws_docs_example.json").read_bytes()
    resp = await app.client.post(hook_url(hook), data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 200
    answer = await resp.json()
    assert set(answer) == {"MessageId", "RoomId"}
    assert answer["RoomId"] == room_id
    [message] = await history(app, room_id)
    assert message["id"] == answer["MessageId"]
    assert message["content"] == json.loads(body)["Content"]
    assert message["format"] == "text"
    assert message["sender"] == {"kind": "webhook", "id": hook["id"], "name": "Build Bot (Webhook)"}
    assert message["mentions"]["all"] is True and message["mentions"]["present"] is True


@pytest.mark.parametrize(("fixture", "fmt"), [("markdown.json", "markdown"), ("code.json", "code")])
async def test_prefixes_choose_the_format_and_are_removed(app: Harness, fixture: str, fmt: str) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    content = json.loads((FIXTURES / fixture).read_text())["Content"]
    resp = await app.client.post(hook_url(hook), json={"Content": content})
    assert resp.status == 200
    [message] = await history(app, room_id)
    assert message["format"] == fmt
    assert message["content"] == content.split(" ", 1)[1]


async def test_content_type_is_not_required(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    resp = await app.client.post(hook_url(hook), data=b'{"Content": "plain curl -d"}')
    assert resp.status == 200


async def test_wrong_or_missing_token_is_403_and_posts_nothing(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    for path in (hook_url(hook, token="not-the-token"), f"/incomingwebhooks/{hook['id']}"):
        resp = await app.client.post(path, json={"Content": "x"})
        assert resp.status == 403
        assert (await resp.json())["error"] == "invalid_token"
    assert await history(app, room_id) == []


async def test_unknown_regenerated_and_deleted_webhooks_are_404(app: Harness) -> None:
    room_id = await app.room()
    resp = await app.client.post(f"/incomingwebhooks/{uuid.uuid4()}?token=abc", json={"Content": "x"})
    assert resp.status == 404

    hook = await app.webhook(room_id)
    regen = await app.client.post(f"/api/v1/webhooks/{hook['id']}/regenerate", headers=app.auth())
    assert regen.status == 200
    new = await regen.json()
    assert new["id"] != hook["id"] and new["token"] != hook["token"]
    assert (await app.client.post(hook_url(hook), json={"Content": "old"})).status == 404
    assert (await app.client.post(hook_url(new), json={"Content": "new"})).status == 200

    deleted = await app.client.delete(f"/api/v1/webhooks/{new['id']}", headers=app.auth())
    assert deleted.status == 204
    app.clock.advance(2)
    assert (await app.client.post(hook_url(new), json={"Content": "gone"})).status == 404
    assert [m["content"] for m in await history(app, room_id)] == ["new"]


async def test_over_one_request_per_second_is_429_until_a_second_passes(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    assert (await app.client.post(hook_url(hook), json={"Content": "1"})).status == 200
    limited = await app.client.post(hook_url(hook), json={"Content": "2"})
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "1"
    assert (await limited.json())["error"] == "rate_limited"
    app.clock.advance(0.5)
    assert (await app.client.post(hook_url(hook), json={"Content": "3"})).status == 429
    app.clock.advance(0.5)
    assert (await app.client.post(hook_url(hook), json={"Content": "4"})).status == 200
    # The limit is per webhook: another webhook of the same room is not held back.
    other = await app.webhook(room_id, "Other")
    assert (await app.client.post(hook_url(other), json={"Content": "5"})).status == 200
    assert [m["content"] for m in await history(app, room_id)] == ["5", "4", "1"]


@pytest.mark.parametrize("app_config", [{"webhooks": {"rate_per_second": 5, "burst": 3}}], indirect=True)
async def test_rate_limit_is_configurable(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    statuses = [(await app.client.post(hook_url(hook), json={"Content": str(i)})).status for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    app.clock.advance(0.2)  # 5 per second: one token back after 200 ms
    assert (await app.client.post(hook_url(hook), json={"Content": "again"})).status == 200


async def test_content_over_4096_characters_is_413(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    resp = await app.client.post(hook_url(hook), json={"Content": "é" * 4097})
    assert resp.status == 413
    assert "4096" in (await resp.json())["message"]
    app.clock.advance(1)
    assert (await app.client.post(hook_url(hook), json={"Content": "é" * 4096})).status == 200
    app.clock.advance(1)
    huge = b'{"Content": "' + b"a" * 70_000 + b'"}'
    assert (await app.client.post(hook_url(hook), data=huge)).status == 413
    assert len(await history(app, room_id)) == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"Content=hello", "invalid_json"),
        (b'{"Content": "unterminated', "invalid_json"),
        (b"\xff\xfe not utf-8", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"content": "lower-case key"}', "missing_content"),
        (b'["Content", "x"]', "missing_content"),
        (b'{"Content": 42}', "invalid_content"),
        (b'{"Content": "   "}', "empty_content"),
    ],
)
async def test_bodies_chime_refused_are_400(app: Harness, body: bytes, error: str) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    resp = await app.client.post(hook_url(hook), data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    payload = await resp.json()
    assert payload["error"] == error and payload["message"]
    assert await history(app, room_id) == []


async def test_all_and_present_are_refused_in_rooms_over_50_members(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    for i in range(49):  # the admin is the 1st member: 50 in all
        user, _ = await app.user(f"member{i}@example.com")
        resp = await app.client.post(
            f"/api/v1/rooms/{room_id}/members", json={"email": user.email}, headers=app.auth()
        )
        assert resp.status == 201
    assert (await app.client.post(hook_url(hook), json={"Content": "@All at 50"})).status == 200
    user, _ = await app.user("member50@example.com")
    await app.client.post(f"/api/v1/rooms/{room_id}/members", json={"email": user.email}, headers=app.auth())
    for text in ("@All deploy", "ping @Present"):
        app.clock.advance(1)
        resp = await app.client.post(hook_url(hook), json={"Content": text})
        assert resp.status == 400, text
        assert "50" in (await resp.json())["message"]
    app.clock.advance(1)
    assert (await app.client.post(hook_url(hook), json={"Content": "no callout"})).status == 200


async def test_a_room_has_at_most_ten_webhooks(app: Harness) -> None:
    room_id = await app.room()
    for i in range(10):
        await app.webhook(room_id, f"hook {i}")
    resp = await app.client.post(
        f"/api/v1/rooms/{room_id}/webhooks", json={"name": "eleventh"}, headers=app.auth()
    )
    assert resp.status == 409
    assert (await resp.json())["error"] == "webhook_limit"


async def test_only_room_administrators_manage_webhooks_and_tokens_stay_hidden(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    member, token = await app.user("member@example.com")
    await app.client.post(
        f"/api/v1/rooms/{room_id}/members", json={"email": member.email}, headers=app.auth()
    )
    headers = app.auth(token)
    resp = await app.client.post(f"/api/v1/rooms/{room_id}/webhooks", json={"name": "x"}, headers=headers)
    assert resp.status == 403
    assert (await app.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=headers)).status == 403
    listed = await app.client.get(f"/api/v1/rooms/{room_id}/webhooks", headers=app.auth())
    [shown] = (await listed.json())["webhooks"]
    assert shown["id"] == hook["id"] and "token" not in shown and hook["token"] not in json.dumps(shown)


def _declared_config(db_url: str) -> Config:
    env = {"DEPLOY_HOOK_TOKEN": "kept-from-chime-0123456789"}
    data = {
        "database": {"url": db_url},
        "rooms": [
            {
                "name": "Deployments",
                "webhooks": [{"name": "CI", "id": "chime-id-1", "token_env": "DEPLOY_HOOK_TOKEN"}],
            }
        ],
    }
    return parse_config(data, source="<test>", env=env)


@pytest.mark.parametrize("app_config", [None], indirect=True)
async def test_webhooks_declared_in_config_keep_their_chime_url(app: Harness) -> None:
    resp = await app.client.post(
        "/incomingwebhooks/chime-id-1?token=kept-from-chime-0123456789", json={"Content": "migrated"}
    )
    assert resp.status == 200, await resp.text()
    rooms = await (await app.client.get("/api/v1/rooms", headers=app.auth())).json()
    assert [r["name"] for r in rooms["rooms"]] == ["Deployments"]
    regen = await app.client.post("/api/v1/webhooks/chime-id-1/regenerate", headers=app.auth())
    assert regen.status == 409
    assert (await regen.json())["error"] == "declared_in_config"

    # An admin command run without the config file must not take that as "nothing is declared".
    data_dir = Path(app.services.config.database.url.removeprefix("sqlite:///")).parent
    args = ["--data-dir", str(data_dir), "token", "create", "admin@localhost", "--json"]
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chimebot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, stderr.decode()
    app.clock.advance(1)
    again = await app.client.post(
        "/incomingwebhooks/chime-id-1?token=kept-from-chime-0123456789", json={"Content": "still here"}
    )
    assert again.status == 200


@pytest.fixture
def app_config(request: pytest.FixtureRequest, db_url: str) -> Config:
    """Per-test config: a dict of section overrides, None for the declared-room config, or the default."""
    param = getattr(request, "param", {})
    if param is None:
        return _declared_config(db_url)
    return make_config(db_url, **param)


async def test_a_webhook_changed_by_another_node_stops_working_at_once(app: Harness, tmp_path: Path) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    assert (await app.client.post(hook_url(hook), json={"Content": "cached now"})).status == 200
    other = build_services(app.services.config, tmp_path, app.clock)  # a second node, same database
    await other.start()
    try:
        new, _ = await other.incoming.regenerate(app.admin, hook["id"])
        newer = await other.incoming.create(app.admin, room_id, "Second")
    finally:
        await other.close()
    app.clock.advance(1)
    # This node still has the old webhook cached; the commit-time check refuses it all the same.
    assert (await app.client.post(hook_url(hook), json={"Content": "stale"})).status == 404
    assert (
        await app.client.post(hook_url({"id": new.id, "token": newer[1]}), json={"Content": "x"})
    ).status == 403
    assert [m["content"] for m in await history(app, room_id)] == ["cached now"]


async def test_a_wrong_url_is_404_or_403_whatever_the_body(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    huge = b'{"Content": "' + b"a" * 70_000 + b'"}'
    assert (await app.client.post(hook_url(hook, token="wrong"), data=huge)).status == 403
    assert (await app.client.post("/incomingwebhooks/nope?token=x", data=huge)).status == 404
    assert (await app.client.post(hook_url(hook), data=huge)).status == 413


async def test_a_webhook_dropped_from_the_config_is_deleted_at_the_next_start(
    app: Harness, tmp_path: Path
) -> None:
    env = {"KEEP": "keep-token-0123456789", "DROP": "drop-token-0123456789"}

    def config(*names: str) -> Config:
        hooks = [{"name": n, "id": f"{n}-id", "token_env": n.upper()} for n in names]
        return make_config(
            app.services.config.database.url, env=env, rooms=[{"name": "Ops", "webhooks": hooks}]
        )

    async def start(cfg: Config) -> None:
        node = build_services(cfg, tmp_path, app.clock)  # a restart with another config file
        await node.start()
        try:
            await node.bootstrap()
            await node.apply_config()
        finally:
            await node.close()

    await start(config("keep", "drop"))
    assert (
        await app.client.post("/incomingwebhooks/drop-id?token=drop-token-0123456789", json={"Content": "x"})
    ).status == 200
    await start(config("keep"))
    app.clock.advance(1)
    assert (
        await app.client.post("/incomingwebhooks/drop-id?token=drop-token-0123456789", json={"Content": "x"})
    ).status == 404
    assert (
        await app.client.post("/incomingwebhooks/keep-id?token=keep-token-0123456789", json={"Content": "x"})
    ).status == 200
    await start(config("keep"))  # nothing changed: nothing to record

    # Each change a config file made is in the audit log, as the config's doing; no token is.
    query = "source=config&action=config.webhooks.apply"
    resp = await app.client.get(f"/api/v1/audit?{query}", headers=app.auth())
    entries = (await resp.json())["entries"]
    assert [(e["actor"], e["action"], e["detail"]) for e in reversed(entries)] == [
        ("config", "config.webhooks.apply", "webhook 'keep' (keep-id) in room 'Ops' created"),
        ("config", "config.webhooks.apply", "webhook 'drop' (drop-id) in room 'Ops' created"),
        ("config", "config.webhooks.apply", "webhook 'drop' (drop-id) deleted: no longer declared"),
    ]
    assert "token-0123456789" not in json.dumps(entries)


async def test_a_post_waits_for_another_process_holding_the_write_lock(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    path = app.services.config.database.url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)  # another process, e.g. a backup or the CLI
    other.execute("BEGIN IMMEDIATE")
    try:
        posting = asyncio.create_task(app.client.post(hook_url(hook), json={"Content": "after the lock"}))
        done, _ = await asyncio.wait({posting}, timeout=0.5)
        assert not done  # it waits for the lock, in the writer's thread...
        resp = await app.client.get("/healthz")  # ...while the event loop keeps serving
        assert resp.status == 200
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await posting).status == 200
    assert [m["content"] for m in await history(app, room_id)] == ["after the lock"]
