"""Bots end to end: a real bot endpoint on loopback, the running server, and the durable outbox.

The bot endpoint verifies every request as AWS's documentation describes ("Authenticate chatbot
requests"): Base64(HMAC-SHA256(secret, Chime-Request-Timestamp + "|" + body)) must equal the
Chime-Signature header. It is written here from that description, not with chimebot's code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from chimebot.app import app_for
from chimebot.clock import FakeClock
from chimebot.config import Config, load_config
from chimebot.services import build_services
from chimebot.store.schema import bot_deliveries, events
from tests.conftest import Harness, free_port, make_config

BOTH_ENGINES = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
SECRET = "s3cret-of-the-deploy-bot-0123456789"
ADDRESS = "deploy-chimebot@example.com"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@dataclass
class BotEndpoint:
    """A bot's HTTPS endpoint stand-in: verifies signatures, echoes challenges, records events."""

    secret: str = SECRET
    port: int = field(default_factory=free_port)
    received: list[dict[str, Any]] = field(default_factory=list)  # verified events, in arrival order
    forged: int = 0  # requests whose signature did not verify
    challenges: int = 0
    # Per event type, the answers to give, first to last (then 200 with an empty object).
    script: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    echo_challenge: bool = True
    _runner: web.AppRunner | None = None

    def verify(self, request: web.Request, body: bytes) -> bool:
        """The check AWS documents: HMAC-SHA256 over "<timestamp>|<body>", Base64, compared."""
        timestamp = request.headers.get("Chime-Request-Timestamp")
        signature = request.headers.get("Chime-Signature")
        if not timestamp or not signature:
            return False
        mac = hmac.new(self.secret.encode(), timestamp.encode() + b"|" + body, hashlib.sha256)
        return hmac.compare_digest(base64.b64encode(mac.digest()).decode(), signature)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.verify(request, body):
            self.forged += 1
            return web.json_response({"error": "bad signature"}, status=401)
        event = json.loads(body)
        if event["EventType"] == "HTTPSEndpointVerification":
            self.challenges += 1
            answer = event["Challenge"] if self.echo_challenge else "something else"
            return web.json_response({"Challenge": answer})
        self.received.append(event)
        queued = self.script.get(event["EventType"])
        status, answer = queued.pop(0) if queued else (200, {})
        return web.json_response(answer, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e["EventType"] == kind]


def bot_config(db_url: str, endpoint: BotEndpoint, **overrides: Any) -> Config:
    """A config with the deploy bot at ``endpoint`` (loopback allowed) and any bot key overridden."""
    decl = {
        "name": "deploy",
        "display_name": "Deploy Bot",
        "endpoint": endpoint.url,
        "secret_env": "DEPLOY_BOT_SECRET",
        "events": ["Invite", "Mention", "Remove", "Message"],
    } | overrides
    return make_config(
        db_url,
        env={"DEPLOY_BOT_SECRET": endpoint.secret},
        meetings={"address_domain": "example.com"},
        delivery={"allow_private_endpoints": True, "poll_seconds": 0.05},
        bots=[decl],
    )


Starter = Callable[[Config], Any]


@pytest.fixture
async def start(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Starter]:
    """Start the server on a config (again, for a restart); each gets a fake clock from 2026-01-05."""

    async def starter(config: Config, clock: FakeClock | None = None) -> Harness:
        clock = clock or FakeClock()
        services = build_services(config, tmp_path, clock)
        client = await aiohttp_client(app_for(services))
        admin = await services.accounts.operator()
        return Harness(client, services, clock, admin, await services.signin.create_token(admin, "test"))

    yield starter


@pytest.fixture
async def endpoint() -> AsyncIterator[BotEndpoint]:
    bot = BotEndpoint()
    await bot.start()
    yield bot
    await bot.stop()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for the server's background work (routing and sending run as soon as a message commits)."""
    deadline = asyncio.get_running_loop().time() + 15
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def settled(check: Callable[[], Any], what: str) -> None:
    """Wait until an async check of the database holds."""
    deadline = asyncio.get_running_loop().time() + 15
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def api(
    h: Harness, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    resp = await h.client.request(method, path, json=body, headers=h.auth(token))
    data = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, data


async def messages(h: Harness, room_id: str) -> list[dict[str, Any]]:
    status, body = await api(h, "GET", f"/api/v1/rooms/{room_id}/messages?limit=200")
    assert status == 200, body
    return list(reversed(body["messages"]))


def local(url: str) -> str:
    """The path and query of a URL the server made (its public URL is not where the test client is)."""
    return "/" + url.split("/", 3)[3]


@BOTH_ENGINES
async def test_invite_mention_reply_remove_with_a_real_endpoint(
    db_url: str, start: Starter, endpoint: BotEndpoint
) -> None:
    h = await start(bot_config(db_url, endpoint))
    status, bots = await api(h, "GET", "/api/v1/bots")
    assert status == 200
    (bot,) = bots["bots"]
    assert (bot["address"], bot["status"], bot["verify_error"]) == (ADDRESS, "ready", None)
    assert endpoint.challenges == 1

    room = await h.room("releases")
    status, member = await api(h, "POST", f"/api/v1/rooms/{room}/members", {"email": ADDRESS.upper()})
    assert status == 201, member
    assert (member["user_id"], member["kind"], member["display_name"]) == ("bot:deploy", "bot", "Deploy Bot")
    await until(lambda: endpoint.of_type("Invite"), "the Invite")
    (invite,) = endpoint.of_type("Invite")
    assert invite["Sender"] == {"SenderId": h.admin.email, "SenderIdType": "EmailId"}
    assert invite["Discussion"] == {"DiscussionId": room, "DiscussionType": "Room"}
    assert invite["InboundHttpsEndpoint"]["EndpointType"] == "Persistent"
    assert TIMESTAMP.fullmatch(invite["EventTimestamp"])
    persistent = local(invite["InboundHttpsEndpoint"]["Url"])

    # The persistent URL posts as the bot, and answers as Chime's webhooks did.
    resp = await h.client.post(persistent, json={"Content": "Deploy Bot is here"})
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["RoomId"] == room and answer["MessageId"]

    # A mention by display name, any case: the bot gets Mention, then Message, and answers both ways.
    endpoint.script["Mention"] = [(200, {"Content": "/md **deploying** main"})]
    status, posted = await api(
        h, "POST", f"/api/v1/rooms/{room}/messages", {"content": "@deploy bot ship it"}
    )
    assert status == 201, posted
    await until(lambda: endpoint.of_type("Message"), "the Message event")
    mention = endpoint.of_type("Mention")[-1]
    assert mention["Message"] == "@deploy bot ship it"
    assert mention["InboundHttpsEndpoint"]["EndpointType"] == "ShortLived"
    assert [e["EventType"] for e in endpoint.received] == ["Invite", "Mention", "Message"]
    short = local(mention["InboundHttpsEndpoint"]["Url"])
    resp = await h.client.post(short, json={"Content": "and a follow-up"})
    assert resp.status == 429  # a bot posts into a room at the rate of a webhook (1/s)
    h.clock.advance(1)
    resp = await h.client.post(short, json={"Content": "and a follow-up"})
    assert resp.status == 200, await resp.text()
    await until(lambda: len(h.services.bots.worker._sending) == 0, "the sends to finish")

    texts = [
        (m["sender"]["kind"], m["sender"]["name"], m["content"], m["format"]) for m in await messages(h, room)
    ]
    assert ("bot", "Deploy Bot", "Deploy Bot is here", "text") in texts
    assert ("bot", "Deploy Bot", "**deploying** main", "markdown") in texts
    assert ("bot", "Deploy Bot", "and a follow-up", "text") in texts
    # The bot's own messages are not sent back to it.
    assert [e["EventType"] for e in endpoint.received] == ["Invite", "Mention", "Message"]

    # Two minutes later the short-lived URL is gone; the persistent one still works.
    h.clock.advance(121)
    resp = await h.client.post(short, json={"Content": "too late"})
    assert resp.status == 404
    assert "expired" in (await resp.json())["message"]
    resp = await h.client.post(persistent + "x", json={"Content": "forged"})
    assert resp.status == 404

    status, _ = await api(h, "DELETE", f"/api/v1/rooms/{room}/members/bot:deploy")
    assert status == 204
    await until(lambda: endpoint.of_type("Remove"), "the Remove")
    (remove,) = endpoint.of_type("Remove")
    assert remove["Sender"]["SenderId"] == h.admin.email and "InboundHttpsEndpoint" not in remove
    resp = await h.client.post(persistent, json={"Content": "still here?"})
    assert resp.status == 404
    assert endpoint.forged == 0

    status, page = await api(h, "GET", "/api/v1/bots/deploy/deliveries")
    assert status == 200, page
    assert [(d["event_type"], d["status"], d["attempts"], d["last_status"]) for d in page["deliveries"]] == [
        ("Remove", "delivered", 1, 200),
        ("Message", "delivered", 1, 200),
        ("Mention", "delivered", 1, 200),
        ("Invite", "delivered", 1, 200),
    ]


@BOTH_ENGINES
async def test_a_restart_while_the_endpoint_is_down_loses_and_repeats_nothing(
    db_url: str, start: Starter, endpoint: BotEndpoint
) -> None:
    config = bot_config(db_url, endpoint, events=["Invite", "Message"])
    first = await start(config)
    room = await first.room("ops")
    status, body = await api(first, "POST", f"/api/v1/rooms/{room}/members", {"email": ADDRESS})
    assert status == 201, body
    await until(lambda: endpoint.of_type("Invite"), "the Invite")
    await endpoint.stop()  # the bot goes away: connections are refused

    sent = []
    for i in range(6):
        status, body = await api(first, "POST", f"/api/v1/rooms/{room}/messages", {"content": f"step {i}"})
        assert status == 201, body
        sent.append(body["id"])

    async def attempted() -> int:
        async with first.services.store.read() as conn:
            rows = (await conn.execute(select(bot_deliveries.c.attempts))).scalars().all()
        return sum(rows)

    # The first message's delivery fails and waits for its retry; the others wait behind it (order).
    deadline = asyncio.get_running_loop().time() + 15
    while await attempted() < 2:  # the Invite's attempt, and at least one failed one
        assert asyncio.get_running_loop().time() < deadline, "no failed attempt was recorded"
        await asyncio.sleep(0.05)
    await first.client.close()  # the server stops, with deliveries queued

    async with first.services.store.read() as conn:
        states = (
            (await conn.execute(select(bot_deliveries.c.status).order_by(bot_deliveries.c.id)))
            .scalars()
            .all()
        )
    # Messages the router had not reached yet are still only in the event log: they are routed after
    # the restart, from the router's stored position.
    assert states[0] == "delivered" and set(states[1:]) == {"pending"} and 2 <= len(states) <= 7

    await endpoint.start()  # the bot is back
    clock = FakeClock()
    clock.advance(3600)  # later: every retry is due
    second = await start(config, clock)
    await until(lambda: len(endpoint.of_type("Message")) >= 6, "the six messages")
    await asyncio.sleep(0.3)  # nothing more may arrive
    got = [e["MessageId"] for e in endpoint.of_type("Message")]
    assert got == sent  # each once, in order
    status, page = await api(second, "GET", "/api/v1/bots/deploy/deliveries?status=delivered")
    assert len(page["deliveries"]) == 7


@BOTH_ENGINES
async def test_retries_order_410_and_replay(db_url: str, start: Starter, endpoint: BotEndpoint) -> None:
    h = await start(bot_config(db_url, endpoint, events=["Invite", "Message", "Mention"]))
    room = await h.room("ops")
    endpoint.script["Message"] = [(503, {}), (429, {}), (200, {})]
    await api(h, "POST", f"/api/v1/rooms/{room}/members", {"email": ADDRESS})
    await until(lambda: endpoint.of_type("Invite"), "the Invite")
    for text in ("one", "two"):
        await api(h, "POST", f"/api/v1/rooms/{room}/messages", {"content": text})
    await until(lambda: len(endpoint.of_type("Message")) == 1, "the first attempt")

    async def rows() -> list[Any]:
        async with h.services.store.read() as conn:
            stmt = (
                select(bot_deliveries)
                .where(bot_deliveries.c.event_type == "Message")
                .order_by(bot_deliveries.c.id)
            )
            return list((await conn.execute(stmt)).mappings())

    async def first_failed() -> bool:
        found = await rows()
        return len(found) == 2 and found[0]["attempts"] == 1

    await settled(first_failed, "the first attempt to be recorded")
    first, second = await rows()
    assert (first["status"], first["attempts"], first["last_status"]) == ("pending", 1, 503)
    assert (first["next_attempt_at"] - first["last_attempt_at"]).total_seconds() == pytest.approx(0.2)
    assert (second["status"], second["attempts"]) == ("pending", 0)  # waits behind the first
    h.clock.advance(0.25)
    h.services.bots.worker.wake()
    await until(lambda: len(endpoint.of_type("Message")) == 2, "the second attempt")
    await until(lambda: len(h.services.bots.worker._sending) == 0, "the attempt to finish")
    first, _ = await rows()
    assert (first["attempts"], first["last_status"]) == (2, 429)
    assert (first["next_attempt_at"] - first["last_attempt_at"]).total_seconds() == pytest.approx(0.4)
    h.clock.advance(0.5)
    h.services.bots.worker.wake()
    await until(lambda: len(endpoint.of_type("Message")) == 4, "the retry and the next message")
    assert [e["Message"] for e in endpoint.of_type("Message")] == ["one", "one", "one", "two"]

    # A 400 fails the delivery at once; an admin replays it and it goes through.
    endpoint.script["Message"] = [(400, {"error": "nope"})]
    await api(h, "POST", f"/api/v1/rooms/{room}/messages", {"content": "three"})
    await until(lambda: len(endpoint.of_type("Message")) == 5, "the refused attempt")
    await until(lambda: len(h.services.bots.worker._sending) == 0, "the attempt to finish")
    status, page = await api(h, "GET", "/api/v1/bots/deploy/deliveries?status=failed")
    (failed,) = page["deliveries"]
    assert (failed["last_status"], failed["last_response"]) == (400, '{"error": "nope"}')
    status, body = await api(h, "POST", "/api/v1/bots/deploy/deliveries/replay", {"ids": [10**30]})
    assert status == 400 and "positive integers" in body["message"]
    status, body = await api(h, "POST", "/api/v1/bots/deploy/deliveries/replay", {"ids": [failed["id"]]})
    assert (status, body) == (200, {"replayed": [failed["id"]]})
    await until(lambda: len(endpoint.of_type("Message")) == 6, "the replay")

    # A 410 disables the bot; mentioning it then tells the sender, and nothing more is queued.
    endpoint.script["Message"] = [(410, {})]
    await api(h, "POST", f"/api/v1/rooms/{room}/messages", {"content": "four"})
    await until(lambda: len(endpoint.of_type("Message")) == 7, "the 410")
    status, bot = await api(h, "GET", "/api/v1/bots/deploy")
    await until(lambda: len(h.services.bots.worker._sending) == 0, "the attempt to finish")
    status, bot = await api(h, "GET", "/api/v1/bots/deploy")
    assert (bot["status"], bot["enabled"]) == ("disabled", False)
    assert "410" in bot["disabled_reason"]
    status, posted = await api(
        h, "POST", f"/api/v1/rooms/{room}/messages", {"content": "@deploy are you there?"}
    )

    async def notices() -> list[Any]:
        async with h.services.store.read() as conn:
            stmt = select(events.c.payload).where(
                events.c.type == "bot.unavailable", events.c.user_id == h.admin.id
            )
            return [json.loads(p) for p in (await conn.execute(stmt)).scalars()]

    deadline = asyncio.get_running_loop().time() + 10
    while not await notices():
        assert asyncio.get_running_loop().time() < deadline, "the sender was not told"
        await asyncio.sleep(0.05)
    (notice,) = await notices()
    assert notice["message_id"] == posted["id"] and "disabled" in notice["message"]
    status, body = await api(
        h, "POST", f"/api/v1/rooms/{room}/members", {"email": "deploy-chimebot@example.com"}
    )
    assert status == 409  # still a member, and disabled
    assert len(endpoint.of_type("Message")) == 7


async def test_an_endpoint_that_does_not_echo_stays_unverified_and_gets_nothing(
    db_url: str, start: Starter, endpoint: BotEndpoint
) -> None:
    endpoint.echo_challenge = False
    h = await start(bot_config(db_url, endpoint))
    status, bot = await api(h, "GET", "/api/v1/bots/deploy")
    assert (bot["status"], bot["verified_at"]) == ("unverified", None)
    assert "did not echo the challenge" in bot["verify_error"]
    room = await h.room("ops")
    status, _ = await api(h, "POST", f"/api/v1/rooms/{room}/members", {"email": ADDRESS})
    assert status == 201  # room administrators may add it; it just gets nothing until verified
    await api(h, "POST", f"/api/v1/rooms/{room}/messages", {"content": "hello"})
    await asyncio.sleep(0.3)
    assert endpoint.received == []
    async with h.services.store.read() as conn:
        assert (await conn.execute(select(bot_deliveries))).first() is None


async def test_a_builtin_bot_joins_its_rooms_greets_and_answers_in_process(
    db_url: str, start: Starter
) -> None:
    config = make_config(
        db_url,
        meetings={"address_domain": "example.com"},
        bots=[{"name": "echo", "display_name": "Echo", "builtin": "echo", "rooms": ["General"]}],
    )
    h = await start(config)
    room = await h.services.rooms.resolve(h.admin, "General")
    status, members = await api(h, "GET", f"/api/v1/rooms/{room.id}/members")
    assert {(m["user_id"], m["email"], m["kind"]) for m in members["members"]} >= {
        ("bot:echo", "echo-chimebot@example.com", "bot")
    }

    async def said(text: str) -> bool:
        return any(m["content"] == text for m in await messages(h, room.id))

    await settled(lambda: said("Hello! Mention me (@echo) and I repeat what you say."), "the greeting")
    status, _ = await api(h, "POST", f"/api/v1/rooms/{room.id}/messages", {"content": "@ECHO hello there"})
    assert status == 201
    await settled(lambda: said(f"{h.admin.email} said: hello there"), "the echo")
    (reply,) = [
        m
        for m in await messages(h, room.id)
        if m["content"].endswith("hello there") and m["sender"]["kind"] == "bot"
    ]
    assert reply["sender"]["name"] == "Echo"


async def test_standard_webhooks_signing(db_url: str, start: Starter) -> None:
    """The Standard Webhooks headers verify with a checker written from standardwebhooks.com's spec."""
    key = b"a 24-byte key for the bot"
    secret = "whsec_" + base64.b64encode(key).decode()
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        msg_id, stamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
        signed = f"{msg_id}.{stamp}.".encode() + body
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        if expected not in request.headers["webhook-signature"].split(" "):
            return web.Response(status=401)
        event = json.loads(body)
        seen.append(event)
        if event["EventType"] == "HTTPSEndpointVerification":
            return web.json_response({"Challenge": event["Challenge"]})
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/events", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        endpoint = BotEndpoint(secret=secret, port=port)
        h = await start(bot_config(db_url, endpoint, signing="standard-webhooks", events=["Invite"]))
        _, bot = await api(h, "GET", "/api/v1/bots/deploy")
        assert bot["status"] == "ready", bot
        room = await h.room("ops")
        await api(h, "POST", f"/api/v1/rooms/{room}/members", {"email": ADDRESS})
        await until(lambda: len(seen) == 2, "the Invite")
        assert seen[1]["EventType"] == "Invite"
    finally:
        await runner.cleanup()


async def test_private_addresses_are_refused_unless_allowed(
    db_url: str, start: Starter, endpoint: BotEndpoint
) -> None:
    config = bot_config(db_url, endpoint)
    config = replace(config, delivery=replace(config.delivery, allow_private_endpoints=False))
    h = await start(config)
    _, bot = await api(h, "GET", "/api/v1/bots/deploy")
    assert bot["status"] == "unverified"
    assert "127.0.0.1" in bot["verify_error"] and endpoint.challenges == 0


async def test_members_mentions_and_what_a_bot_cannot_be(
    db_url: str, start: Starter, endpoint: BotEndpoint
) -> None:
    h = await start(bot_config(db_url, endpoint))
    room = await h.room("ops")
    status, body = await api(h, "POST", f"/api/v1/rooms/{room}/members", {"email": ADDRESS, "is_admin": True})
    assert status == 400 and "administrator" in body["message"]
    status, body = await api(
        h, "POST", f"/api/v1/rooms/{room}/members", {"email": "nobody-chimebot@example.com"}
    )
    assert status == 404 and "GET /api/v1/bots" in body["message"]
    assert (await api(h, "POST", f"/api/v1/rooms/{room}/members", {"email": ADDRESS}))[0] == 201
    status, body = await api(h, "POST", f"/api/v1/rooms/{room}/members", {"email": ADDRESS})
    assert status == 409
    status, body = await api(h, "PATCH", f"/api/v1/rooms/{room}/members/bot:deploy", {"is_admin": True})
    assert status == 400
    status, posted = await api(
        h, "POST", f"/api/v1/rooms/{room}/messages", {"content": "@deploy-chimebot ping"}
    )
    (stored,) = [m for m in await messages(h, room) if m["id"] == posted["id"]]
    assert stored["mentions"]["user_ids"] == ["bot:deploy"]
    # Someone who is not a room administrator cannot remove it.
    member, token = await h.user("member@localhost")
    await api(h, "POST", f"/api/v1/rooms/{room}/members", {"email": member.email})
    status, _ = await api(h, "DELETE", f"/api/v1/rooms/{room}/members/bot:deploy", token=token)
    assert status == 403
    # Everyone sees the bots, only administrators their endpoints and deliveries.
    status, listed = await api(h, "GET", "/api/v1/bots", token=token)
    assert "endpoint" not in listed["bots"][0] and listed["bots"][0]["address"] == ADDRESS
    status, body = await api(h, "GET", "/api/v1/bots/deploy/deliveries", token=token)
    assert status == 403


async def test_sighup_reload_applies_bots_and_audits_changes(
    db_url: str, start: Starter, endpoint: BotEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_BOT_SECRET", SECRET)
    file = tmp_path / "chimebot.toml"

    def write(events: str, extra: str = "") -> None:
        file.write_text(
            f'[database]\nurl = "{db_url}"\n[meetings]\naddress_domain = "example.com"\n'
            "[delivery]\nallow_private_endpoints = true\npoll_seconds = 0.05\n"
            f'[[bots]]\nname = "deploy"\nendpoint = "{endpoint.url}"\nsecret_env = "DEPLOY_BOT_SECRET"\n'
            f"events = {events}\n{extra}"
        )

    write('["Invite"]')
    h = await start(load_config(file))
    write('["Invite", "Message"]', '[[bots]]\nname = "echo"\nbuiltin = "echo"\n')
    assert await h.services.reload()
    _status, listed = await api(h, "GET", "/api/v1/bots")
    assert {b["name"]: (b["events"], b["status"]) for b in listed["bots"]} == {
        "deploy": (["Invite", "Message"], "ready"),
        "echo": (["Invite", "Mention", "Remove"], "ready"),
    }
    file.write_text("[bots\n")  # broken: nothing changes
    assert not await h.services.reload()
    write('["Invite"]')  # echo left out: disabled, still listed
    assert await h.services.reload()
    _, echo = await api(h, "GET", "/api/v1/bots/echo")
    assert (echo["status"], echo["disabled_reason"]) == ("disabled", "no longer in the config")
    _, audit = await api(h, "GET", "/api/v1/audit?limit=50")
    details = [
        (e["action"], e["outcome"], e["detail"])
        for e in audit["entries"]
        if e["action"].startswith("config.")
    ]
    assert ("config.bots.apply", "ok", "bot echo: disabled (no longer in the config)") in details
    assert ("config.bots.apply", "ok", "bot deploy: events ['Invite'] -> ['Invite', 'Message']") in details
    assert any(a == "config.reload" and o == "refused" and "invalid TOML" in d for a, o, d in details)


@BOTH_ENGINES
async def test_a_backlog_is_routed_with_the_membership_each_entry_was_written_under(
    db_url: str, tmp_path: Path, endpoint: BotEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of the log read after the fact (a restart, an outage) see who was in the room then."""
    from chimebot.bots import router

    services = build_services(bot_config(db_url, endpoint, events=["Invite", "Message", "Remove"]), tmp_path)
    await services.start()  # no router or worker running: the test routes by hand
    await services.bootstrap()
    try:
        await services.apply_config()
        admin = await services.accounts.operator()
        room = await services.rooms.create(admin, "ops")
        post = services.rooms.post_as_user
        for i in range(3):
            await post(admin, room.id, f"before {i}")
        await services.rooms.add_member(admin, room.id, ADDRESS)
        await post(admin, room.id, "during")
        await services.rooms.remove_member(admin, room.id, "bot:deploy")
        await post(admin, room.id, "after")
        monkeypatch.setattr(router, "PAGE", 2)  # so that joins and departures fall on later pages
        while await services.bots.router.route():
            pass
        async with services.store.read() as conn:
            stmt = select(bot_deliveries.c.event_type, bot_deliveries.c.payload).order_by(bot_deliveries.c.id)
            queued = [
                (kind, json.loads(payload).get("Message")) for kind, payload in await conn.execute(stmt)
            ]
        assert queued == [("Invite", None), ("Message", "during"), ("Remove", None)]
    finally:
        await services.close()
