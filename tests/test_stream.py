"""The live stream over a real WebSocket: delivery, membership, resume with nothing missed or twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import pytest

from chimebot import streams
from chimebot.models import Sender
from tests.conftest import Harness


async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """Receive one JSON frame (waiting at most 5 s)."""
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def frames_until_ready(
    ws: aiohttp.ClientWebSocketResponse,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Receive the catch-up frames and the `stream.ready` frame that ends them."""
    frames = []
    while (frame := await next_frame(ws))["type"] != "stream.ready":
        frames.append(frame)
    return frames, frame


async def post(app: Harness, room_id: str, content: str, token: str | None = None) -> str:
    """Post a message through the REST API and return its id."""
    resp = await app.client.post(
        f"/api/v1/rooms/{room_id}/messages", json={"content": content}, headers=app.auth(token)
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def test_a_webhook_message_reaches_a_connected_client(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id, "Alerts")
    async with app.client.ws_connect("/api/v1/stream", headers=app.auth()) as ws:
        ready = await next_frame(ws)
        assert ready["type"] == "stream.ready" and ready["last_id"] >= 1
        resp = await app.client.post(
            f"/incomingwebhooks/{hook['id']}?token={hook['token']}", json={"Content": "disk full"}
        )
        answer = await resp.json()
        frame = await next_frame(ws)
    assert frame["type"] == "message.created"
    assert frame["id"] > ready["last_id"]
    assert frame["room_id"] == room_id
    assert frame["data"]["id"] == answer["MessageId"]
    assert frame["data"]["content"] == "disk full"
    assert frame["data"]["sender"]["name"] == "Alerts (Webhook)"


async def test_token_in_query_works_and_bad_requests_are_refused_before_upgrade(app: Harness) -> None:
    async with app.client.ws_connect(f"/api/v1/stream?token={app.token}") as ws:
        assert (await next_frame(ws))["type"] == "stream.ready"
    for path, status in [
        ("/api/v1/stream", 401),
        ("/api/v1/stream?token=wrong", 401),
        (f"/api/v1/stream?token={app.token}&since=-1", 400),
        (f"/api/v1/stream?token={app.token}&since=abc", 400),
    ]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await app.client.ws_connect(path)
        assert info.value.status == status, path
        resp = await app.client.get(path, headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        assert (await resp.json())["error"] in ("unauthorized", "invalid")


async def test_clients_see_only_their_rooms_and_follow_membership(app: Harness) -> None:
    room_id = await app.room("ops")
    secret_room = await app.room("secret")
    bob, bob_token = await app.user("bob@example.com")
    async with app.client.ws_connect("/api/v1/stream", headers=app.auth(bob_token)) as ws:
        await frames_until_ready(ws)
        await post(app, secret_room, "not for bob")
        added = await app.client.post(
            f"/api/v1/rooms/{room_id}/members", json={"email": "bob@example.com"}, headers=app.auth()
        )
        assert added.status == 201
        joined = await next_frame(ws)
        assert (joined["type"], joined["room_id"], joined["data"]["user_id"]) == (
            "member.joined",
            room_id,
            bob.id,
        )
        await post(app, room_id, "welcome bob")
        assert (await next_frame(ws))["data"]["content"] == "welcome bob"
        removed = await app.client.delete(f"/api/v1/rooms/{room_id}/members/{bob.id}", headers=app.auth())
        assert removed.status == 204
        left = await next_frame(ws)
        assert (left["type"], left["data"]["user_id"]) == ("member.left", bob.id)
        await post(app, room_id, "bob is gone")
        await post(app, secret_room, "still secret")
        # Bob is still in a room of his own: its message must be the very next frame he gets.
        own_room = await app.room("bob's", token=bob_token)
        joined_own = await next_frame(ws)
        assert (joined_own["type"], joined_own["room_id"]) == ("member.joined", own_room)
        await post(app, own_room, "mine", token=bob_token)
        assert (await next_frame(ws))["data"]["content"] == "mine"


async def test_resuming_after_leaving_a_room_delivers_its_events_up_to_the_departure(app: Harness) -> None:
    room_id = await app.room()
    bob, bob_token = await app.user("bob@example.com")
    await app.client.post(f"/api/v1/rooms/{room_id}/members", json={"email": bob.email}, headers=app.auth())
    async with app.client.ws_connect("/api/v1/stream", headers=app.auth(bob_token)) as ws:
        _, ready = await frames_until_ready(ws)
    before = await post(app, room_id, "posted while bob was away")
    await app.client.delete(f"/api/v1/rooms/{room_id}/members/{bob.id}", headers=app.auth())
    await post(app, room_id, "after bob left")
    async with app.client.ws_connect(
        f"/api/v1/stream?since={ready['last_id']}", headers=app.auth(bob_token)
    ) as ws:
        frames, _ = await frames_until_ready(ws)
    assert [(f["type"], (f["data"] or {}).get("id")) for f in frames] == [
        ("message.created", before),
        ("member.left", None),
    ]


async def test_a_since_beyond_the_log_resets_to_the_newest_event(app: Harness) -> None:
    room_id = await app.room()
    async with app.client.ws_connect("/api/v1/stream?since=999999", headers=app.auth()) as ws:
        reset = await next_frame(ws)
        assert reset["type"] == "stream.reset" and reset["last_id"] < 999999
        ready = await next_frame(ws)
        assert ready == {"type": "stream.ready", "last_id": reset["last_id"]}
        posted = await post(app, room_id, "still live")
        frame = await next_frame(ws)
    assert frame["data"]["id"] == posted and frame["id"] > reset["last_id"]


async def test_resume_from_since_delivers_what_was_missed_once_and_in_order(app: Harness) -> None:
    room_id = await app.room()
    async with app.client.ws_connect("/api/v1/stream", headers=app.auth()) as ws:
        await frames_until_ready(ws)
        await post(app, room_id, "m1")
        last = (await next_frame(ws))["id"]
    missed = [await post(app, room_id, f"m{i}") for i in range(2, 6)]
    async with app.client.ws_connect(f"/api/v1/stream?since={last}", headers=app.auth()) as ws:
        frames, ready = await frames_until_ready(ws)
        assert [f["data"]["id"] for f in frames] == missed
        ids = [f["id"] for f in frames]
        assert ids == sorted(ids) and ids[0] > last and ready["last_id"] == ids[-1]
        await post(app, room_id, "live")
        live = await next_frame(ws)
        assert live["data"]["content"] == "live" and live["id"] > ids[-1]


async def test_reconnecting_while_messages_flow_misses_nothing_and_repeats_nothing(app: Harness) -> None:
    room_id = await app.room()
    total = 120
    posted: list[str] = []

    async def writer() -> None:
        for i in range(total):
            posted.append(await post(app, room_id, f"n{i}"))

    task = asyncio.create_task(writer())
    seen: list[dict[str, Any]] = []
    since = 0
    # Connect, read a few frames, drop the connection, resume: over and over while the writer runs.
    while len(seen) < total:
        async with app.client.ws_connect(f"/api/v1/stream?since={since}", headers=app.auth()) as ws:
            for _ in range(7):
                frame = await next_frame(ws)
                if frame["type"] == "message.created":
                    seen.append(frame)
                    since = frame["id"]
                if len(seen) == total:
                    break
    await task
    assert [f["data"]["id"] for f in seen] == posted
    ids = [f["id"] for f in seen]
    assert ids == sorted(set(ids))


# A tiny per-client buffer, so that a burst overflows it.
@pytest.mark.parametrize("app_config", [{"stream": {"queue_size": 2}}], indirect=True)
async def test_a_client_that_falls_behind_is_told_to_resume_and_loses_nothing(app: Harness) -> None:
    room_id = await app.room()
    async with app.client.ws_connect("/api/v1/stream", headers=app.auth()) as ws:
        _, ready = await frames_until_ready(ws)
        # Posted from one loop iteration, the 20 messages are committed as one batch, so the bus hands
        # this client 20 frames at once: more than its buffer of 2 holds.
        sender = Sender("user", app.admin.id, app.admin.display_name)
        rows = await asyncio.gather(
            *(app.services.rooms.post(room_id, sender, f"burst {i}", "text") for i in range(20))
        )
        ids = [row["id"] for row in rows]
        received = []
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            received.append(json.loads(msg.data))
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4000)
        assert "reconnect with since=" in msg.extra
    since = received[-1]["id"] if received else ready["last_id"]
    async with app.client.ws_connect(f"/api/v1/stream?since={since}", headers=app.auth()) as ws:
        frames, _ = await frames_until_ready(ws)
    contents = [f["data"]["id"] for f in received + frames]
    assert sorted(contents) == sorted(ids) and len(set(contents)) == len(ids)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_room_left_while_the_backlog_is_sent_still_delivers_what_it_owes(
    app: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    room_a, room_b = await app.room("a"), await app.room("b")
    bob, bob_token = await app.user("bob@example.com")
    for room_id in (room_a, room_b):
        await app.client.post(
            f"/api/v1/rooms/{room_id}/members", json={"email": bob.email}, headers=app.auth()
        )
    async with app.client.ws_connect("/api/v1/stream", headers=app.auth(bob_token)) as ws:
        _, ready = await frames_until_ready(ws)
    for i in range(505):  # more than one backlog page
        await post(app, room_b, f"b{i}")
    owed = [await post(app, room_a, f"a{i}") for i in range(5)]

    # The real query, wrapped only to choose the moment: bob is removed from A while page 1 is sent.
    real = streams.qm.events_since
    pages = 0

    async def removing_bob_after_the_first_page(conn: Any, since: int, **kw: Any) -> Any:
        nonlocal pages
        if kw.get("user_id") == bob.id:
            pages += 1
            if pages == 2:
                resp = await app.client.delete(f"/api/v1/rooms/{room_a}/members/{bob.id}", headers=app.auth())
                assert resp.status == 204
        return await real(conn, since, **kw)

    monkeypatch.setattr(streams.qm, "events_since", removing_bob_after_the_first_page)
    async with app.client.ws_connect(
        f"/api/v1/stream?since={ready['last_id']}", headers=app.auth(bob_token)
    ) as ws:
        frames, _ = await frames_until_ready(ws)
    assert pages >= 2
    received = [f["data"]["id"] for f in frames if f["type"] == "message.created"]
    assert [m for m in received if m in owed] == owed
    assert len(received) == len(set(received)) == 510


async def _signed_out_and_suspended(
    app: Harness, user: Any, token: str, other: Any, other_token: str
) -> None:
    """Sign one user out and suspend the other while each has a stream; both streams close with 4001."""
    async with (
        app.client.ws_connect("/api/v1/stream", headers=app.auth(token)) as signed_out,
        app.client.ws_connect("/api/v1/stream", headers=app.auth(other_token)) as suspended,
    ):
        assert (await next_frame(signed_out))["type"] == "stream.ready"
        assert (await next_frame(suspended))["type"] == "stream.ready"
        resp = await app.client.post(f"/api/v1/users/{user.id}/logout", headers=app.auth())
        assert resp.status == 200 and (await resp.json()) == {"revoked_tokens": 1}
        resp = await app.client.post(f"/api/v1/users/{other.id}/suspend", headers=app.auth())
        assert resp.status == 200
        # Within a heartbeat or two, each stream is closed with the code that says "do not resume".
        for ws in (signed_out, suspended):
            closing = await ws.receive(timeout=5)
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4001), closing


@pytest.mark.parametrize("app_config", [{"stream": {"heartbeat_seconds": 0.2}}], indirect=True)
async def test_signing_a_user_out_or_suspending_them_closes_their_streams(app: Harness) -> None:
    user, token = await app.user("leaver@example.com")
    other, other_token = await app.user("stayer@example.com")
    # The server closes these streams itself: the client's own close on leaving the block can find
    # the transport already gone, which is not what this test is about.
    with contextlib.suppress(aiohttp.ClientConnectionResetError):
        await _signed_out_and_suspended(app, user, token, other, other_token)
    # The admin's stream outlives several rechecks (a reader keeps answering the heartbeats).
    room_id = await app.room()
    async with app.client.ws_connect("/api/v1/stream", headers=app.auth()) as ws:
        assert (await next_frame(ws))["type"] == "stream.ready"

        async def later() -> int:
            await asyncio.sleep(1)
            return (
                await app.client.post(
                    f"/api/v1/rooms/{room_id}/messages", json={"content": "hi"}, headers=app.auth()
                )
            ).status

        posting = asyncio.create_task(later())
        frame = await next_frame(ws)
        assert await posting == 201
        assert (frame["type"], frame["data"]["content"]) == ("message.created", "hi")
