"""Calendar sources: fetch raw calendar objects and report what changed, with no interpretation.

A source answers `poll()` with `Changes` (objects added or modified, hrefs deleted, and whether the
answer is a complete listing), keeps its sync state in memory, and exports/imports that state as JSON-able
data (`snapshot()` / `restore()`) so that the application can persist it. A failed poll raises
`SourceError` with a short reason and leaves the sync state as it was, so the next poll reports the same
changes again; `Backoff` spaces the retries.

The sources live in their own modules and are importable from here (lazily: the caldav library is heavy):
`IcsUrlSource` (`calendars.ics_source`, an .ics feed over HTTP), `FolderSource` (`calendars.folder_source`,
a folder of .ics files) and `CalDavSource` (`calendars.caldav_source`, a CalDAV collection).
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from calendars.caldav_source import CalDavSource
    from calendars.folder_source import FolderSource
    from calendars.ics_source import IcsUrlSource, split_by_uid

__all__ = [
    "Backoff",
    "CalDavSource",
    "CalendarObject",
    "Changes",
    "FolderSource",
    "IcsUrlSource",
    "Source",
    "SourceError",
    "SourceState",
    "split_by_uid",
]

Clock = Callable[[], datetime]
SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class CalendarObject:
    """One calendar object as its source holds it: href, an opaque version tag and the raw iCalendar bytes."""

    href: str
    etag: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since the last poll; `full` means a complete listing (anything not listed is gone)."""

    changed: tuple[CalendarObject, ...] = ()
    deleted: tuple[str, ...] = ()
    full: bool = False

    @property
    def empty(self) -> bool:
        """True when there is nothing to apply."""
        return not (self.changed or self.deleted or self.full)


NO_CHANGES = Changes()


@dataclass(frozen=True, slots=True)
class SourceState:
    """How a source is doing: last successful poll, last error (None once it recovers), objects, requests."""

    last_sync: datetime | None = None
    last_error: str | None = None
    objects: int = 0
    requests: int = 0


class SourceError(Exception):
    """A poll failed for a reason to show an admin (network, authentication, server or parse error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Source(Protocol):
    """What the watcher needs from a calendar source."""

    @property
    def state(self) -> SourceState:
        """The source's current health and size."""
        ...

    async def poll(self) -> Changes:
        """Fetch what changed since the previous poll; raise SourceError on failure."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """The sync state as JSON-able data."""
        ...

    def restore(self, data: Mapping[str, Any]) -> None:
        """Continue from a snapshot(); raise ValueError when it is not one of this kind."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class Backoff:
    """When to poll next: `interval` after a success, doubling per failure up to `maximum` (seconds)."""

    def __init__(self, interval: float, maximum: float) -> None:
        if interval <= 0 or maximum < interval:
            raise ValueError("Backoff needs 0 < interval <= maximum")
        self.interval = interval
        self.maximum = maximum
        self.failures = 0
        self.next_at: float | None = None

    @property
    def delay(self) -> float:
        """Seconds between the latest outcome and the next attempt."""
        if not self.failures:
            return self.interval
        return min(self.interval * 2 ** min(self.failures, 32), self.maximum)

    def success(self, now: float) -> float:
        """Record a successful poll at `now`; return when to poll next."""
        self.failures = 0
        self.next_at = now + self.delay
        return self.next_at

    def failure(self, now: float) -> float:
        """Record a failed poll at `now`; return when to retry."""
        self.failures += 1
        self.next_at = now + self.delay
        return self.next_at

    def due(self, now: float) -> bool:
        """True when the next attempt may start."""
        return self.next_at is None or now >= self.next_at


def _utcnow() -> datetime:
    return datetime.now(UTC)


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


class PollingSource:
    """Shared bookkeeping: one poll at a time, state updated after each poll, snapshot framing."""

    kind: ClassVar[str]

    def __init__(self, clock: Clock | None, secrets: Iterable[str | None] = ()) -> None:
        self._clock = clock or _utcnow
        self._secrets = tuple(s for s in secrets if s)
        self._state = SourceState()
        self._requests = 0
        self._lock = asyncio.Lock()

    @property
    def state(self) -> SourceState:
        """The source's current health and size."""
        return self._state

    async def poll(self) -> Changes:
        """Fetch what changed since the previous poll; raise SourceError on failure."""
        async with self._lock:
            try:
                changes = await self._poll()
            except SourceError as e:
                e.reason = self._redact(e.reason)
                e.args = (e.reason,)
                self._state = replace(self._state, last_error=e.reason, requests=self._requests)
                raise
            except Exception as e:
                reason = self._redact(f"unexpected {type(e).__name__}: {e}")
                self._state = replace(self._state, last_error=reason, requests=self._requests)
                raise
            self._state = SourceState(self._clock(), None, self._count(), self._requests)
            return changes

    def snapshot(self) -> dict[str, Any]:
        """The sync state as JSON-able data."""
        last = self._state.last_sync
        return {
            "kind": self.kind,
            "version": SNAPSHOT_VERSION,
            "last_sync": last.isoformat() if last else None,
            **self._dump(),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Continue from a snapshot(); raise ValueError when it is not one of this kind."""
        if data.get("kind") != self.kind or data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"not a {self.kind} source snapshot (version {SNAPSHOT_VERSION})")
        try:
            last = datetime.fromisoformat(data["last_sync"]) if data.get("last_sync") else None
            self._load(data)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"invalid {self.kind} source snapshot: {e!r}") from e
        self._state = replace(self._state, last_sync=last, objects=self._count())

    async def close(self) -> None:
        """Release connections (nothing to release by default)."""

    def _redact(self, text: str) -> str:
        text = _USERINFO.sub("", text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def _poll(self) -> Changes:
        raise NotImplementedError

    def _count(self) -> int:
        raise NotImplementedError

    def _dump(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load(self, data: Mapping[str, Any]) -> None:
        raise NotImplementedError


_LAZY = {
    "CalDavSource": "calendars.caldav_source",
    "FolderSource": "calendars.folder_source",
    "IcsUrlSource": "calendars.ics_source",
    "split_by_uid": "calendars.ics_source",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
