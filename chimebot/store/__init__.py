"""Storage: the engines for SQLite or PostgreSQL, migrations, and the group-commit writer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from chimebot.store.writer import GroupWriter

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def database_url(url: str, data_dir: Path) -> str:
    """Return the async SQLAlchemy URL for a configured URL, or the embedded SQLite file."""
    if not url:
        return f"sqlite+aiosqlite:///{(data_dir / 'chimebot.db').resolve()}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str, synchronous: str, *, immediate: bool) -> AsyncEngine:
    """Build a SQLite engine in WAL mode; ``immediate`` makes every transaction take the write lock."""
    # The driver's own transaction handling is turned off so that we emit BEGIN ourselves:
    # BEGIN IMMEDIATE takes the write lock up front, so a read-then-write transaction waits
    # for the lock (busy_timeout) instead of failing with "database is locked" on upgrade.
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Store:
    """The database: a write engine, a read engine (the same one on PostgreSQL) and the writer."""

    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine) -> None:
        self.engine = engine
        self.read_engine = read_engine
        self.writer = GroupWriter(engine)

    @classmethod
    def open(cls, url: str, *, synchronous: str = "normal", pool_size: int = 10) -> Store:
        """Create engines for an async URL (see ``database_url``); nothing connects yet."""
        if url.startswith("sqlite"):
            path = make_url(url).database
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            return cls(
                _sqlite_engine(url, synchronous, immediate=True),
                _sqlite_engine(url, synchronous, immediate=False),
            )
        engine = create_async_engine(url, pool_size=pool_size, pool_pre_ping=True)
        return cls(engine, engine)

    @property
    def dialect(self) -> str:
        """Return ``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    async def migrate(self) -> None:
        """Apply every Alembic migration that this database has not seen yet."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def start(self) -> None:
        """Start the group-commit writer."""
        self.writer.start()

    async def close(self) -> None:
        """Finish queued writes, then release every connection."""
        await self.writer.stop()
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads."""
        async with self.read_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction that commits on success and rolls back on error."""
        async with self.engine.begin() as conn:
            yield conn


def _upgrade(conn: Connection) -> None:
    """Run ``alembic upgrade head`` on an open connection."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
