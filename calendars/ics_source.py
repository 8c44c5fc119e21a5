"""An .ics feed over HTTP as a source: conditional GET, then one object per UID, diffed by content hash."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp

from calendars.sources import NO_CHANGES, CalendarObject, Changes, Clock, PollingSource, SourceError

_KEPT_CALENDAR_PROPERTIES = ("VERSION", "PRODID", "CALSCALE", "METHOD", "X-WR-CALNAME", "X-WR-TIMEZONE")
_KEPT_NAMES = tuple(name.encode() for name in _KEPT_CALENDAR_PROPERTIES)
_END_VCALENDAR = b"END:VCALENDAR\r\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_TEXT_ESCAPE = re.compile(rb"\\([\\;,nN])")


def _text(value: bytes) -> str:
    """A TEXT value (UID, TZID, X-WR-TIMEZONE) unescaped (RFC 5545 §3.3.11) and decoded."""
    if b"\\" in value:
        value = _TEXT_ESCAPE.sub(lambda m: b"\n" if m.group(1) in b"nN" else m.group(1), value)
    return value.decode("utf-8", "replace")


def _content_lines(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(unfolded line, the folded original joined with CRLF) for each non-empty content line.

    A line starting with a space or tab continues the previous one (RFC 5545 §3.1); bare LF is accepted.
    """
    pending: list[bytes] = []
    for physical in data.split(b"\n"):
        if physical.endswith(b"\r"):
            physical = physical[:-1]
        if pending and physical and physical[0] in (0x20, 0x09):
            pending.append(physical)
            continue
        if pending:
            if len(pending) == 1:
                yield pending[0], pending[0]
            else:
                yield pending[0] + b"".join(p[1:] for p in pending[1:]), b"\r\n".join(pending)
        pending = [physical] if physical else []
    if pending:
        yield pending[0] + b"".join(p[1:] for p in pending[1:]), b"\r\n".join(pending)


def _split_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    """(NAME upper-cased, parameters with their leading ';' or b"", value) of an unfolded content line.

    The value starts after the first ':' that is not inside a double-quoted parameter value.
    """
    colon = line.find(b":")
    semi = line.find(b";", 0, len(line) if colon < 0 else colon)
    if semi < 0:
        if colon < 0:
            return line.upper(), b"", b""
        return line[:colon].upper(), b"", line[colon + 1 :]
    pos = semi
    while True:
        colon = line.find(b":", pos)
        quote = line.find(b'"', pos)
        if colon < 0:
            return line[:semi].upper(), line[semi:], b""
        if quote < 0 or colon < quote:
            return line[:semi].upper(), line[semi:colon], line[colon + 1 :]
        closing = line.find(b'"', quote + 1)
        if closing < 0:
            return line[:semi].upper(), line[semi:], b""
        pos = closing + 1


def _tzid_params(params: bytes) -> Iterator[str]:
    """The TZID parameter values in a property's parameter text (";NAME=value;..." with quoted values)."""
    for match in _PARAM.finditer(params):
        if match.group(1).upper() == b"TZID":
            value = match.group(2)
            yield (value[1:-1] if value[:1] == b'"' else value).decode("utf-8", "replace")


_PARAM = re.compile(rb';([^;=:"]*)=("[^"]*"|[^;",]*)')


class _Component:
    __slots__ = ("lines", "name", "rid", "tzids", "uid")

    def __init__(self, name: str, line: bytes) -> None:
        self.name = name
        self.lines = [line]
        self.uid: str | None = None
        self.rid: bytes | None = None
        self.tzids: set[str] = set()

    def order(self) -> tuple[str, bool, bytes]:
        return (self.name, self.rid is not None, self.rid or b"")


def _check_feed(data: bytes) -> None:
    start = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start:
        raise SourceError("not valid iCalendar data: the feed is empty")
    if start[:15].upper() != b"BEGIN:VCALENDAR" or (
        b"END:VCALENDAR" not in data and b"end:vcalendar" not in data.lower()
    ):
        raise SourceError("not an iCalendar feed (no VCALENDAR)")


def split_by_uid(data: bytes) -> dict[str, bytes]:
    """Split a feed into one VCALENDAR per UID, keyed "uid:<UID>", with the VTIMEZONEs each one uses.

    Each object keeps the feed's VERSION, PRODID, CALSCALE, METHOD, X-WR-CALNAME and X-WR-TIMEZONE; its
    components are ordered master first, then overrides by RECURRENCE-ID, so the bytes are stable when
    the feed only reorders. A component without a UID gets "nouid:<hash>" (the interpreter reports it).
    Components are cut out of the text as they are (folded lines kept, CRLF line endings), not re-encoded.
    Raises SourceError when the data is not iCalendar.
    """
    _check_feed(data)
    head: dict[bytes, tuple[bytes, bytes]] = {}  # kept property -> (line, value); the first calendar wins
    calendar_props: dict[bytes, tuple[bytes, bytes]] = {}
    timezones: dict[str, bytes] = {}
    groups: dict[str, list[_Component]] = {}
    stack: list[bytes] = []
    current: _Component | None = None
    for line, raw in _content_lines(data.lstrip(b"\xef\xbb\xbf")):
        name, params, value = _split_line(line)
        if name == b"BEGIN":
            kind = value.strip().upper()
            if not stack and kind != b"VCALENDAR":
                raise SourceError(
                    f"not an iCalendar feed ({kind.decode('ascii', 'replace')[:40]} outside VCALENDAR)"
                )
            stack.append(kind)
            if len(stack) == 2:
                current = _Component(kind.decode("ascii", "replace"), raw)
            elif current is not None:
                current.lines.append(raw)
        elif name == b"END":
            kind = value.strip().upper()
            if not stack or stack[-1] != kind:
                raise SourceError(
                    f"not valid iCalendar data: unexpected END:{kind.decode('ascii', 'replace')[:40]}"
                )
            stack.pop()
            if current is not None:
                current.lines.append(raw)
            if len(stack) == 1 and current is not None:
                body = b"\r\n".join(current.lines) + b"\r\n"
                if current.name == "VTIMEZONE":
                    timezones.setdefault(current.uid or "", body)
                else:
                    key = f"uid:{current.uid}" if current.uid else f"nouid:{_sha256(body)[:32]}"
                    groups.setdefault(key, []).append(current)
                    current.lines = [body]
                current = None
            elif not stack:
                for kept in _KEPT_NAMES:
                    if kept in calendar_props and kept not in head:
                        head[kept] = calendar_props[kept]
                calendar_props = {}
        elif current is not None:
            current.lines.append(raw)
            if params and b"TZID=" in params.upper():
                current.tzids.update(_tzid_params(params))
            if len(stack) == 2:
                # the TZID of a VTIMEZONE is kept in `uid` (the key it is filed under)
                if current.uid is None and name == (b"TZID" if current.name == "VTIMEZONE" else b"UID"):
                    current.uid = _text(value)
                elif name == b"RECURRENCE-ID" and current.rid is None:
                    current.rid = value
        elif len(stack) == 1 and name in _KEPT_NAMES:
            calendar_props.setdefault(name, (raw, value))
    if stack:
        raise SourceError(
            "not valid iCalendar data: the feed ends inside " + stack[-1].decode("ascii", "replace")
        )
    default_tz = {_text(head[b"X-WR-TIMEZONE"][1])} if b"X-WR-TIMEZONE" in head else set()
    header = b"".join([b"BEGIN:VCALENDAR\r\n", *(line + b"\r\n" for line, _ in head.values())])
    out: dict[str, bytes] = {}
    for key, components in groups.items():
        components.sort(key=_Component.order)
        tzids: set[str] = set().union(*(c.tzids for c in components))
        used = sorted((tzids | default_tz) & timezones.keys())
        parts = [header, *(timezones[t] for t in used), *(c.lines[0] for c in components), _END_VCALENDAR]
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
