"""Storage: the engines for SQLite or PostgreSQL, migrations, and the group-commit writer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from chimebot.store.writer import BlockingSqlite, GroupWriter

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x63_68_69_6D_65_02  # arbitrary constants shared by every node ("chime" 2, 3)
STARTUP_LOCK = 0x63_68_69_6D_65_03


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


def _configure_sqlite(
    engine: Engine, synchronous: str, *, immediate: bool, busy_ms: int = 30_000, autocheckpoint: bool = True
) -> None:
    """Put a SQLite engine in WAL mode; ``immediate`` makes every transaction take the write lock."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling is turned off so that we emit BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        if not autocheckpoint:  # the writer checkpoints from its thread instead, off the event loop
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock up front, so a read-then-write transaction waits for
        # it (busy_timeout) instead of failing with "database is locked" when it tries to upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_engine(url: str, synchronous: str, *, immediate: bool) -> AsyncEngine:
    """An async (aiosqlite) engine on a SQLite file."""
    engine = create_async_engine(url, connect_args={"timeout": 30})
    _configure_sqlite(engine.sync_engine, synchronous, immediate=immediate)
    return engine


def _blocking_sqlite_engine(url: str, synchronous: str, *, wait: int) -> Engine:
    """A plain sqlite3 engine for the writer; ``wait`` is how many seconds it waits for the lock."""
    engine = create_engine(
        make_url(url).set(drivername="sqlite"),
        connect_args={"timeout": wait, "check_same_thread": False},
        poolclass=StaticPool,  # one connection: only the writer uses it, one batch at a time
    )
    _configure_sqlite(engine, synchronous, immediate=True, busy_ms=wait * 1000, autocheckpoint=wait > 0)
    return engine


class Store:
    """The database: a write engine, a read engine (the same one on PostgreSQL) and the writer."""

    def __init__(
        self, engine: AsyncEngine, read_engine: AsyncEngine, blocking: BlockingSqlite | None = None
    ) -> None:
        self.engine = engine
        self.read_engine = read_engine
        self.blocking = blocking
        self.writer = GroupWriter(engine, blocking)

    @classmethod
    def open(cls, url: str, *, synchronous: str = "normal", pool_size: int = 10) -> Store:
        """Create engines for an async URL (see ``database_url``); nothing connects yet."""
        if url.startswith("sqlite"):
            path = make_url(url).database
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            blocking = BlockingSqlite(
                inline=_blocking_sqlite_engine(url, synchronous, wait=0),
                patient=_blocking_sqlite_engine(url, synchronous, wait=30),
            )
            return cls(
                _sqlite_engine(url, synchronous, immediate=True),
                _sqlite_engine(url, synchronous, immediate=False),
                blocking,
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
            if self.dialect == "postgresql":  # nodes starting together migrate one after another
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            await conn.run_sync(_upgrade)

    async def start(self) -> None:
        """Start the group-commit writer."""
        self.writer.start()

    async def close(self) -> None:
        """Finish queued writes, then release every connection."""
        await self.writer.stop()
        await self.engine.dispose()
        if self.blocking is not None:
            self.blocking.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads."""
        async with self.read_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def exclusive(self, key: int) -> AsyncIterator[None]:
        """Hold a cluster-wide lock (PostgreSQL advisory lock) while the block runs.

        On SQLite one file is one machine, and each write transaction already takes the write lock.
        """
        if self.dialect != "postgresql":
            yield
            return
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await conn.commit()

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose reads all see one moment (SQLite's read transaction already does)."""
        async with self.read_engine.connect() as conn:
            if self.dialect == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
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
