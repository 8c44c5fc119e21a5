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
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from chimebot.app import app_for
from chimebot.clock import FakeClock
from chimebot.passwords import hash_password_now
from chimebot.services import Services, build_services
from chimebot.store import accounts as qa
from chimebot.store import schema
from tests.conftest import make_config, require_service

REDIS = "redis://127.0.0.1:6379/0"


class Node:
    """One running node: its services and a real HTTP client to it."""

    def __init__(self, services: Services, client: TestClient) -> None:
        self.services = services
        self.client = client


@pytest.fixture
async def cluster(pg_database: str, aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """A factory of nodes that share one PostgreSQL database and, optionally, one Redis prefix.

    The database is requested first so that it is dropped last, after the nodes have closed.
    """
    prefix = f"chimebot-test-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()

    async def node(*, redis: bool = True, poll_seconds: float = 30.0, **extra: Any) -> Node:
        sections: dict[str, Any] = {"stream": {"poll_seconds": poll_seconds}} | extra
        if redis:
            require_service("Redis", "127.0.0.1", 6379)
            sections["redis"] = {"url": REDIS, "prefix": prefix}
        config = make_config(pg_database, env={"HOOK_TOKEN": "token-from-the-environment"}, **sections)
        services = build_services(config, tmp_path, clock)
        return Node(services, await aiohttp_client(app_for(services)))

    yield node


async def setup_room(node: Node) -> tuple[str, dict[str, Any], str]:
    """Create a room and a webhook on a node; return (token, webhook, room id)."""
    admin = await node.services.accounts.operator()
    token = await node.services.signin.create_token(admin, "test")
    room = await node.services.rooms.create(admin, f"room-{uuid.uuid4().hex[:6]}")
    hook, hook_token, _ = await node.services.incoming.create(admin, room.id, "CI")
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


async def test_nodes_starting_together_bootstrap_and_declare_once(cluster: Callable[..., Any]) -> None:
    rooms = [
        {"name": "Deployments", "webhooks": [{"name": "CI", "id": "ci-hook", "token_env": "HOOK_TOKEN"}]}
    ]
    nodes = await asyncio.gather(*(cluster(rooms=rooms) for _ in range(3)))
    store = nodes[0].services.store
    async with store.read() as conn:
        users = (await conn.execute(sa.select(sa.func.count()).select_from(schema.users))).scalar_one()
        names = (await conn.execute(sa.select(schema.rooms.c.name))).scalars().all()
        hooks = (await conn.execute(sa.select(schema.webhooks.c.id))).scalars().all()
    assert (users, names, hooks) == (1, ["Deployments"], ["ci-hook"])
    for node in nodes:
        resp = await node.client.post(
            "/incomingwebhooks/ci-hook?token=token-from-the-environment", json={"Content": "hi"}
        )
        assert resp.status in (200, 429)  # the nodes share one rate limit through Redis


async def test_concurrent_webhook_creation_respects_names_and_the_limit(cluster: Callable[..., Any]) -> None:
    a, b = await cluster(), await cluster()
    token, _, room_id = await setup_room(a)  # the room has 1 webhook already
    auth = {"Authorization": f"Bearer {token}"}

    async def create(node: Node, name: str) -> int:
        resp = await node.client.post(f"/api/v1/rooms/{room_id}/webhooks", json={"name": name}, headers=auth)
        return resp.status

    same_name = await asyncio.gather(*(create(a if i % 2 else b, "twin") for i in range(6)))
    assert sorted(same_name) == [201] + [409] * 5
    many = await asyncio.gather(*(create(a if i % 2 else b, f"hook {i}") for i in range(14)))
    assert sorted(set(many)) == [201, 409] and many.count(201) == 8  # 1 + 1 + 8 = the limit of 10
    listed = await a.client.get(f"/api/v1/rooms/{room_id}/webhooks", headers=auth)
    assert len((await listed.json())["webhooks"]) == 10


async def test_sign_in_attempts_are_counted_across_nodes(cluster: Callable[..., Any]) -> None:
    # Three attempts per address, shared through Redis: a guesser gains nothing by switching nodes.
    limits = {"signin_attempts_per_address": 3}
    a, b = await cluster(accounts=limits), await cluster(accounts=limits)
    admin = await a.services.accounts.operator()
    async with a.services.store.transaction() as conn:
        await qa.update_user(conn, admin.id, {"password_hash": hash_password_now("the password")})
    wrong = {"email": admin.email, "password": "not the password"}
    right = {"email": admin.email, "password": "the password"}
    statuses = []
    # A successful sign-in gives its token back, on whichever node: only the failures count.
    for node, body in ((a, wrong), (b, right), (a, wrong), (b, wrong), (a, wrong)):
        resp = await node.client.post("/api/v1/sessions", json=body)
        statuses.append(resp.status)
    assert statuses == [401, 201, 401, 401, 429]
    assert int(resp.headers["Retry-After"]) > 0
    assert (await resp.json())["error"] == "rate_limited"
