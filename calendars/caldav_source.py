"""A CalDAV collection as a source: RFC 6578 sync-collection plus calendar-multiget, or ctag/etag diffing.

Transport: caldav 3's async client (`caldav.aio.AsyncDAVClient`, on niquests' AsyncSession) is used for
HTTP, authentication negotiation and parsing the multistatus replies; the REPORT bodies are our own.
caldav's object layer (`Calendar.get_objects_by_sync_token(load_objects=False)`, `Calendar.multiget`)
works against Radicale too, but it builds a resource object per href on the event loop (about 0.2 s of
CPU per 1,000 objects, measured) and its multiget drops the per-href status, so a 404 (deleted since the
sync report) cannot be told from an href the server left out; `AsyncDAVClient.calendar_multiget()` in
3.6 sends empty <href/>s (Radicale answers 500). No thread is needed: the client is natively async.

A poll:
- first poll, or the server refused our token (403 DAV:valid-sync-token, 400/409/412, ...): sync-collection
  without a token lists every href with its etag, then calendar-multiget fetches the bodies (batches of
  `multiget_batch`) and the answer is a complete listing (`full=True`);
- then: sync-collection with the stored token (1 request), and when something changed ONE
  calendar-multiget for the changed hrefs; removed members are reported deleted;
- servers without sync-collection (detected on the first poll, or `use_sync_token=False`): PROPFIND the
  ctag (Depth 0; unchanged ctag = no changes, 1 request), else PROPFIND getetag (Depth 1), diff the
  etags, multiget what changed.
An href the multiget leaves out is retried on the next poll; one it answers 404 for is deleted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

from caldav.async_davclient import AsyncDAVClient, DAVResponse
from caldav.lib import error

from calendars.sources import NO_CHANGES, CalendarObject, Changes, Clock, PollingSource, SourceError

log = logging.getLogger(__name__)

_VALID_SYNC_TOKEN = "{DAV:}valid-sync-token"  # noqa: S105 (an XML element name)
_SUPPORTED_REPORT = "{DAV:}supported-report"
_GETETAG = "{DAV:}getetag"
_GETCTAG = "{http://calendarserver.org/ns/}getctag"
_CTAG_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/></d:prop>'
    "</d:propfind>"
)
_MAX_SYNC_PAGES = 100


class _TokenRefused(Exception):
    """The server does not accept our sync token any more."""


class _SyncUnsupported(Exception):
    """The server does not do sync-collection on this collection."""


class _CountingClient(AsyncDAVClient):
    """AsyncDAVClient that reports each request it sends (the 401 round of auth negotiation excepted)."""

    def __init__(self, *args: Any, on_request: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_request = on_request

    async def request(
        self,
        url: str,
        method: str = "GET",
        body: str = "",
        headers: Mapping[str, str] | None = None,
        rate_limit_time_slept: float = 0,
    ) -> DAVResponse:
        self._on_request()
        return await super().request(url, method, body, headers, rate_limit_time_slept)


def _multiget_body(hrefs: Iterable[str]) -> str:
    refs = "".join(f"<d:href>{escape(h)}</d:href>" for h in hrefs)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        f"<d:prop><d:getetag/><c:calendar-data/></d:prop>{refs}</c:calendar-multiget>"
    )


class CalDavSource(PollingSource):
    """A CalDAV calendar collection; href = the object's path (percent-decoded), etag = the server's."""

    kind = "caldav"

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout: float = 30.0,
        use_sync_token: bool | None = None,
        multiget_batch: int = 1000,
        clock: Clock | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.username is not None:  # credentials in the URL: use them, keep them out of url/snapshots
            if username is None:
                username, password = unquote(parts.username), unquote(parts.password or "") or password
            parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        super().__init__(clock, secrets=(password,))
        url = parts.geturl()
        self.url = url if url.endswith("/") else url + "/"
        self._path = self._key(self.url)
        self._username, self._password = username, password
        self._timeout = timeout
        self._batch = max(1, multiget_batch)
        self._mode: str | None = None if use_sync_token is None else ("sync" if use_sync_token else "etag")
        self._forced = use_sync_token is not None
        self._token: str | None = None
        self._ctag: str | None = None
        self._etags: dict[str, str | None] | None = None  # href -> etag; None before the first listing
        self._pending: set[str] = set()  # changed hrefs the server left out of a multiget
        self._client: _CountingClient | None = None

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # --- polling ----------------------------------------------------------------------------------

    async def _poll(self) -> Changes:
        client = self._connect()
        try:
            if self._mode == "etag":
                return await self._poll_etags(client)
            try:
                changes = await self._poll_sync(client)
                self._mode = "sync"
                return changes
            except _SyncUnsupported as e:
                if self._forced:
                    raise SourceError(f"the server refuses sync-collection ({e})") from e
                log.info("%s: no sync-collection (%s); diffing etags instead", self.url, e)
                changes = await self._poll_etags(client)
                self._mode = "etag"
                return changes
        except error.AuthorizationError as e:
            what = "authentication failed" if e.status == 401 else "access denied"
            raise SourceError(f"{what} (HTTP {e.status or 401})") from e
        except error.DAVError as e:
            raise SourceError(f"server error (HTTP {e.status or '?'}: {e.reason})") from e
        except TimeoutError as e:
            raise SourceError(f"timed out after {self._timeout:g} s") from e
        except OSError as e:  # niquests' ConnectionError, Timeout, ... are OSErrors
            raise SourceError(self._network_reason(e)) from e
        except (SyntaxError, ValueError) as e:  # lxml's XMLSyntaxError is a SyntaxError
            raise SourceError(f"unreadable reply from the server: {str(e)[:160]}") from e

    def _network_reason(self, e: OSError) -> str:
        if "Timeout" in type(e).__name__:
            return f"timed out after {self._timeout:g} s"
        where = urlsplit(self.url)
        detail = re.search(r"\[Errno -?\d+\] ([^'\"\](]+)", str(e))
        cause = detail.group(1).strip() if detail else type(e).__name__
        return f"cannot connect to {where.hostname}:{where.port or where.scheme}: {cause}"

    def _connect(self) -> _CountingClient:
        if self._client is None:
            self._client = _CountingClient(
                url=self.url,
                username=self._username,
                password=self._password,
                timeout=self._timeout,  # type: ignore[arg-type]  # niquests takes float seconds
                enable_rfc6764=False,
                rate_limit_handle=False,  # our Backoff spaces retries; never sleep inside a poll
                on_request=self._count_request,
            )
        return self._client

    def _count_request(self) -> None:
        self._requests += 1

    def _key(self, href: str) -> str:
        return unquote(urlsplit(href).path)

    async def _poll_sync(self, client: AsyncDAVClient) -> Changes:
        if self._token is None or self._etags is None:
            return await self._full_sync(client)
        try:
            listed, removed, token = await self._sync_collection(client, self._token)
        except _TokenRefused as e:
            log.info("%s: sync token refused (%s); full resync", self.url, e)
            return await self._full_sync(client)
        known = self._etags
        wanted = {k: wire for k, (wire, etag) in listed.items() if etag is None or known.get(k) != etag}
        wanted.update({k: quote(k) for k in self._pending - wanted.keys() - removed})
        fetched, gone, missing = await self._multiget(client, wanted)
        etags = dict(known)
        for key in removed | gone:
            etags.pop(key, None)
        changed = []
        for key, obj in sorted(fetched.items()):
            if obj.etag is None or known.get(key) != obj.etag:
                changed.append(obj)
            etags[key] = obj.etag
        deleted = tuple(sorted(k for k in removed | gone if k in known))
        self._token, self._etags, self._pending = token, etags, missing
        return Changes(tuple(changed), deleted, False)

    async def _full_sync(self, client: AsyncDAVClient) -> Changes:
        listed, _, token = await self._sync_collection(client, None)
        if not token:
            raise _SyncUnsupported("no sync-token in the reply")
        fetched, _gone, missing = await self._multiget(client, {k: w for k, (w, _) in listed.items()})
        self._token, self._pending = token, missing
        self._etags = {k: obj.etag for k, obj in fetched.items()}
        return Changes(tuple(fetched[k] for k in sorted(fetched)), (), True)

    async def _sync_collection(
        self, client: AsyncDAVClient, token: str | None
    ) -> tuple[dict[str, tuple[str, str | None]], set[str], str | None]:
        """(href -> (wire href, etag), removed hrefs, new token), following truncated replies."""
        listed: dict[str, tuple[str, str | None]] = {}
        removed: set[str] = set()
        for _ in range(_MAX_SYNC_PAGES):
            try:
                # RFC 6578 section 3.2: Depth 0 (caldav's default of 1 is refused by some servers).
                resp = await client.sync_collection(self.url, sync_token=token, props=["getetag"], depth=0)
            except error.AuthorizationError as e:
                if token and (e.status == 403 or _VALID_SYNC_TOKEN in e.preconditions):
                    raise _TokenRefused(f"HTTP {e.status}") from e
                if not token and _SUPPORTED_REPORT in e.preconditions:
                    raise _SyncUnsupported(f"HTTP {e.status}") from e
                raise
            self._check(resp, "sync-collection", token)
            result = resp.parse_sync_collection()
            for item in result.changed:
                key = self._key(item.href)
                if key != self._path and not key.endswith("/"):
                    listed[key] = (item.href, item.etag)
                    removed.discard(key)
            for href in result.deleted:
                key = self._key(href)
                listed.pop(key, None)
                removed.add(key)
            if not result.truncated or not result.sync_token or result.sync_token == token:
                if result.truncated:
                    log.warning("%s: truncated sync-collection reply without a new token", self.url)
                return listed, removed, result.sync_token or token
            token = result.sync_token
        log.warning("%s: sync-collection still truncated after %d pages", self.url, _MAX_SYNC_PAGES)
        return listed, removed, token

    def _check(self, resp: DAVResponse, what: str, token: str | None = None) -> None:
        status = resp.status
        if status in (200, 207):
            return
        if status == 404:
            raise SourceError(f"calendar not found (HTTP 404 on {what})")
        if (status >= 500 and status != 501) or what != "sync-collection":
            raise SourceError(f"{what} failed (HTTP {status})")
        if token:
            raise _TokenRefused(f"HTTP {status}")
        raise _SyncUnsupported(f"HTTP {status}")

    async def _multiget(
        self, client: AsyncDAVClient, wanted: Mapping[str, str]
    ) -> tuple[dict[str, CalendarObject], set[str], set[str]]:
        """Fetch `wanted` (href -> wire href): (objects by href, hrefs answered 404, hrefs left out)."""
        fetched: dict[str, CalendarObject] = {}
        gone: set[str] = set()
        keys = sorted(wanted)
        for start in range(0, len(keys), self._batch):
            batch = set(keys[start : start + self._batch])
            # RFC 4791 section 7.9: the Depth header is ignored for calendar-multiget; send none.
            resp = await client.report(self.url, _multiget_body(wanted[k] for k in sorted(batch)), depth=None)
            self._check(resp, "calendar-multiget")
            for item in resp.parse_calendar_query():
                key = self._key(item.href)
                if key not in batch:
                    continue
                if item.status == 404:
                    gone.add(key)
                elif item.status < 300 and item.calendar_data is not None:
                    fetched[key] = CalendarObject(key, item.etag, item.calendar_data.encode("utf-8"))
        return fetched, gone, set(keys) - fetched.keys() - gone

    async def _poll_etags(self, client: AsyncDAVClient) -> Changes:
        resp = await client.propfind(self.url, body=_CTAG_BODY, depth=0)
        self._check(resp, "PROPFIND")
        ctag = next((r.properties.get(_GETCTAG) for r in resp.results or () if r.status < 300), None)
        if ctag and self._etags is not None and ctag == self._ctag and not self._pending:
            return NO_CHANGES
        resp = await client.propfind(self.url, props=["getetag"], depth=1)
        self._check(resp, "PROPFIND")
        listed: dict[str, tuple[str, str | None]] = {}
        for r in resp.results or ():
            key = self._key(r.href)
            if key != self._path and not key.endswith("/") and r.status < 300:
                listed[key] = (r.href, r.properties.get(_GETETAG))
        first = self._etags is None
        known = self._etags or {}
        wanted = {
            k: wire
            for k, (wire, etag) in listed.items()
            if first or etag is None or known.get(k) != etag or k in self._pending
        }
        fetched, gone, missing = await self._multiget(client, wanted)
        etags = {k: known[k] for k in listed.keys() - gone if k in known}
        changed = []
        for key, obj in sorted(fetched.items()):
            if first or obj.etag is None or known.get(key) != obj.etag:
                changed.append(obj)
            etags[key] = obj.etag or listed[key][1]
        deleted = () if first else tuple(sorted(known.keys() - etags.keys()))
        self._ctag, self._etags, self._pending = ctag, etags, missing
        return Changes(tuple(changed), deleted, first)

    # --- state ------------------------------------------------------------------------------------

    def _count(self) -> int:
        return len(self._etags or ())

    def _dump(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "mode": self._mode,
            "sync_token": self._token,
            "ctag": self._ctag,
            "etags": self._etags,
            "pending": sorted(self._pending),
        }

    def _load(self, data: Mapping[str, Any]) -> None:
        if data["url"] != self.url:
            raise ValueError(f"snapshot of another collection ({data['url']})")
        mode = data.get("mode")
        if mode not in (None, "sync", "etag"):
            raise ValueError(f"unknown mode {mode!r}")
        etags = data.get("etags")
        self._etags = None if etags is None else {str(k): v for k, v in dict(etags).items()}
        if not self._forced:
            self._mode = mode
        self._token, self._ctag = data.get("sync_token"), data.get("ctag")
        self._pending = {str(k) for k in data.get("pending") or ()}
