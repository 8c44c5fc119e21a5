"""Watched calendars and the iMIP inbox → the occurrences the scheduler calls (SPEC §5).

Each `[[calendars]]` source is polled on its own task with a backoff, so a failing calendar never
holds up the others. A poll reports changed objects; the objects that name the meeting domain are
interpreted over the look-ahead window and kept in the database, so that recurring meetings are read
further ahead as time passes (``REWINDOW``) without fetching the calendar again, and a restart
continues from the stored sync state. Mailed invitations (iMIP) are
``chimebot.imip``'s.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from calendars.invites import (
    InvalidCalendar,
    MeetingAddresses,
    MeetingOccurrence,
    interpret,
)
from calendars.sources import Backoff, Changes, Source, SourceError
from chimebot.clock import Clock
from chimebot.config import IMIP_SOURCE, CalendarDecl, Config
from chimebot.models import iso
from chimebot.scheduler import Scheduler, StoredOccurrence
from chimebot.store import Store
from chimebot.store import accounts as qa
from chimebot.store import calendars as qc
from chimebot.store import occurrences as qo

log = logging.getLogger(__name__)

# How often the kept objects are read again for the window that moved on (new instances of series).
REWINDOW = timedelta(hours=1)
# A failing source retries after poll_seconds, doubling per failure up to this many times that.
BACKOFF_FACTOR = 32
_FOLD = re.compile(rb"\r?\n[ \t]")

Vet = Callable[[Sequence[StoredOccurrence]], Awaitable[None]]


@dataclass(frozen=True)
class CalendarStatus:
    """How a calendar source is doing, as `chimebot calendar status` and the API show it."""

    name: str
    kind: str
    last_sync: datetime | None
    last_error: str | None
    objects: int
    requests: int
    problems: tuple[str, ...]
    occurrences: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """The status as JSON."""
        return {
            "name": self.name,
            "kind": self.kind,
            "last_sync": iso(self.last_sync) if self.last_sync else None,
            "last_error": self.last_error,
            "objects": self.objects,
            "requests": self.requests,
            "problems": list(self.problems),
            "occurrences": self.occurrences,
        }


@dataclass(frozen=True)
class SyncReport:
    """What one sync of a source did."""

    changed: int
    deleted: int
    occurrences: int
    cancelled: int
    problems: tuple[str, ...]


def unreadable(exc: Exception) -> str:
    """Why a calendar object could not be read, for an admin."""
    if isinstance(exc, InvalidCalendar):
        return exc.reason
    return f"unreadable ({type(exc).__name__}: {exc})"[:300]


def occurrence_json(occ: StoredOccurrence) -> dict[str, Any]:
    """An occurrence as `chimebot calendar occurrences --json` and the API list it."""
    return {
        "key": occ.key,
        "uid": occ.uid,
        "source": occ.source,
        "meeting_id": occ.meeting_id,
        "start": iso(occ.start),
        "end": iso(occ.end),
        "summary": occ.summary,
        "organizer": occ.organizer,
        "attendees": list(occ.attendees),
        "state": occ.state,
        "reason": occ.reason,
        "fired_at": iso(occ.fired_at) if occ.fired_at else None,
    }


class Calendars:
    """Keeps the occurrences table in line with every watched calendar and mailed invitation."""

    def __init__(self, config: Config, store: Store, scheduler: Scheduler, clock: Clock, vet: Vet) -> None:
        self._config = config
        self._store = store
        self._scheduler = scheduler
        self._clock = clock
        self._vet = vet
        self._addresses = MeetingAddresses(config.meeting_domain)
        self._domain = b"@" + config.meeting_domain.lower().encode()
        self._lookahead = timedelta(days=config.scheduler.lookahead_days)
        self._grace = timedelta(minutes=config.scheduler.grace_minutes)
        self._decls = {decl.name: decl for decl in config.calendars}
        self._sources: dict[str, Source] = {}
        self._locks = {name: asyncio.Lock() for name in self._decls}
        self._windowed: dict[str, datetime] = {}  # source → when its kept objects were last read in full
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def addresses(self) -> MeetingAddresses:
        """The meeting addresses that invitations name."""
        return self._addresses

    @property
    def names(self) -> list[str]:
        """The configured calendars' names."""
        return list(self._decls)

    async def open(self) -> None:
        """Create the sources and continue each from its stored sync state."""
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession()
        async with self._store.read() as conn:
            stored = {row.name: row for row in await qc.sources(conn)}
        for name in self._decls:
            self._sources[name] = self._resume(name, stored.get(name))

    async def start(self) -> None:
        """Open the sources and poll each on its own task."""
        await self.open()
        self._tasks = [asyncio.create_task(self._run(name), name=f"calendar {name}") for name in self._decls]

    async def stop(self) -> None:
        """Stop polling and release connections."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for source in self._sources.values():
            await source.close()
        self._sources.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def sync_all(self) -> dict[str, SyncReport | SourceError]:
        """Sync every calendar once, concurrently; a failure is reported for its calendar only."""
        await self.open()

        async def one(name: str) -> SyncReport | SourceError:
            try:
                return await self.sync(name)
            except SourceError as exc:
                return exc

        results = await asyncio.gather(*(one(name) for name in self._decls))
        return dict(zip(self._decls, results, strict=True))

    async def sync(self, name: str) -> SyncReport:
        """Poll one calendar and apply what changed; raise SourceError (recorded in its status) on failure."""
        if self._session is None:
            await self.open()
        source = self._sources[name]
        async with self._locks[name]:
            try:
                changes = await source.poll()
            except SourceError:
                await self._save_state(name, source, problems=None)
                raise
            except Exception as exc:  # a library bug must not end the loop; the state says what failed
                await self._save_state(name, source, problems=None)
                # The source's own (redacted) account of the error: the exception may hold a password.
                raise SourceError(source.state.last_error or type(exc).__name__) from None
            try:
                report = await self._apply(name, self._decls[name].time_zone, changes)
            except Exception:
                # The source's sync state already moved past these changes: go back to the last
                # stored state, so that the next poll reports them again instead of losing them.
                await self._rewind(name)
                raise
            await self._save_state(name, source, problems=report.problems)
        if report.changed or report.deleted or report.cancelled:
            log.info(
                "calendar %s: %d object(s) changed, %d deleted; %d occurrence(s), %d cancelled",
                name,
                report.changed,
                report.deleted,
                report.occurrences,
                report.cancelled,
            )
        for problem in report.problems:
            log.warning("calendar %s: skipped: %s", name, problem)
        return report

    async def _rewind(self, name: str) -> None:
        """Replace a source by one continuing from its last stored sync state (or starting over)."""
        async with self._store.read() as conn:
            row = {row.name: row for row in await qc.sources(conn)}.get(name)
        await self._sources[name].close()
        self._sources[name] = self._resume(name, row)

    def _resume(self, name: str, row: qc.SourceRow | None) -> Source:
        """A new source for a calendar, continuing from its stored sync state when there is a usable one."""
        source = self._make(self._decls[name])
        if row is not None and row.snapshot is not None:
            try:
                source.restore(row.snapshot)
            except ValueError as exc:  # the calendar's kind or URL changed: start over
                log.info("calendar %s: starting a full sync (%s)", name, exc)
                source = self._make(self._decls[name])
        return source

    async def status(self) -> list[CalendarStatus]:
        """Every configured calendar (and the iMIP inbox, when it listens or has been used)."""
        async with self._store.read() as conn:
            stored = {row.name: row for row in await qc.sources(conn)}
            counts = await qo.counts(conn)
        names = list(self._decls)
        if self._config.imip.listen or IMIP_SOURCE in stored:
            names.append(IMIP_SOURCE)
        found = []
        for name in names:
            row = stored.get(name)
            kind = self._decls[name].kind if name in self._decls else IMIP_SOURCE
            found.append(
                CalendarStatus(
                    name=name,
                    kind=kind,
                    last_sync=row.last_sync if row else None,
                    last_error=row.last_error if row else None,
                    objects=row.objects if row else 0,
                    requests=row.requests if row else 0,
                    problems=row.problems if row else (),
                    occurrences=counts.get(name, {}),
                )
            )
        return found

    async def occurrences(
        self, *, states: Iterable[str] | None = None, source: str | None = None, since: datetime | None = None
    ) -> list[StoredOccurrence]:
        """The stored occurrences by start time, optionally of some states, one source, or from `since`."""
        async with self._store.read() as conn:
            return await qo.listing(conn, states=states, source=source, since=since)

    async def users_of_account(self, account_id: str, emails: Iterable[str]) -> set[str]:
        """Which of these addresses belong to users of the account."""
        async with self._store.read() as conn:
            return {
                user.email for user in await qa.users_by_emails(conn, emails) if user.account_id == account_id
            }

    # -- internals -------------------------------------------------------------------------------

    def _make(self, decl: CalendarDecl) -> Source:
        """The source a calendar's config asks for."""
        password = decl.password or None
        username = decl.username or None
        if decl.kind == "caldav":
            from calendars.caldav_source import CalDavSource  # heavy: only when a CalDAV calendar is used

            return CalDavSource(decl.url, username, password, clock=self._clock.now)
        if decl.kind == "ics":
            from calendars.ics_source import IcsUrlSource

            assert self._session is not None
            return IcsUrlSource(
                decl.url, self._session, username=username, password=password, clock=self._clock.now
            )
        from calendars.folder_source import FolderSource

        return FolderSource(decl.url, clock=self._clock.now)

    def window(self) -> tuple[datetime, datetime]:
        """The start times read from calendars: from the grace period ago to the look-ahead."""
        now = self._clock.now()
        return now - self._grace, now + self._lookahead

    def mentions_domain(self, data: bytes) -> bool:
        """Whether an object may invite a meeting address (a cheap test before parsing it)."""
        return self._domain in _FOLD.sub(b"", data).lower()

    async def _apply(self, name: str, zone: str, changes: Changes) -> SyncReport:
        """Interpret what a poll reported and persist it: occurrences, kept objects, cancellations."""
        start, end = self.window()
        now = self._clock.now()
        async with self._store.read() as conn:
            if changes.full:
                kept = await qc.uids_of(conn, name)
            else:
                kept = await qc.uids_of(conn, name, [o.href for o in changes.changed] + list(changes.deleted))
            texts = {}
            if changes.full or now - self._windowed.get(name, now - REWINDOW) >= REWINDOW:
                texts = dict(await qc.objects_of(conn, name))  # the window moved: read everything again
        changed = {o.href: o.data for o in changes.changed}
        # Reading thousands of objects takes seconds of CPU: in a thread, requests keep being served.
        found, problems, uids, keep, forget = await asyncio.to_thread(
            self._read, changed, kept, texts, set(changes.deleted), changes.full, zone, (start, end)
        )
        if texts or changes.full:
            self._windowed[name] = now
        # An object that moved to another href in the same sync is still there under its new name.
        still = {occ.uid for occ in found} | {uid for _, object_uids, _ in keep for uid in object_uids}
        deleted_uids = [uid for href in changes.deleted for uid in kept.get(href, ()) if uid not in still]
        result = await self._scheduler.apply(
            name, found, complete=True, window=(start, end), uids=None if changes.full else sorted(uids)
        )
        cancelled = list(result.cancelled)
        if deleted_uids:
            cancelled += await self._scheduler.deleted(name, deleted_uids)
        async with self._store.transaction() as conn:
            await qc.forget(conn, name, forget)
            await qc.keep(conn, name, keep, now)
        await self.vet_keys([*result.inserted, *result.updated])
        return SyncReport(len(changed), len(changes.deleted), len(found), len(cancelled), tuple(problems))

    def _read(
        self,
        changed: dict[str, bytes],
        kept: dict[str, list[str]],
        texts: dict[str, str],
        deleted: set[str],
        full: bool,
        zone: str,
        window: tuple[datetime, datetime],
    ) -> tuple[list[MeetingOccurrence], list[str], set[str], list[tuple[str, list[str], str]], list[str]]:
        """Interpret changed objects (and kept ones, for a moved window): the occurrences found, the
        problems, the UIDs the result speaks for completely, the objects to keep and those to forget."""
        start, end = window
        found: list[MeetingOccurrence] = []
        problems: list[str] = []
        uids: set[str] = set()
        keep: list[tuple[str, list[str], str]] = []
        forget: list[str] = []
        for href, data in changed.items():
            if not self.mentions_domain(data):
                uids.update(kept.get(href, ()))  # its meetings, if it had any, are gone
                if href in kept:
                    forget.append(href)
                continue
            try:
                result = interpret(data, self._addresses, start=start, end=end, default_zone=zone)
            except Exception as exc:  # malformed objects are skipped and reported, never fatal (SPEC §5)
                problems.append(f"{href}: {unreadable(exc)}")
                if href not in texts:
                    continue  # an incremental sync leaves its UIDs alone: the last version stays in force
                # A complete sync cancels what it does not see: read the last readable version instead.
                result = interpret(
                    texts[href].encode(), self._addresses, start=start, end=end, default_zone=zone
                )
            else:
                keep.append((href, list(result.uids), data.decode("utf-8", "replace")))
            problems.extend(f"{href}: {p}" for p in result.problems)
            found.extend(result.occurrences)
            uids.update(kept.get(href, ()))  # what the object held before may be gone now
            uids.update(result.uids)
        # Kept objects that the poll did not report are read again for the moved window.
        for href, text in texts.items():
            if href in changed or href in deleted or full:
                continue
            try:
                result = interpret(text.encode(), self._addresses, start=start, end=end, default_zone=zone)
            except Exception as exc:  # it was readable when kept; leave its occurrences alone
                problems.append(f"{href}: {unreadable(exc)}")
                continue
            found.extend(result.occurrences)
            uids.update(result.uids)
        if full:
            forget.extend(href for href in kept if href not in changed)
        forget.extend(href for href in deleted if href in kept)
        return found, problems, uids, keep, forget

    async def vet_keys(self, keys: Sequence[str]) -> None:
        """Hand the new or changed occurrences to the organizer check."""
        if not keys:
            return
        async with self._store.read() as conn:
            stored = await qo.by_keys(conn, keys)
        pending = [occ for occ in stored.values() if occ.state in (qo.SCHEDULED, qo.REJECTED)]
        if pending:
            await self._vet(pending)

    async def _save_state(self, name: str, source: Source, *, problems: Sequence[str] | None) -> None:
        """Store a source's sync state and health (problems None: keep the last sync's)."""
        state = source.state
        async with self._store.transaction() as conn:
            previous = {row.name: row for row in await qc.sources(conn)}.get(name)
            row = qc.SourceRow(
                name=name,
                kind=self._decls[name].kind,
                snapshot=source.snapshot()
                if state.last_error is None
                else (previous.snapshot if previous else None),
                last_sync=state.last_sync,
                last_error=state.last_error,
                objects=state.objects,
                requests=state.requests,
                problems=tuple(problems) if problems is not None else (previous.problems if previous else ()),
                updated_at=self._clock.now(),
            )
            await qc.save_source(conn, row)

    async def _run(self, name: str) -> None:
        """Poll one calendar forever, backing off while it fails."""
        interval = self._decls[name].poll_seconds
        backoff = Backoff(interval, interval * BACKOFF_FACTOR)
        while True:
            try:
                await self.sync(name)
            except SourceError as exc:
                backoff.failure(time.monotonic())
                log.warning("calendar %s: %s; next try in %.0f s", name, exc.reason, backoff.delay)
            except Exception:
                backoff.failure(time.monotonic())
                log.exception("calendar %s: sync failed; next try in %.0f s", name, backoff.delay)
            else:
                backoff.success(time.monotonic())
            await asyncio.sleep(backoff.delay)


__all__ = ["CalendarStatus", "Calendars", "SyncReport", "occurrence_json"]
