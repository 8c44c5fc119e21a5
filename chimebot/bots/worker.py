"""The delivery worker: sends queued bot events, retries failures, and keeps each room's order.

Each round claims due deliveries in one conditional UPDATE (only the oldest unfinished one of each
bot and room, so one room's events reach a bot one after another, in order) and sends them
concurrently, up to ``[delivery] concurrency``. A claim is a lease: if the node dies mid-send, the
row is sent again once the lease passes, so an event is delivered at least once and, when the bot
answers in time, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.engine import RowMapping

from chimebot.background import cancel_and_wait
from chimebot.clock import Clock
from chimebot.models import Bot
from chimebot.store import Store
from chimebot.store import bots as qb
from webhooks.delivery import Response, retry_delay

log = logging.getLogger(__name__)

# How long a claim is held: the longest timeout a bot may have (60 s), posting its reply (the SQLite
# writer may wait up to 30 s for a lock) and recording the outcome, with room to spare.
LEASE = timedelta(seconds=180)
KEPT_RESPONSE_CHARS = 1000  # of each answer, for the administrators' view


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery."""

    id: int
    bot_name: str
    room_id: str
    event_type: str
    payload: str
    attempts: int
    first_attempt_at: datetime | None
    lease: datetime  # the claim: only its holder may record the outcome

    @classmethod
    def from_row(cls, row: RowMapping) -> Delivery:
        """Read a claimed row."""
        return cls(
            row["id"],
            row["bot_name"],
            row["room_id"],
            row["event_type"],
            row["payload"],
            row["attempts"],
            row["first_attempt_at"],
            row["lease_until"],
        )


class Transport(Protocol):
    """How the worker reaches bots and acts on their answers (the bots service)."""

    async def current(self, name: str) -> Bot | None:
        """The bot as it is now."""
        ...

    async def send(self, bot: Bot, delivery: Delivery) -> Response:
        """Send one event to the bot (over HTTP, or to a built-in bot's method)."""
        ...

    async def delivered(self, bot: Bot, delivery: Delivery, response: Response) -> str | None:
        """Act on a 2xx answer (post its ``{"Content": …}`` as the bot's reply); a note if it could not."""
        ...

    async def gone(self, bot: Bot, response: Response) -> None:
        """The endpoint answered 410 Gone: disable the bot."""
        ...


class Worker:
    """Sends due deliveries, up to ``concurrency`` at once."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        transport: Transport,
        *,
        concurrency: int,
        poll_seconds: float,
        retry_for: timedelta,
        active: Callable[[], bool] = lambda: True,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._transport = transport
        self._concurrency = concurrency
        self._poll = poll_seconds
        self._retry_for = retry_for
        self._active = active  # false while no bot exists: then the queue is not even looked at
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._soonest: datetime | None = None  # the earliest retry this node scheduled

    def start(self) -> None:
        """Start sending."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="chimebot-bot-worker")

    async def stop(self) -> None:
        """Stop claiming, and let the sends in flight finish (each is bounded by its bot's timeout)."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def wake(self) -> None:
        """Tell the worker that deliveries were queued or became due."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            free = self._concurrency - len(self._sending)
            if free > 0 and self._active():
                try:
                    claimed = await self._claim(free)
                except Exception as exc:  # the database may be away; the next round tries again
                    log.warning("claiming bot deliveries failed: %s", exc)
                    claimed = []
                for delivery in claimed:
                    task = asyncio.get_running_loop().create_task(self._attempt(delivery))
                    self._sending.add(task)
                    task.add_done_callback(self._done)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._wait())

    def _wait(self) -> float:
        """Seconds until the next round: the poll interval, or sooner for a retry due before it."""
        if self._soonest is None:
            return self._poll
        ahead = (self._soonest - self._clock.now()).total_seconds()
        if ahead <= 0:
            self._soonest = None
            return 0.0
        return min(self._poll, ahead)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._wake.set()  # the next event of that bot and room may go now

    async def _claim(self, limit: int) -> list[Delivery]:
        now = self._clock.now()
        lease = now + LEASE
        async with self._store.transaction() as conn:
            rows = await qb.claim(conn, now, lease, limit)
        return [Delivery.from_row(r) for r in rows]

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            await self._attempt_once(delivery)
        except Exception as exc:  # a bug must not kill the worker, nor hold the room's queue
            log.exception("delivery %d to bot %s failed unexpectedly", delivery.id, delivery.bot_name)
            attempts = delivery.attempts + 1
            due = self._clock.now() + timedelta(seconds=retry_delay(attempts, self._rng))
            values = {"status": "pending", "attempts": attempts, "next_attempt_at": due, "lease_until": None}
            with contextlib.suppress(Exception):  # the database may be what failed; the lease expires
                await self._finish(delivery, values | {"last_error": f"internal error: {exc}"[:1000]})

    async def _attempt_once(self, delivery: Delivery) -> None:
        bot = await self._transport.current(delivery.bot_name)
        if bot is None or not bot.ready:  # disabled between the claim and now: leave it queued
            await self._finish(delivery, {"status": "pending", "lease_until": None})
            return
        response = await self._transport.send(bot, delivery)
        now = self._clock.now()
        attempts = delivery.attempts + 1
        first = delivery.first_attempt_at or now
        values: dict[str, Any] = {
            "attempts": attempts,
            "first_attempt_at": first,
            "last_attempt_at": now,
            "last_status": response.status,
            "last_error": response.error,
            "last_response": response.body[:KEPT_RESPONSE_CHARS].decode("utf-8", "replace") or None,
            "lease_until": None,
        }
        verdict = response.verdict
        if verdict == "delivered":
            # The reply first: a crash between the two repeats the delivery rather than losing the reply.
            note = await self._transport.delivered(bot, delivery, response)
            values |= {"status": "delivered", "delivered_at": now, "last_error": note}
        elif verdict == "retry":
            delay = retry_delay(attempts, self._rng, response.retry_after)
            due = now + timedelta(seconds=delay)
            if due - first > self._retry_for:
                hours = self._retry_for.total_seconds() / 3600
                values |= {
                    "status": "failed",
                    "last_error": f"gave up after {attempts} attempts over {hours:g} h; "
                    f"last: {response.error or f'HTTP {response.status}'}",
                }
            else:
                values |= {"status": "pending", "next_attempt_at": due}
                self._soonest = due if self._soonest is None else min(self._soonest, due)
        elif verdict == "gone":
            values |= {
                "status": "failed",
                "last_error": "the endpoint answered 410 Gone; the bot is disabled",
            }
            await self._transport.gone(bot, response)
        else:
            values |= {
                "status": "failed",
                "last_error": response.error or f"the endpoint answered HTTP {response.status}",
            }
        await self._finish(delivery, values)
        if values["status"] == "pending":
            log.info(
                "delivery %d to bot %s: %s; retry %d in %.1f s",
                delivery.id,
                bot.name,
                response.error or f"HTTP {response.status}",
                attempts,
                (values["next_attempt_at"] - now).total_seconds(),
            )
        elif values["status"] == "failed":
            log.warning("delivery %d to bot %s failed: %s", delivery.id, bot.name, values["last_error"])

    async def _finish(self, delivery: Delivery, values: dict[str, Any]) -> None:
        async with self._store.transaction() as conn:
            if not await qb.finish(conn, delivery.id, delivery.lease, values):
                log.warning("delivery %d: its claim expired before the outcome was recorded", delivery.id)
