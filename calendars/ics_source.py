"""An .ics feed over HTTP as a source: conditional GET, then one object per UID, diffed by content hash."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from icalendar import Calendar, Component

from calendars.sources import NO_CHANGES, CalendarObject, Changes, Clock, PollingSource, SourceError

_KEPT_CALENDAR_PROPERTIES = ("VERSION", "PRODID", "CALSCALE", "METHOD", "X-WR-CALNAME", "X-WR-TIMEZONE")
_END_VCALENDAR = b"END:VCALENDAR\r\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _referenced_tzids(components: Iterable[Component]) -> set[str]:
    found: set[str] = set()
    for component in components:
        for sub in component.walk():
            for value in sub.values():
                for item in value if isinstance(value, list) else (value,):
                    params = getattr(item, "params", None)
                    if params and "TZID" in params:
                        found.add(str(params["TZID"]))
    return found


def _component_order(component: Component) -> tuple[str, bool, bytes]:
    rid = component.get("RECURRENCE-ID")
    if rid is None:
        return (component.name, False, b"")
    raw = rid.to_ical() if hasattr(rid, "to_ical") else str(rid)
    return (component.name, True, raw if isinstance(raw, bytes) else raw.encode())


def split_by_uid(data: bytes) -> dict[str, bytes]:
    """Split a feed into one VCALENDAR per UID, keyed "uid:<UID>", with the VTIMEZONEs each one uses.

    Each object keeps the feed's VERSION, PRODID, CALSCALE, METHOD, X-WR-CALNAME and X-WR-TIMEZONE; its
    components are ordered master first, then overrides by RECURRENCE-ID, so the bytes are stable when
    the feed only reorders. A component without a UID gets "nouid:<hash>" (the interpreter reports it).
    Raises SourceError when the data is not iCalendar.
    """
    try:
        calendars = Calendar.from_ical(data, multiple=True)
    except ValueError as e:
        raise SourceError(f"not valid iCalendar data: {str(e)[:120]}") from e
    if not calendars or any(c.name != "VCALENDAR" for c in calendars):
        raise SourceError("not an iCalendar feed (no VCALENDAR)")
    head = Calendar()
    timezones: dict[str, bytes] = {}
    groups: dict[str, list[Component]] = {}
    for calendar in calendars:
        for name in _KEPT_CALENDAR_PROPERTIES:
            if name in calendar and name not in head:
                head[name] = calendar[name]
        for component in calendar.subcomponents:
            if component.name == "VTIMEZONE":
                timezones.setdefault(str(component.get("TZID", "")), component.to_ical())
                continue
            uid = component.get("UID")
            key = f"uid:{uid}" if uid else f"nouid:{_sha256(component.to_ical())[:32]}"
            groups.setdefault(key, []).append(component)
    header = head.to_ical()[: -len(_END_VCALENDAR)]
    default_tz = {str(head["X-WR-TIMEZONE"])} if "X-WR-TIMEZONE" in head else set()
    out: dict[str, bytes] = {}
    for key, components in groups.items():
        components.sort(key=_component_order)
        tzids = sorted((_referenced_tzids(components) | default_tz) & timezones.keys())
        parts = [header, *(timezones[t] for t in tzids), *(c.to_ical() for c in components), _END_VCALENDAR]
        out[key] = b"".join(parts)
    return out


def feed_etag(data: bytes) -> str:
    """sha256 of an object's bytes without its DTSTAMP lines (feeds such as Google's restamp every fetch)."""
    digest = hashlib.sha256()
    for line in data.split(b"\r\n"):
        if not line.startswith((b"DTSTAMP:", b"DTSTAMP;")):
            digest.update(line + b"\n")
    return digest.hexdigest()


def _split_and_tag(data: bytes) -> dict[str, CalendarObject]:
    return {href: CalendarObject(href, feed_etag(obj), obj) for href, obj in split_by_uid(data).items()}


def _diff(
    previous: Mapping[str, str | None] | None, current: Mapping[str, CalendarObject]
) -> tuple[tuple[CalendarObject, ...], tuple[str, ...], bool]:
    """(changed, deleted, full) between the etags known before and the objects present now."""
    if previous is None:
        return tuple(current[h] for h in sorted(current)), (), True
    changed = tuple(current[h] for h in sorted(current) if previous.get(h) != current[h].etag)
    return changed, tuple(sorted(set(previous) - current.keys())), False


def basic_auth(username: str, password: str | None) -> str:
    """The value of an Authorization header for HTTP Basic authentication (UTF-8, RFC 7617)."""
    return "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")


class IcsUrlSource(PollingSource):
    """An .ics feed fetched with conditional GET; reports one object per UID (href "uid:<UID>")."""

    kind = "ics"

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        max_bytes: int = 50 * 2**20,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock, secrets=(password,))
        self.url = "https://" + url[len("webcal://") :] if url.lower().startswith("webcal://") else url
        self._session = session
        self._auth = basic_auth(username, password) if username is not None else None
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._http_etag: str | None = None
        self._last_modified: str | None = None
        self._etags: dict[str, str | None] | None = None  # href -> etag; None before the first fetch

    async def _poll(self) -> Changes:
        headers = {"Accept": "text/calendar, */*;q=0.5"}
        if self._auth:
            headers["Authorization"] = self._auth
        if self._etags is not None:
            if self._http_etag:
                headers["If-None-Match"] = self._http_etag
            if self._last_modified:
                headers["If-Modified-Since"] = self._last_modified
        self._requests += 1
        try:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            async with self._session.get(self.url, headers=headers, timeout=timeout) as resp:
                if resp.status == 304 and self._etags is not None:
                    self._http_etag = resp.headers.get("ETag", self._http_etag)
                    return NO_CHANGES
                if resp.status in (401, 403):
                    raise SourceError(f"access denied (HTTP {resp.status})")
                if resp.status != 200:
                    raise SourceError(f"HTTP {resp.status} {resp.reason or ''}".strip())
                body = await self._read(resp)
                http_etag, last_modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        except TimeoutError as e:
            raise SourceError(f"timed out after {self._timeout:g} s") from e
        except aiohttp.ClientError as e:
            raise SourceError(f"request failed: {type(e).__name__}: {e}") from e
        objects = await asyncio.to_thread(_split_and_tag, body)
        changed, deleted, full = _diff(self._etags, objects)
        self._etags = {href: obj.etag for href, obj in objects.items()}
        self._http_etag, self._last_modified = http_etag, last_modified
        return Changes(changed, deleted, full)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self._max_bytes:
                raise SourceError(f"feed larger than {self._max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _count(self) -> int:
        return len(self._etags or ())

    def _dump(self) -> dict[str, Any]:
        return {"http_etag": self._http_etag, "last_modified": self._last_modified, "etags": self._etags}

    def _load(self, data: Mapping[str, Any]) -> None:
        etags = data["etags"]
        self._etags = None if etags is None else {str(k): v for k, v in dict(etags).items()}
        self._http_etag, self._last_modified = data.get("http_etag"), data.get("last_modified")
