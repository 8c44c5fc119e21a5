"""Calendar sources against real servers: Radicale (CalDAV), an aiohttp .ics feed, and a local folder."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from calendars.ics_source import basic_auth
from calendars.sources import Backoff, CalDavSource, FolderSource, IcsUrlSource, SourceError
from tests.conftest import Radicale, free_port


def event(uid: str, summary: str = "Standup") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260301T100000Z\r\nDTEND:20260301T110000Z\r\n"
        f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


# --- Radicale ---------------------------------------------------------------------------------------


AUTH = {"Authorization": basic_auth("alice", "secret")}


async def dav(method: str, url: str, body: str | None = None) -> int:
    headers = {**AUTH, "Content-Type": "text/calendar"} if body else AUTH
    async with aiohttp.ClientSession() as http, http.request(method, url, data=body, headers=headers) as r:
        return r.status


@pytest.fixture
async def calendar(radicale: Radicale) -> str:
    url = f"{radicale.base}/alice/{uuid.uuid4().hex[:8]}/"
    assert await dav("MKCALENDAR", url) == 201
    return url


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def test_caldav_sync_token_then_one_multiget_then_resync(radicale: Radicale, calendar: str) -> None:
    cal = path_of(calendar)
    for name, uid in (("a.ics", "a"), ("b.ics", "b"), ("c@x.ics", "c@x")):
        assert await dav("PUT", calendar + name, event(uid)) == 201
    source = CalDavSource(calendar, "alice", "secret")
    try:
        first = await source.poll()
        assert first.full and not first.deleted
        assert [o.href for o in first.changed] == [cal + "a.ics", cal + "b.ics", cal + "c@x.ics"]
        assert b"UID:c@x" in first.changed[2].data and all(o.etag for o in first.changed)
        assert source.state.objects == 3 and source.state.last_error is None

        before, counted = len(radicale.requests(cal)), source.state.requests
        assert (await source.poll()).empty  # unchanged: one sync-collection REPORT with the token
        assert radicale.requests(cal)[before:] == ["REPORT"] and source.state.requests == counted + 1

        assert await dav("PUT", calendar + "d.ics", event("d")) == 201
        assert await dav("PUT", calendar + "a.ics", event("a", summary="Moved")) in (201, 204)
        assert await dav("DELETE", calendar + "b.ics") in (200, 204)
        before = len(radicale.requests(cal))
        changes = await source.poll()
        assert [o.href for o in changes.changed] == [cal + "a.ics", cal + "d.ics"]
        assert changes.deleted == (cal + "b.ics",) and not changes.full
        assert b"SUMMARY:Moved" in changes.changed[0].data
        assert radicale.requests(cal)[before:] == ["REPORT", "REPORT"]  # sync-collection + ONE multiget
        snapshot = json.loads(json.dumps(source.snapshot()))
        assert snapshot["mode"] == "sync" and snapshot["sync_token"]
    finally:
        await source.close()

    restored = CalDavSource(calendar, "alice", "secret")
    restored.restore(snapshot)
    assert restored.state.objects == 3
    try:
        assert (await restored.poll()).empty
        restored.restore({**snapshot, "sync_token": "http://radicale.org/ns/sync/" + "0" * 64})
        resync = await restored.poll()  # refused token (403 valid-sync-token) -> explicit full resync
        assert resync.full and [o.href[len(cal) :] for o in resync.changed] == ["a.ics", "c@x.ics", "d.ics"]
        assert "invalid sync token" in radicale.log.read_text()
        assert (await restored.poll()).empty
    finally:
        await restored.close()


async def test_caldav_etag_diffing_with_ctag(radicale: Radicale, calendar: str) -> None:
    cal = path_of(calendar)
    for name in ("a", "b"):
        assert await dav("PUT", f"{calendar}{name}.ics", event(name)) == 201
    source = CalDavSource(calendar, "alice", "secret", use_sync_token=False)
    try:
        assert [o.href for o in (await source.poll()).changed] == [cal + "a.ics", cal + "b.ics"]
        before = len(radicale.requests(cal))
        assert (await source.poll()).empty
        assert radicale.requests(cal)[before:] == ["PROPFIND"]  # the ctag did not move
        assert await dav("PUT", calendar + "a.ics", event("a", summary="Moved")) in (201, 204)
        assert await dav("DELETE", calendar + "b.ics") in (200, 204)
        before = len(radicale.requests(cal))
        changes = await source.poll()
        assert [o.href for o in changes.changed] == [cal + "a.ics"] and changes.deleted == (cal + "b.ics",)
        assert radicale.requests(cal)[before:] == ["PROPFIND", "PROPFIND", "REPORT"]
        assert source.snapshot()["sync_token"] is None
    finally:
        await source.close()


async def test_caldav_errors_are_source_errors_without_passwords(radicale: Radicale, calendar: str) -> None:
    cases = [
        (CalDavSource(calendar, "alice", "Wrong-Pw1"), "authentication failed (HTTP 401)"),
        (CalDavSource(f"{radicale.base}/alice/missing/", "alice", "secret"), "not found"),
        (
            CalDavSource(f"http://127.0.0.1:{free_port()}/c/", "alice", "Wrong-Pw1"),
            "cannot connect to 127.0.0.1:",
        ),
    ]
    for source, reason in cases:
        with pytest.raises(SourceError) as raised:
            await source.poll()
        assert reason in raised.value.reason and "Wrong-Pw1" not in raised.value.reason
        assert source.state.last_error == raised.value.reason and source.state.last_sync is None
        await source.close()


async def test_caldav_server_without_sync_collection_falls_back_to_etags(
    radicale: Radicale, calendar: str, aiohttp_server: Any
) -> None:
    async def proxy(request: web.Request) -> web.Response:  # Radicale, minus RFC 6578
        body = await request.read()
        if request.method == "REPORT" and b"sync-collection" in body:
            return web.Response(status=501)
        headers = {
            k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type", "Depth")
        }
        async with (
            aiohttp.ClientSession() as http,
            http.request(request.method, radicale.base + request.path_qs, data=body, headers=headers) as r,
        ):
            keep = ("Content-Type", "WWW-Authenticate", "ETag")
            return web.Response(
                status=r.status,
                body=await r.read(),
                headers={k: r.headers[k] for k in keep if k in r.headers},
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    url = str((await aiohttp_server(app)).make_url(path_of(calendar)))
    assert await dav("PUT", calendar + "a.ics", event("a")) == 201
    source = CalDavSource(url, "alice", "secret")
    try:
        first = await source.poll()
        assert first.full and [o.href for o in first.changed] == [path_of(calendar) + "a.ics"]
        assert source.snapshot()["mode"] == "etag" and (await source.poll()).empty
        assert await dav("PUT", calendar + "b.ics", event("b")) == 201
        assert [o.href for o in (await source.poll()).changed] == [path_of(calendar) + "b.ics"]
    finally:
        await source.close()


# --- .ics feed over HTTP ----------------------------------------------------------------------------

FEED_HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//feed//EN\r\nX-WR-CALNAME:Team\r\n"
BERLIN = (
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
)
UNUSED_TZ = BERLIN.replace("Europe/Berlin", "Asia/Tokyo")


def vevent(uid: str, summary: str = "Sync", stamp: str = "20260101T000000Z", more: str = "") -> str:
    more = more or "DTSTART:20260301T100000Z\r\n"
    return f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:{stamp}\r\nSUMMARY:{summary}\r\n{more}END:VEVENT\r\n"


def feed(*events: str) -> bytes:
    return (FEED_HEAD + BERLIN + UNUSED_TZ + "".join(events) + "END:VCALENDAR\r\n").encode()


class FeedServer:
    def __init__(self) -> None:
        self.body = b""
        self.seen: list[dict[str, str]] = []
        self.status = 200
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(dict(request.headers))
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.Response(status=self.status)
        etag = f'"{hashlib.sha256(self.body).hexdigest()[:16]}"'
        headers = {"ETag": etag, "Last-Modified": "Sat, 21 Nov 2026 10:00:00 GMT"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, headers=headers, content_type="text/calendar")


@pytest.fixture
async def served(aiohttp_server: Any) -> AsyncIterator[tuple[FeedServer, str, aiohttp.ClientSession]]:
    server = FeedServer()
    app = web.Application()
    app.router.add_get("/team.ics", server.handle)
    running = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        yield server, str(running.make_url("/team.ics")), session


async def test_ics_feed_conditional_get_and_uid_diff(served: tuple[FeedServer, str, Any]) -> None:
    server, url, session = served
    series = vevent("A", more="DTSTART;TZID=Europe/Berlin:20260302T090000\r\nRRULE:FREQ=WEEKLY\r\n")
    override = vevent("A", "Moved", more="RECURRENCE-ID;TZID=Europe/Berlin:20260309T090000\r\n")
    server.body = feed(override, series, vevent("B"))
    source = IcsUrlSource(url, session, username="bob", password="s3cret")
    first = await source.poll()
    assert first.full and [o.href for o in first.changed] == ["uid:A", "uid:B"]
    a = first.changed[0].data
    assert a.count(b"BEGIN:VEVENT") == 2 and a.index(b"RRULE") < a.index(b"RECURRENCE-ID")  # master first
    assert b"TZID:Europe/Berlin" in a and b"Asia/Tokyo" not in a and b"X-WR-CALNAME:Team" in a
    assert b"VTIMEZONE" not in first.changed[1].data
    assert server.seen[0]["Authorization"] == basic_auth("bob", "s3cret")
    assert "If-None-Match" not in server.seen[0]

    assert (await source.poll()).empty  # 304
    assert server.seen[1]["If-None-Match"] and server.seen[1]["If-Modified-Since"].startswith("Sat, 21 Nov")

    # A is only re-stamped (ignored), B changes, C is new; then B disappears.
    restamped = override.replace("20260101T000000Z", "20260202T000000Z")
    server.body = feed(series, restamped, vevent("B", "New"), vevent("C"))
    changes = await source.poll()
    assert [o.href for o in changes.changed] == ["uid:B", "uid:C"] and not (changes.deleted or changes.full)
    server.body = feed(series, override, vevent("C"))
    gone = await source.poll()
    assert gone.changed == () and gone.deleted == ("uid:B",) and source.state.objects == 2

    again = IcsUrlSource(url, session)
    again.restore(json.loads(json.dumps(source.snapshot())))
    assert (await again.poll()).empty and server.seen[-1]["If-None-Match"]


async def test_ics_feed_failures(served: tuple[FeedServer, str, Any]) -> None:
    server, url, session = served
    source = IcsUrlSource(url, session, username="bob", password="s3cret", timeout=0.2)
    server.status = 500
    with pytest.raises(SourceError, match="HTTP 500"):
        await source.poll()
    server.status, server.delay = 200, 1.0
    with pytest.raises(SourceError, match="timed out"):
        await source.poll()
    server.delay, server.body = 0.0, b"<html>not a calendar</html>"
    with pytest.raises(SourceError, match="iCalendar") as raised:
        await source.poll()
    assert "s3cret" not in raised.value.reason and source.state.last_error == raised.value.reason
    server.body = feed(vevent("A"))
    assert (await source.poll()).full and source.state.last_error is None


# --- folder -----------------------------------------------------------------------------------------


async def test_folder_added_changed_removed(tmp_path: Path) -> None:
    (tmp_path / "a.ics").write_text(event("a"))
    (tmp_path / "b.ics").write_text(event("b"))
    (tmp_path / ".hidden.ics").write_text(event("h"))
    (tmp_path / "notes.txt").write_text("not a calendar")
    future = time.time_ns() + 10**10  # a.ics stays "fresh" however slowly this test runs
    os.utime(tmp_path / "a.ics", ns=(future, future))
    source = FolderSource(tmp_path)
    first = await source.poll()
    assert first.full and [o.href for o in first.changed] == ["a.ics", "b.ics"] and first.changed[0].etag
    assert (await source.poll()).empty

    # Same size and the same mtime (a coarse clock): still seen, because the file was fresh when read.
    (tmp_path / "a.ics").write_text(event("a", summary="Standuq"))
    os.utime(tmp_path / "a.ics", ns=(future, future))
    (tmp_path / "c.ics").write_text(event("c"))
    (tmp_path / "b.ics").unlink()
    changes = await source.poll()
    assert [o.href for o in changes.changed] == ["a.ics", "c.ics"] and changes.deleted == ("b.ics",)
    assert b"Standuq" in changes.changed[0].data and source.state.objects == 2

    restored = FolderSource(tmp_path)
    restored.restore(json.loads(json.dumps(source.snapshot())))
    assert (await restored.poll()).empty
    with pytest.raises(SourceError, match="folder not found"):
        await FolderSource(tmp_path / "missing").poll()
    with pytest.raises(ValueError, match="not a folder source"):
        restored.restore({"kind": "ics", "version": 1})


def test_backoff_doubles_from_the_interval_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(interval=60, maximum=600)
    assert backoff.due(now=0)
    assert backoff.success(now=0) == 60 and not backoff.due(now=59) and backoff.due(now=60)
    assert [backoff.failure(now=100) - 100 for _ in range(5)] == [120, 240, 480, 600, 600]
    assert backoff.success(now=1000) == 1060 and backoff.failures == 0
    with pytest.raises(ValueError):
        Backoff(interval=10, maximum=5)
