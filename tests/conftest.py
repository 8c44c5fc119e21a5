"""Shared fixtures: real databases (SQLite files, PostgreSQL on loopback) and the app over real HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from chimebot.app import app_for
from chimebot.clock import FakeClock
from chimebot.config import Config, parse_config
from chimebot.models import User
from chimebot.services import Services, build_services

PG_ADMIN_URL = os.environ.get("CHIMEBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a loopback service is absent, except under CI, where its absence is a failure."""
    if _reachable(host, port):
        return
    if IN_CI:
        pytest.fail(f"{name} is not reachable on {host}:{port}, and CI=true requires it")
    pytest.skip(f"{name} is not running on {host}:{port} (set CI=true to make this a failure)")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Radicale:
    """A running Radicale CalDAV server (user alice, password secret) and its log file."""

    base: str
    log: Path

    def requests(self, path: str) -> list[str]:
        """Methods of the requests Radicale logged for a collection path, in order."""
        pattern = re.compile(rf"\] (\w+) request for '{re.escape(path)}")
        return [m.group(1) for m in map(pattern.search, self.log.read_text().splitlines()) if m]


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radicale]:
    """A real Radicale server on a free loopback port, one per test module."""
    root = tmp_path_factory.mktemp("radicale")
    (root / "users").write_text("alice:secret\n")
    port_number = free_port()
    (root / "config").write_text(
        f"[server]\nhosts = 127.0.0.1:{port_number}\n"
        f"[auth]\ntype = htpasswd\nhtpasswd_filename = {root / 'users'}\n"
        "htpasswd_encryption = plain\ndelay = 0\n"
        f"[storage]\nfilesystem_folder = {root / 'collections'}\n[logging]\nlevel = info\n"
    )
    log = root / "radicale.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "radicale", "-C", str(root / "config")], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port_number), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Radicale did not start:\n{log.read_text()}")
                time.sleep(0.05)
        yield Radicale(f"http://127.0.0.1:{port_number}", log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"chimebot_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL; parametrize indirectly with ["sqlite", "postgresql"] to run on both engines."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_database")
    return f"sqlite:///{tmp_path / 'chimebot.db'}"


def make_config(db_url: str = "", env: dict[str, str] | None = None, **sections: Any) -> Config:
    """A validated config with a database URL, any section overrides, and ``env`` for its secrets."""
    data: dict[str, Any] = {"database": {"url": db_url}} | sections
    return parse_config(data, source="<test>", env=env or {})


@dataclass
class Harness:
    """The running app, a real HTTP client to it, and the admin's credentials."""

    client: TestClient
    services: Services
    clock: FakeClock
    admin: User
    token: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        """Headers that authenticate as the admin, or as the given token's owner."""
        return {"Authorization": f"Bearer {token or self.token}"}

    async def room(self, name: str = "ops", token: str | None = None) -> str:
        """Create a room through the API and return its id."""
        resp = await self.client.post("/api/v1/rooms", json={"name": name}, headers=self.auth(token))
        assert resp.status == 201, await resp.text()
        return (await resp.json())["id"]

    async def webhook(self, room_id: str, name: str = "CI") -> dict[str, Any]:
        """Create a webhook through the API and return its JSON (id, token, url…)."""
        resp = await self.client.post(
            f"/api/v1/rooms/{room_id}/webhooks", json={"name": name}, headers=self.auth()
        )
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def user(self, email: str, *, admin: bool = False) -> tuple[User, str]:
        """Create another user of the admin's account and a token for them."""
        from datetime import UTC, datetime

        from chimebot.store import accounts as q

        user = User(str(uuid.uuid4()), self.admin.account_id, email.lower(), email.lower(), admin)
        async with self.services.store.transaction() as conn:
            await q.insert_user(conn, user, datetime.now(UTC))
        return user, await self.services.signin.create_token(user, "test")


@pytest.fixture
def app_config(request: pytest.FixtureRequest, db_url: str) -> Config:
    """The ``app`` fixture's config; parametrize indirectly with a dict of section overrides."""
    return make_config(db_url, **getattr(request, "param", {}))


@pytest.fixture
async def app(app_config: Config, aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    """The app started on a loopback port with a fake clock, bootstrapped, with an admin token.

    ``app_config`` comes first so that its database outlives the server (fixtures end in reverse).
    """
    clock = FakeClock()
    services = build_services(app_config, tmp_path, clock)
    client = await aiohttp_client(app_for(services))
    admin = await services.accounts.operator()
    token = await services.signin.create_token(admin, "test")
    yield Harness(client, services, clock, admin, token)


async def declare_bot(h: Harness, name: str) -> None:
    """Store a built-in bot as the config would declare it (without starting anything for it)."""
    from chimebot.store import bots as qb

    values = {
        "name": name,
        "display_name": name.title(),
        "kind": "builtin",
        "endpoint": name,
        "events": "[]",
        "signing": "chime",
        "timeout_seconds": 2.0,
        "digest": "0" * 64,
        "enabled": True,
        "updated_at": h.clock.now(),
    }
    async with h.services.store.transaction() as conn:
        await qb.put_bot(conn, values)
