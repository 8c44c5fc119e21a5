"""Group commit: one task performs every write that produces stream events, in order.

Two reasons for one writer. Speed: a hand-off to the database costs far more than a commit
(PERFORMANCE.md), so queued message inserts are committed together, as many as queued while the
previous commit ran, and every waiter is answered after its own row is durable. Order: events get
their ids inside the transaction, and since transactions run one after another here, they are
published in id order, which is what lets a stream client resume from `since=<id>` exactly.

On SQLite a message batch runs right on the event loop (see ``BlockingSqlite``); on PostgreSQL it
goes through the async engine, under an advisory lock that orders commits across nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chimebot.errors import Unavailable
from chimebot.store.batches import (
    GuardFailed,
    MessageOp,
    Repeated,
    insert_events,
    lock_event_log,
    write_messages,
)
from chimebot.store.log import CommittedEvent, EventDraft

log = logging.getLogger(__name__)


T = TypeVar("T")
CHECKPOINT_SECONDS = 1.0
Change = Callable[[AsyncConnection], Awaitable[tuple[Any, list[EventDraft]]]]
OnCommit = Callable[[Sequence[CommittedEvent]], None]


@dataclass(slots=True)
class _ChangeOp:
    change: Change
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class WriterClosed(Unavailable):
    """The writer is stopping and takes no more work."""


class GroupWriter:
    """Runs event-producing writes in one task; consecutive message inserts share a commit."""

    def __init__(self, engine: AsyncEngine, blocking: BlockingSqlite | None = None) -> None:
        self._engine = engine
        self._blocking = blocking
        self._thread: ThreadPoolExecutor | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._dirty = False  # batches committed since the last checkpoint
        # A list and an event rather than an asyncio.Queue: the writer takes everything at once anyway.
        self._pending: list[MessageOp | _ChangeOp | None] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.on_commit: OnCommit = lambda events: None

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is None:
            self._closing = False
            loop = asyncio.get_running_loop()
            if self._blocking is not None:
                self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chimebot-writer")
                self._checkpointer = loop.create_task(self._checkpoints(), name="chimebot-checkpoint")
            self._task = loop.create_task(self._run(), name="chimebot-writer")

    async def stop(self) -> None:
        """Finish what is queued, then end the task."""
        if self._task is None:
            return
        self._closing = True
        self._pending.append(None)
        self._wake.set()
        await self._task
        self._task = None
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None

    async def post_message(
        self,
        row: dict[str, Any],
        event: EventDraft,
        *,
        guard: tuple[str, str] | None = None,
        receipt: tuple[str, str] | None = None,
    ) -> int:
        """Insert a message row and its event; return the event id once both are committed.

        ``guard`` is a (webhook id, token hash) pair checked inside the commit, so a message is
        never accepted through a webhook that another node or process has just regenerated or
        deleted; the check costs one query per batch, not one per message. ``receipt`` is a
        (webhook id, idempotency key) pair recorded in the same commit; a key recorded before
        raises ``Repeated`` instead.
        """
        op = MessageOp(row, event, guard, asyncio.get_running_loop().create_future(), receipt)
        self._submit(op)
        return await op.future

    async def run(self, change: Change) -> Any:
        """Run ``change`` in its own transaction, record the events it returns, return its result."""
        op = _ChangeOp(change)
        self._submit(op)
        return await op.future

    def _submit(self, op: MessageOp | _ChangeOp) -> None:
        if self._closing or self._task is None:
            raise WriterClosed("the server is shutting down; try again shortly")
        self._pending.append(op)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            ops = [op for op in batch if op is not None]
            try:
                await self._apply(ops)
            except Exception as exc:  # a bug here must not leave every later write waiting forever
                log.exception("the writer failed on a batch of %d; its writes are refused", len(ops))
                for op in ops:
                    _fail(op.future, exc)
            if None in batch:
                return

    async def _apply(self, ops: list[MessageOp | _ChangeOp]) -> None:
        """Apply ops in order: each change alone, each run of messages as one batch."""
        i = 0
        while i < len(ops):
            op = ops[i]
            if isinstance(op, _ChangeOp):
                await self._apply_change(op)
                i += 1
                continue
            j = i
            while j < len(ops) and isinstance(ops[j], MessageOp):
                j += 1
            await self._apply_messages(ops[i:j])  # type: ignore[arg-type]
            i = j

    async def _apply_messages(self, ops: list[MessageOp]) -> None:
        try:
            kept, ids, repeats = await self._run_sync(write_messages, ops)
        except (IntegrityError, sqlite3.IntegrityError):
            if len(ops) > 1:  # one bad row (its room deleted meanwhile) must not fail its neighbours
                for op in ops:
                    await self._apply_messages([op])
                return
            log.warning("message refused by the database (its room is gone?)")
            _fail(ops[0].future, GuardFailed(ops[0].row["room_id"]))
            return
        except Exception as exc:  # every waiter learns of the failure; nothing was committed
            log.warning("message batch of %d failed: %s", len(ops), exc)
            for op in ops:
                _fail(op.future, exc)
            return
        if len(kept) < len(ops):
            committed = {id(op) for op in kept}  # by identity: comparing ops field by field is slow
            for op in ops:
                if id(op) in repeats:
                    _fail(op.future, Repeated(repeats[id(op)]))
                elif id(op) not in committed:
                    _fail(op.future, GuardFailed(op.guard[0] if op.guard else op.row["room_id"]))
        self._publish([CommittedEvent(i, op.event) for i, op in zip(ids, kept, strict=True)])
        for event_id, op in zip(ids, kept, strict=True):
            if not op.future.done():  # its request may have been cancelled meanwhile
                op.future.set_result(event_id)

    async def _apply_change(self, op: _ChangeOp) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(lock_event_log)
                result, drafts = await op.change(conn)
                ids = await conn.run_sync(insert_events, drafts) if drafts else []
        except Exception as exc:  # the change's own errors (NotFound, Conflict…) reach its caller
            _fail(op.future, exc)
            return
        self._publish([CommittedEvent(i, d) for i, d in zip(ids, drafts, strict=True)])
        if not op.future.done():
            op.future.set_result(result)

    async def _checkpoints(self) -> None:
        """Copy the WAL back into the database file every second, in the thread.

        The inline connection does not checkpoint by itself: a checkpoint copies pages and syncs
        the file, tens of milliseconds that would stall every request if done on the loop.
        """
        assert self._blocking is not None
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            if not self._dirty:
                continue
            self._dirty = False
            try:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._blocking.checkpoint)
            except Exception as exc:  # a busy or failed checkpoint is retried on the next round
                log.warning("WAL checkpoint failed: %s", exc)

    async def _run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in one transaction and return its result."""
        if self._blocking is None or self._thread is None:
            async with self._engine.begin() as conn:
                return await conn.run_sync(fn, *args)
        self._dirty = True
        try:
            return self._blocking.run_inline(fn, args)
        except (OperationalError, sqlite3.OperationalError) as exc:
            if not _is_busy(exc):
                raise
        # Another process (the CLI, a backup) holds the write lock: wait for it away from the loop.
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._blocking.run_patient, fn, args
        )

    def _publish(self, events: list[CommittedEvent]) -> None:
        if not events:
            return
        try:
            self.on_commit(events)
        except Exception:  # publishing must never undo or hide a commit; clients resume from the log
            log.exception("publishing %d committed events failed", len(events))


class BlockingSqlite:
    """Plain (blocking) sqlite3 engines for message batches on SQLite.

    A batch runs right in the event loop on ``inline``, which never waits for a lock: a commit
    costs microseconds in WAL mode while every hand-off to a thread costs far more (PERFORMANCE.md),
    and a thread also takes turns with the loop instead of working alongside it. When another
    process holds the write lock, the batch is run on ``patient``, which waits, in a thread.
    """

    def __init__(self, inline: Engine, patient: Engine) -> None:
        self.inline = inline
        self.patient = patient
        self._conn: Connection | None = None  # kept open: a checkout per batch showed in profiles

    def run_inline(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Run ``fn(connection, *args)`` in a transaction that fails at once if the file is locked."""
        if self._conn is None or self._conn.invalidated or self._conn.closed:
            self._conn = self.inline.connect()
        with self._conn.begin():
            return fn(self._conn, *args)

    def run_patient(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Run ``fn(connection, *args)`` in a transaction that waits for the lock (call it in a thread)."""
        with self.patient.begin() as conn:
            return fn(conn, *args)

    def checkpoint(self) -> None:
        """Copy committed pages from the WAL into the database without waiting for anyone."""
        raw = self.patient.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            raw.close()

    def dispose(self) -> None:
        """Close the connections."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.inline.dispose()
        self.patient.dispose()


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Hand an error to a waiter, unless it stopped waiting (its request was cancelled)."""
    if not future.done():
        future.set_exception(exc)


def _is_busy(exc: Exception) -> bool:
    """Tell whether SQLite refused because another connection holds the lock."""
    error = exc.orig if isinstance(exc, OperationalError) else exc
    code = getattr(error, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(error)
