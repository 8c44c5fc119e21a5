"""Calendar occurrences → timed jobs → an atomic claim → one call, once across restarts and nodes.

The occurrences table is the truth; APScheduler's in-memory jobs are only alarms rebuilt from it (at
start, after each sync, and periodically). Every alarm does the same thing, ``run_due``: claim what is
due with one conditional UPDATE and call ``on_fire`` for what this node won. So a duplicate, late or
stale alarm is harmless, and tests drive time with a FakeClock and call ``run_due`` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from calendars.invites import MeetingOccurrence
from chimebot.clock import Clock
from chimebot.store import Store
from chimebot.store import occurrences as q
from chimebot.store.occurrences import STATES, StoredOccurrence

__all__ = ["STATES", "FiredOccurrence", "Scheduler", "StoredOccurrence", "SyncResult"]

log = logging.getLogger(__name__)

# The occurrence as it was claimed (state `fired`, `fired_at` set): what `on_fire` receives.
FiredOccurrence = StoredOccurrence

_SWEEP = "chimebot.scheduler:sweep"
_REBUILD = "chimebot.scheduler:rebuild"
_INTERNAL = frozenset({_SWEEP, _REBUILD})


@dataclass(frozen=True)
class SyncResult:
    """What applying a sync changed: keys inserted, updated, ignored (older or unchanged) and cancelled."""

    inserted: tuple[str, ...]
    updated: tuple[str, ...]
    ignored: tuple[str, ...]
    cancelled: tuple[str, ...]


class Scheduler:
    """Persists calendar occurrences and calls ``on_fire`` once for each, at its start minus ``lead``."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        grace: timedelta,
        lead: timedelta = timedelta(0),
        on_fire: Callable[[FiredOccurrence], Awaitable[None]],
        horizon: timedelta = timedelta(hours=24),
        sweep: timedelta | None = timedelta(seconds=30),
    ) -> None:
        self.store = store
        self.clock = clock
        self.grace = grace
        self.lead = lead
        self.horizon = horizon
        self.sweep = sweep
        self._on_fire = on_fire
        self._aps: AsyncIOScheduler | None = None
        self._rebuilding = asyncio.Lock()
        self._tasks: set[asyncio.Task[list[FiredOccurrence]]] = set()
        # APScheduler counts whole seconds; a job later than the grace would only find a missed call.
        self._misfire = max(1, math.ceil(grace.total_seconds()))

    @property
    def running(self) -> bool:
        """Whether the timed jobs are running."""
        return self._aps is not None

    async def start(self) -> None:
        """Record what was missed, call what is due within the grace, and set alarms for the rest."""
        if self._aps is not None:
            return
        self._aps = AsyncIOScheduler(timezone=UTC)
        self._aps.start()
        # A node that was down through a start still calls within the grace (claimed: once).
        await self.run_due()
        await self.reschedule()
        if self.sweep is not None:
            # Another node's sync changes the table without telling this node's alarms; the sweep
            # catches what it added close to now, and the claim makes the extra runs harmless.
            self._aps.add_job(
                self._alarm, "interval", seconds=self.sweep.total_seconds(), id=_SWEEP, coalesce=True
            )
        self._aps.add_job(
            self.reschedule, "interval", seconds=self.horizon.total_seconds() / 2, id=_REBUILD, coalesce=True
        )

    async def stop(self) -> None:
        """Stop the alarms and wait for calls already claimed to finish."""
        aps, self._aps = self._aps, None
        if aps is not None:
            # AsyncIOScheduler shuts down on the next loop turn: empty it now so that no alarm queued
            # meanwhile runs after stop() returned, then give it that turn.
            aps.remove_all_jobs()
            aps.shutdown(wait=False)
            await asyncio.sleep(0)
        # A claimed occurrence is history: its call must not be abandoned halfway.
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def apply(
        self,
        source: str,
        occurrences: Iterable[MeetingOccurrence],
        *,
        complete: bool,
        window: tuple[datetime, datetime] | None = None,
        uids: Iterable[str] | None = None,
    ) -> SyncResult:
        """Persist a sync of `source`; when `complete`, cancel its occurrences (in `window`, of `uids`)
        that are gone."""
        reported = list(occurrences)
        now = self.clock.now()
        async with self.store.transaction() as conn:
            result = await q.upsert(conn, source, reported, now)
            cancelled: list[str] = []
            if complete:
                present = [occ.key for occ in reported]
                only = None if uids is None else list(dict.fromkeys(uids))
                cancelled = await q.cancel_absent(conn, source, present, now, window=window, uids=only)
        if cancelled:
            log.info(
                "calendar %s: %d occurrence(s) no longer in the calendar, cancelled", source, len(cancelled)
            )
        await self.reschedule()
        return SyncResult(result.inserted, result.updated, result.ignored, tuple(cancelled))

    async def deleted(
        self, source: str | None, uids: Iterable[str], *, reason: str | None = None
    ) -> list[str]:
        """Cancel the pending occurrences of objects deleted from `source` (None: wherever seen)."""
        now = self.clock.now()
        cancelled: list[str] = []
        reason = reason or f"deleted from calendar {source}"
        async with self.store.transaction() as conn:
            for uid in dict.fromkeys(uids):
                cancelled += await q.cancel_uid(conn, source, uid, now, reason=reason)
        await self.reschedule()
        return cancelled

    async def reschedule(self) -> None:
        """Rebuild the alarms from the table: one date job per scheduled occurrence within the horizon."""
        async with self._rebuilding:  # a stale read must not undo a newer rebuild's jobs
            aps = self._aps
            if aps is None:
                return  # not started: the table holds everything, start() builds the alarms
            now = self.clock.now()
            async with self.store.read() as conn:
                pending = await q.scheduled_between(
                    conn, now + self.lead - self.grace, now + self.lead + self.horizon
                )
            # APScheduler runs on the wall clock; the delay is measured on the injected clock, so a fake
            # clock never makes an alarm ring early (and a late ring only finds nothing to claim).
            wall = datetime.now(UTC)
            wanted = {occ.key: wall + max(occ.start - self.lead - now, timedelta(0)) for occ in pending}
            for job in aps.get_jobs():
                if job.id not in _INTERNAL and job.id not in wanted:
                    job.remove()
            for key, run_at in wanted.items():
                aps.add_job(
                    self._alarm,
                    "date",
                    run_date=run_at,
                    id=key,
                    replace_existing=True,
                    misfire_grace_time=self._misfire,
                    coalesce=True,
                )

    def jobs(self) -> dict[str, datetime]:
        """The alarms set now: occurrence key → wall-clock time it rings."""
        if self._aps is None:
            return {}
        return {job.id: job.next_run_time for job in self._aps.get_jobs() if job.id not in _INTERNAL}

    async def run_due(self, now: datetime | None = None) -> list[FiredOccurrence]:
        """Record missed occurrences, claim every one due at `now` (default: the clock's) and call them."""
        now = self.clock.now() if now is None else now
        async with self.store.transaction() as conn:
            missed = await q.mark_missed(conn, now, self.grace, lead=self.lead)
            claimed = await q.claim_due(conn, now, self.grace, lead=self.lead)
        for occ in missed:
            log.warning("occurrence %s at %s was missed: %s", occ.key, occ.start.isoformat(), occ.reason)
        await asyncio.gather(*(self._fire(occ) for occ in claimed))
        return claimed

    async def _fire(self, occ: FiredOccurrence) -> None:
        """Call `on_fire` for a claimed occurrence; a failure is logged and recorded, never retried."""
        log.info("calling occurrence %s (%s) that starts at %s", occ.key, occ.summary, occ.start.isoformat())
        try:
            await self._on_fire(occ)
        except Exception as exc:
            # Retrying could call people twice; the claim already made this the one attempt.
            log.exception("the call for occurrence %s failed", occ.key)
            async with self.store.transaction() as conn:
                await q.note(conn, occ.key, f"the call failed: {exc!r}"[:1000], self.clock.now())

    async def _alarm(self) -> None:
        """What every APScheduler job runs: ``run_due``, shielded so that stopping waits for it."""
        if self._aps is None:
            return  # stopped while this alarm was queued
        task = asyncio.ensure_future(self.run_due())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._aps is None:
                return  # APScheduler shutting down cancels its jobs; stop() waits for the call itself
            raise
