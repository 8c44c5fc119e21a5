"""Group commit: one task performs every write that produces stream events, in order.

Two reasons for one writer. Speed: a hand-off to the database costs far more than a commit
(PERFORMANCE.md), so queued message inserts are committed together, as many as queued while the
previous commit ran, and every waiter is answered after its own row is durable. Order: events get
their ids inside the transaction, and since transactions run one after another here, they are
published in id order, which is what lets a stream client resume from `since=<id>` exactly.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chimebot.store import schema

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EventDraft:
    """An event to record in the same transaction as the change that caused it."""

    room_id: str
    type: str
    created_at: datetime
    user_id: str | None = None
    message: dict[str, Any] | None = None  # the message row, for message.created
    payload: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    """An event that is durable, with the id the stream knows it by."""

    id: int
    draft: EventDraft


Change = Callable[[AsyncConnection], Awaitable[tuple[Any, list[EventDraft]]]]
OnCommit = Callable[[Sequence[CommittedEvent]], None]


class GuardFailed(Exception):
    """The webhook a message was posted through was deleted or given a new token meanwhile."""


@dataclass(slots=True)
class _MessageOp:
    row: dict[str, Any]
    event: EventDraft
    guard: tuple[str, str] | None  # (webhook id, token hash) that must still hold at commit
    future: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(slots=True)
class _ChangeOp:
    change: Change
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class WriterClosed(RuntimeError):
    """The writer is stopping and takes no more work."""


class GroupWriter:
    """Runs event-producing writes in one task; consecutive message inserts share a commit."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[_MessageOp | _ChangeOp | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.on_commit: OnCommit = lambda events: None

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="chimebot-writer")

    async def stop(self) -> None:
        """Finish what is queued, then end the task."""
        if self._task is None:
            return
        self._closing = True
        self._queue.put_nowait(None)
        await self._task
        self._task = None

    async def post_message(
        self, row: dict[str, Any], event: EventDraft, *, guard: tuple[str, str] | None = None
    ) -> int:
        """Insert a message row and its event; return the event id once both are committed.

        ``guard`` is a (webhook id, token hash) pair checked inside the commit, so a message is
        never accepted through a webhook that another node or process has just regenerated or
        deleted; the check costs one query per batch, not one per message.
        """
        op = _MessageOp(row, event, guard)
        self._submit(op)
        return await op.future

    async def run(self, change: Change) -> Any:
        """Run ``change`` in its own transaction, record the events it returns, return its result."""
        op = _ChangeOp(change)
        self._submit(op)
        return await op.future

    def _submit(self, op: _MessageOp | _ChangeOp) -> None:
        if self._closing or self._task is None:
            raise WriterClosed("the server is shutting down; try again shortly")
        self._queue.put_nowait(op)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = None in batch
            ops = [op for op in batch if op is not None]
            i = 0
            while i < len(ops):
                op = ops[i]
                if isinstance(op, _ChangeOp):
                    await self._apply_change(op)
                    i += 1
                    continue
                j = i
                while j < len(ops) and isinstance(ops[j], _MessageOp):
                    j += 1
                await self._apply_messages(ops[i:j])  # type: ignore[arg-type]
                i = j
            if stop:
                return

    async def _apply_messages(self, ops: list[_MessageOp]) -> None:
        try:
            async with self._engine.begin() as conn:
                ops = await _check_guards(conn, ops)
                if not ops:
                    return
                await conn.execute(schema.messages.insert(), [op.row for op in ops])
                ids = await _insert_events(conn, [op.event for op in ops])
        except Exception as exc:  # every waiter learns of the failure; nothing was committed
            log.warning("message batch of %d failed: %s", len(ops), exc)
            for op in ops:
                if not op.future.done():
                    op.future.set_exception(exc)
            return
        self._publish([CommittedEvent(i, op.event) for i, op in zip(ids, ops, strict=True)])
        for event_id, op in zip(ids, ops, strict=True):
            if not op.future.done():
                op.future.set_result(event_id)

    async def _apply_change(self, op: _ChangeOp) -> None:
        try:
            async with self._engine.begin() as conn:
                result, drafts = await op.change(conn)
                ids = await _insert_events(conn, drafts) if drafts else []
        except Exception as exc:  # the change's own errors (NotFound, Conflict…) reach its caller
            if not op.future.done():
                op.future.set_exception(exc)
            return
        self._publish([CommittedEvent(i, d) for i, d in zip(ids, drafts, strict=True)])
        if not op.future.done():
            op.future.set_result(result)

    def _publish(self, events: list[CommittedEvent]) -> None:
        if not events:
            return
        try:
            self.on_commit(events)
        except Exception:  # publishing must never undo or hide a commit; clients resume from the log
            log.exception("publishing %d committed events failed", len(events))


async def _check_guards(conn: AsyncConnection, ops: list[_MessageOp]) -> list[_MessageOp]:
    """Fail the ops whose webhook no longer holds; return the others."""
    wanted = {op.guard[0] for op in ops if op.guard}
    if not wanted:
        return ops
    hooks = schema.webhooks
    stmt = select(hooks.c.id, hooks.c.token_hash).where(hooks.c.id.in_(wanted))
    valid = {(row.id, row.token_hash) for row in await conn.execute(stmt)}
    kept = []
    for op in ops:
        if op.guard is None or op.guard in valid:
            kept.append(op)
        else:
            op.future.set_exception(GuardFailed(op.guard[0]))
    return kept


async def _insert_events(conn: AsyncConnection, drafts: list[EventDraft]) -> list[int]:
    """Insert event rows and return their ids in the order given."""
    rows = [
        {
            "room_id": d.room_id,
            "type": d.type,
            "user_id": d.user_id,
            "message_id": d.message["id"] if d.message else None,
            "payload": json.dumps(d.payload, separators=(",", ":")) if d.payload is not None else None,
            "created_at": d.created_at,
        }
        for d in drafts
    ]
    stmt = schema.events.insert().returning(schema.events.c.id, sort_by_parameter_order=True)
    result = await conn.execute(stmt, rows)
    return [row[0] for row in result]
