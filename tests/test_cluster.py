"""Several nodes, one database: events reach every node's clients in one order; limits are shared."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from chimebot.app import app_for
from chimebot.clock import FakeClock
from chimebot.services import Services, build_services
from tests.conftest import make_config, require_service

REDIS = "redis://127.0.0.1:6379/0"


class Node:
    """One running node: its services and a real HTTP client to it."""

    def __init__(self, services: Services, client: TestClient) -> None:
        self.services = services
        self.client = client


@pytest.fixture
async def cluster(aiohttp_client: Any, pg_database: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """A factory of nodes that share one PostgreSQL database and, optionally, one Redis prefix."""
    prefix = f"chimebot-test-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()

    async def node(*, redis: bool = True, poll_seconds: float = 30.0) -> Node:
        sections: dict[str, Any] = {"stream": {"poll_seconds": poll_seconds}}
        if redis:
            require_service("Redis", "127.0.0.1", 6379)
            sections["redis"] = {"url": REDIS, "prefix": prefix}
        services = build_services(make_config(pg_database, **sections), tmp_path, clock)
        return Node(services, await aiohttp_client(app_for(services)))

    yield node


async def setup_room(node: Node) -> tuple[str, dict[str, Any], str]:
    """Create a room and a webhook on a node; return (token, webhook, room id)."""
    admin = await node.services.accounts.operator()
    token = await node.services.accounts.create_token(admin, "test")
    room = await node.services.rooms.create(admin, f"room-{uuid.uuid4().hex[:6]}")
    hook, hook_token = await node.services.incoming.create(admin, room.id, "CI")
    return token, {"id": hook.id, "token": hook_token}, room.id


async def read_messages(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """Read frames until ``count`` message.created events arrived."""
    seen = []
    while len(seen) < count:
        frame = json.loads((await ws.receive(timeout=10)).data)
        if frame["type"] == "message.created":
            seen.append(frame)
    return seen


async def test_every_node_delivers_every_event_once_in_the_same_order(cluster: Callable[..., Any]) -> None:
    a, b = await cluster(), await cluster()
    token, _, room_id = await setup_room(a)
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        a.client.ws_connect("/api/v1/stream", headers=auth) as on_a,
        b.client.ws_connect("/api/v1/stream", headers=auth) as on_b,
    ):
        for ws in (on_a, on_b):
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "stream.ready"

        async def post(node: Node, text: str) -> str:
            resp = await node.client.post(
                f"/api/v1/rooms/{room_id}/messages", json={"content": text}, headers=auth
            )
            assert resp.status == 201
            return (await resp.json())["id"]

        # Both nodes write at the same time, so their commits interleave.
        posted = await asyncio.gather(*(post(a if i % 2 else b, f"m{i}") for i in range(40)))
        seen_a, seen_b = await read_messages(on_a, 40), await read_messages(on_b, 40)
    assert [f["id"] for f in seen_a] == [f["id"] for f in seen_b]
    assert [f["id"] for f in seen_a] == sorted({f["id"] for f in seen_a})
    assert sorted(f["data"]["id"] for f in seen_a) == sorted(posted)


async def test_the_doorbell_brings_another_nodes_message_without_waiting_for_the_poll(
    cluster: Callable[..., Any],
) -> None:
    a, b = await cluster(poll_seconds=60), await cluster(poll_seconds=60)
    token, hook, _ = await setup_room(a)
    async with b.client.ws_connect(f"/api/v1/stream?token={token}") as ws:
        await ws.receive(timeout=5)
        resp = await a.client.post(
            f"/incomingwebhooks/{hook['id']}?token={hook['token']}", json={"Content": "hi"}
        )
        assert resp.status == 200
        [frame] = await read_messages(ws, 1)  # well before the 60 s poll
    assert frame["data"]["id"] == (await resp.json())["MessageId"]


async def test_without_redis_the_poll_finds_what_other_nodes_wrote(cluster: Callable[..., Any]) -> None:
    a, b = await cluster(redis=False, poll_seconds=60), await cluster(redis=False, poll_seconds=0.05)
    token, hook, _ = await setup_room(a)
    async with b.client.ws_connect(f"/api/v1/stream?token={token}") as ws:
        await ws.receive(timeout=5)
        resp = await a.client.post(
            f"/incomingwebhooks/{hook['id']}?token={hook['token']}", json={"Content": "hi"}
        )
        [frame] = await read_messages(ws, 1)
    assert frame["data"]["id"] == (await resp.json())["MessageId"]


async def test_the_webhook_rate_limit_is_shared_by_the_nodes(cluster: Callable[..., Any]) -> None:
    a, b = await cluster(), await cluster()
    _, hook, _ = await setup_room(a)
    path = f"/incomingwebhooks/{hook['id']}?token={hook['token']}"
    assert (await a.client.post(path, json={"Content": "first"})).status == 200
    limited = await b.client.post(path, json={"Content": "second"})
    assert limited.status == 429
    a.services.clock.advance(1)  # FakeClock: the nodes share it, as real nodes share NTP time
    assert (await b.client.post(path, json={"Content": "third"})).status == 200
