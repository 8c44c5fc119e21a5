"""A batch of messages in one transaction: the hot path behind every webhook post.

Every statement here is SQLAlchemy Core. On SQLite the inserts are compiled once per dialect and
run with positional rows through ``exec_driver_sql``: compiling, caching and processing binds per
call cost several times more than SQLite's own work for a batch (PERFORMANCE.md), and they run on
the event loop. PostgreSQL takes the ordinary Core path, which returns ids with RETURNING.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.engine import Connection, Dialect

from chimebot.store import schema
from chimebot.store.log import EventDraft

EVENT_LOG_LOCK = 0x63_68_69_6D_65_01  # an arbitrary constant shared by every node ("chime" 1)

MESSAGE_COLUMNS = (
    "id",
    "room_id",
    "sender_kind",
    "sender_id",
    "sender_name",
    "content",
    "format",
    "mentions",
    "created_at",
)
EVENT_COLUMNS = ("room_id", "type", "user_id", "message_id", "payload", "created_at")


class GuardFailed(Exception):
    """What a message needs no longer holds: its webhook was changed or its room deleted meanwhile."""


class Repeated(Exception):
    """The message's idempotency key was used before; ``message_id`` is what it posted then."""

    def __init__(self, message_id: str | None) -> None:
        super().__init__(message_id)
        self.message_id = message_id


@dataclass(slots=True, eq=False)
class MessageOp:
    """A message waiting for the writer, and the future its poster awaits."""

    row: dict[str, Any]
    event: EventDraft
    guard: tuple[str, str] | None  # (webhook id, token hash) that must still hold at commit
    future: asyncio.Future[int]
    receipt: tuple[str, str] | None = None  # (webhook id, idempotency key) recorded with the message


def lock_event_log(conn: Connection) -> None:
    """On PostgreSQL, make event-writing transactions of all nodes commit one at a time.

    Ids then become visible in order, which is what lets every node read the log without a gap
    (SQLite's BEGIN IMMEDIATE already serialises writers).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOG_LOCK})


def write_messages(
    conn: Connection, ops: list[MessageOp]
) -> tuple[list[MessageOp], list[int], dict[int, str | None]]:
    """Insert the messages whose guards hold and whose idempotency keys are new, and their events.

    Return the messages inserted, their event ids, and for each message refused as a repeat (by
    ``id(op)``) the id of the message its key posted first.
    """
    lock_event_log(conn)
    kept = _check_guards(conn, ops)
    repeats: dict[int, str | None] = {}
    if any(op.receipt for op in kept):
        repeats = _check_receipts(conn, kept)
        kept = [op for op in kept if id(op) not in repeats]
    if not kept:
        return kept, [], repeats
    if conn.dialect.name == "sqlite":
        ids = _sqlite_insert(conn, kept)
    else:
        conn.execute(schema.messages.insert(), [op.row for op in kept])
        ids = insert_events(conn, [op.event for op in kept])
    receipts = [
        {
            "webhook_id": op.receipt[0],
            "key": op.receipt[1],
            "message_id": op.row["id"],
            "created_at": op.row["created_at"],
        }
        for op in kept
        if op.receipt
    ]
    if receipts:
        conn.execute(schema.webhook_receipts.insert(), receipts)
    return kept, ids, repeats


def _check_receipts(conn: Connection, ops: list[MessageOp]) -> dict[int, str | None]:
    """Find the ops whose idempotency key was recorded before, or earlier in this batch."""
    t = schema.webhook_receipts
    keys = {op.receipt for op in ops if op.receipt}
    rows = conn.execute(
        select(t.c.webhook_id, t.c.key, t.c.message_id).where(
            t.c.webhook_id.in_({hook for hook, _ in keys}), t.c.key.in_({key for _, key in keys})
        )
    )
    seen: dict[tuple[str, str], str | None] = {(row[0], row[1]): row[2] for row in rows}
    repeats: dict[int, str | None] = {}
    for op in ops:
        if op.receipt is None:
            continue
        if op.receipt in seen:
            repeats[id(op)] = seen[op.receipt]
        else:
            seen[op.receipt] = op.row["id"]
    return repeats


def insert_events(conn: Connection, drafts: list[EventDraft]) -> list[int]:
    """Insert event rows through Core and return their ids in the order given."""
    rows = [dict(zip(EVENT_COLUMNS, _event_values(d), strict=True)) for d in drafts]
    stmt = schema.events.insert().returning(schema.events.c.id, sort_by_parameter_order=True)
    return [row[0] for row in conn.execute(stmt, rows)]


def _event_values(d: EventDraft) -> tuple[Any, ...]:
    payload = json.dumps(d.payload, separators=(",", ":")) if d.payload is not None else None
    return (d.room_id, d.type, d.user_id, d.message["id"] if d.message else None, payload, d.created_at)


def _check_guards(conn: Connection, ops: list[MessageOp]) -> list[MessageOp]:
    """Return the ops whose webhook still has the token they were accepted with."""
    wanted = list({op.guard[0] for op in ops if op.guard})
    if not wanted:
        return ops
    if conn.dialect.name == "sqlite":
        rows = _driver(conn).execute(_guard_sql(conn.dialect, len(wanted)), wanted)
    else:
        hooks = schema.webhooks
        rows = conn.execute(select(hooks.c.id, hooks.c.token_hash).where(hooks.c.id.in_(wanted)))
    valid = {(row[0], row[1]) for row in rows}
    return [op for op in ops if op.guard is None or op.guard in valid]


@functools.cache
def _guard_sql(dialect: Dialect, count: int) -> str:
    """The guard query for ``count`` webhook ids, compiled once per dialect and count."""
    hooks = schema.webhooks
    ids = [bindparam(f"id{i}") for i in range(count)]
    return str(select(hooks.c.id, hooks.c.token_hash).where(hooks.c.id.in_(ids)).compile(dialect=dialect))


@functools.cache
def _insert_sql(dialect: Dialect) -> tuple[str, str]:
    """The message and event inserts of the fast path, compiled once for a dialect."""
    messages = schema.messages.insert().compile(dialect=dialect, column_keys=list(MESSAGE_COLUMNS))
    events = schema.events.insert().compile(dialect=dialect, column_keys=list(EVENT_COLUMNS))
    return str(messages), str(events)


def _sqlite_time(moment: datetime) -> str:
    """A UTC timestamp in the text form SQLAlchemy's SQLite DATETIME reads back."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _sqlite_insert(conn: Connection, ops: list[MessageOp]) -> list[int]:
    """Insert messages and events with two executemany calls; return the event ids."""
    message_sql, event_sql = _insert_sql(conn.dialect)
    messages = []
    events = []
    for op in ops:
        row = op.row
        created = _sqlite_time(row["created_at"])
        messages.append(
            (
                row["id"],
                row["room_id"],
                row["sender_kind"],
                row["sender_id"],
                row["sender_name"],
                row["content"],
                row["format"],
                row["mentions"],
                created,
            )
        )
        values = _event_values(op.event)
        # A message's event is created with it, so the two share the formatted time.
        events.append(
            (*values[:-1], created if values[-1] is row["created_at"] else _sqlite_time(values[-1]))
        )
    driver = _driver(conn)
    driver.executemany(message_sql, messages)
    driver.executemany(event_sql, events)
    # The write lock is held and AUTOINCREMENT gives each row the next id, so the batch's ids are
    # the run that ends at the last one inserted.
    (last,) = driver.execute("SELECT last_insert_rowid()").fetchone()
    return list(range(last - len(events) + 1, last + 1))


def _driver(conn: Connection) -> sqlite3.Connection:
    """The sqlite3 connection under ``conn``, inside the transaction SQLAlchemy began.

    Its ``execute``/``executemany`` skip the per-call work of ``Connection.exec_driver_sql``; errors
    arrive as sqlite3's own exceptions (the writer handles both kinds).
    """
    return conn.connection.dbapi_connection  # type: ignore[return-value]
