"""Benchmark chimebot's calendar sources (calendars/) on a 10,000-event calendar: sync time, requests, memory.

Run: .venv/bin/python bench/calendars.py [--quick] [--events N] [--runs N] [--sources KIND ...] [--json]
--quick is a 1,000-event smoke run (about 25 s). The default, 10,000 events and one run, takes 2.5 to 3
min on the project's 2-core machine: a minute of setup (mostly Radicale parsing every item into
its cache) and a minute and a half of polls, of which the .ics feed takes almost a minute.
`--runs 3` reports medians of three runs; `--sources caldav-sync caldav-etag` (or `ics folder`) measures
only those sources and sets up only what they need. Exit status: 0, 1 when a poll returned the wrong
objects (marked WRONG), 2 when the bench itself failed.

Section "sync" (issue 4: "first sync and an unchanged re-sync of a 10,000-event calendar, time and
requests"). One deterministic calendar (60% weekly series, some with a moved and an excluded instance,
single events, VTIMEZONEs as Apple Calendar writes them, 2-8 ATTENDEEs, three in four inviting meet@
or pin+<id>@, VALARMs) is served three ways:
- a real Radicale (auth none, default storage settings): the .ics files are written straight into its
  filesystem storage, and its item cache and sync history are built before it starts (in one process
  per core, with fsync off, through Radicale's own code) so that it answers like a server that has been
  running; `server` and `server s` are the requests Radicale logged for the collection and the time it
  logged spending on them;
- an aiohttp server (another process) of the whole calendar as one .ics feed, with ETag, Last-Modified
  and 304 answers;
- a folder of one .ics file per event.
Per run each source is measured in a fresh process: the first poll (a complete listing), an unchanged
re-poll, then CHANGED events are modified behind its back (PUT to Radicale, feed rebuilt, files
rewritten; not timed) and it polls again. Sources: CalDavSource with RFC 6578 sync tokens ("caldav-sync"),
CalDavSource(use_sync_token=False), i.e. ctag + getetag PROPFIND diffing ("caldav-etag"), IcsUrlSource
("ics") and FolderSource ("folder").

Figures (medians when --runs > 1):
- time s: wall time of `await source.poll()`, client and server together (they share the 2 cores);
  ms/1k: the first poll's time per 1,000 objects; ratio: the poll's time / the first poll's time.
- CPU s: CPU time of the polling process (all its threads: IcsUrlSource splits the feed in a thread).
- lag ms: the longest the poll kept the event loop from running anything else (a 5 ms ticker) - what a
  poll would cost every other task of a chimebot server.
- requests: HTTP requests the source counted (`state.requests`); the row ends with how many objects
  the poll returned and WRONG unless that is all of them (full=True), none, or exactly the changed ones.
- memory: RSS of the polling process while it holds the first poll's objects, minus its RSS just before
  the poll (held), and its high-water mark minus the same baseline (peak); payload is the objects' bytes,
  "as Python" their size as CalendarObjects; snapshot is the JSON size of `source.snapshot()`, which
  the application persists after each poll.
Setup (generating, writing files, warming and starting servers) is timed apart and not counted.

Sections to come, as further entries of SECTIONS once their parts exist: memory with 100,000 future
occurrences (calendars/invites.py), and the delay between an occurrence's start and the ring
(chimebot/scheduler.py). Hidden subcommands (_source, _feed, _warm) run the processes measured or used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(SCRIPT).parent.parent
if str(ROOT) not in sys.path:  # run as a script: make calendars/ importable without installing
    sys.path.insert(0, str(ROOT))

from calendars.sources import Changes, Source  # noqa: E402

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
EVENTS, QUICK_EVENTS = 10_000, 1_000
CHANGED = 10  # events modified between the unchanged re-poll and the last poll
COLLECTION = "/bench/calendar/"  # Radicale collection path (auth none: anyone may read and write)
DOMAIN = "chime.example.com"
SEED = "chimebot-bench-calendars"
RUN_TIMEOUT = 600  # seconds for one source's measuring process
LAG_TICK = 0.005  # seconds between the wake-ups that measure how long a poll keeps the event loop busy


class BenchError(RuntimeError):
    """A server or measuring process failed; the message says how."""


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on uvloop when installed (as chimebot does), else on plain asyncio."""
    if HAVE_UVLOOP:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# ---------------------------------------------------------------- the calendar: deterministic events


def _vtimezone(tzid: str, *rules: tuple[str, str, str, str, str]) -> str:
    """A VTIMEZONE block; each rule is (STANDARD|DAYLIGHT, offset from, offset to, DTSTART, RRULE)."""
    out = [f"BEGIN:VTIMEZONE\r\nTZID:{tzid}\r\nX-LIC-LOCATION:{tzid}\r\n"]
    for kind, off_from, off_to, start, rrule in rules:
        out.append(f"BEGIN:{kind}\r\nTZOFFSETFROM:{off_from}\r\nTZOFFSETTO:{off_to}\r\nDTSTART:{start}\r\n")
        out.append(f"RRULE:{rrule}\r\n" if rrule else "")
        out.append(f"END:{kind}\r\n")
    return "".join(out) + "END:VTIMEZONE\r\n"


def _us_zone(tzid: str, std: str, dst: str) -> str:
    return _vtimezone(
        tzid,
        ("DAYLIGHT", std, dst, "20070311T020000", "FREQ=YEARLY;BYMONTH=3;BYDAY=2SU"),
        ("STANDARD", dst, std, "20071104T020000", "FREQ=YEARLY;BYMONTH=11;BYDAY=1SU"),
    )


# As Apple Calendar exports them: each rule starts in the year it came into force.
TIMEZONES = {
    "Europe/Berlin": _vtimezone(
        "Europe/Berlin",
        ("DAYLIGHT", "+0100", "+0200", "19810329T020000", "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU"),
        ("STANDARD", "+0200", "+0100", "19961027T030000", "FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU"),
    ),
    "America/New_York": _us_zone("America/New_York", "-0500", "-0400"),
    "America/Los_Angeles": _us_zone("America/Los_Angeles", "-0800", "-0700"),
    "Asia/Tokyo": _vtimezone("Asia/Tokyo", ("STANDARD", "+0900", "+0900", "19510908T000000", "")),
}
TZ_WEIGHTS = (4, 3, 2, 1)
HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//chimebot//bench calendars//EN\r\nCALSCALE:GREGORIAN\r\n"
FEED_HEAD = HEAD + "METHOD:PUBLISH\r\nX-WR-CALNAME:Bench team\r\nX-WR-TIMEZONE:Europe/Berlin\r\n"
END = "END:VCALENDAR\r\n"
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
TOPICS = ("Standup", "Sprint review", "1:1", "Design sync", "Customer call", "Ops review", "Hiring panel")


def fold(line: str) -> str:
    """One content line folded at 75 octets (RFC 5545 3.1; the text here is ASCII), with CRLF."""
    if len(line) <= 75:
        return line + "\r\n"
    parts = [line[:75], *(line[i : i + 74] for i in range(75, len(line), 74))]
    return "\r\n ".join(parts) + "\r\n"


@dataclass(frozen=True, slots=True)
class Event:
    """One calendar object: its UID, time zone, VEVENT blocks (master first) and what kind it is."""

    uid: str
    tzid: str
    vevents: str
    recurring: bool
    moved: bool
    invites: bool

    @property
    def href(self) -> str:
        """File name in Radicale's storage and in the folder."""
        return f"{self.uid}.ics"

    def ics(self) -> bytes:
        """The object as a CalDAV server or a folder holds it: one VCALENDAR with its VTIMEZONE."""
        return (HEAD + TIMEZONES[self.tzid] + self.vevents + END).encode()


def make_event(i: int, base: date, rev: int = 0) -> Event:
    """Event number i of the calendar; rev > 0 is a later version (moved by rev x 15 min, SEQUENCE rev)."""
    r = random.Random(f"{SEED}-{i}")  # every random draw happens whatever rev is: only rev changes
    if r.random() < 0.7:  # Google-style UID, else an Outlook/Exchange GlobalObjectId
        uid = f"{r.getrandbits(96):024x}{i:06d}@google.com"
    else:
        uid = f"040000008200E00074C5B7101A82E00800000000{r.getrandbits(64):016X}{i:06d}"
    tzid = r.choices(list(TIMEZONES), weights=TZ_WEIGHTS)[0]
    day = base + timedelta(days=r.randrange(1, 91))
    start = datetime(day.year, day.month, day.day, r.randrange(8, 18), r.choice((0, 30)))
    start += timedelta(minutes=15 * rev)
    end = start + timedelta(minutes=r.choice((15, 30, 30, 60, 60, 90)))
    recurring = r.random() < 0.6
    moved = recurring and r.random() < 0.1
    organizer = r.randrange(500)
    guests = r.sample([u for u in range(500) if u != organizer], r.randint(1, 7))
    roll = r.random()
    meeting_id = f"{r.randrange(10**9, 10**10)}"
    room = f"meet@{DOMAIN}" if roll < 0.55 else f"pin+{meeting_id}@{DOMAIN}" if roll < 0.75 else None
    alarm = r.random() < 0.5
    until = r.random()
    weeks = r.randint(4, 52)
    summary = f"{r.choice(TOPICS)} #{i}"

    def local(t: datetime) -> str:
        return f";TZID={tzid}:{t:%Y%m%dT%H%M%S}"

    stamp = f"{base:%Y%m%d}T080000Z"
    modified = f"{datetime(base.year, base.month, base.day, 8) + timedelta(minutes=rev):%Y%m%dT%H%M%S}Z"
    desc = f"Join: https://{DOMAIN}/m/{meeting_id}\\nDial-in: +1 206-555-0100\\,\\,{meeting_id}#"
    common = [
        f"DTSTAMP:{stamp}",
        f"CREATED:{stamp}",
        f"LAST-MODIFIED:{modified}",
        f"SEQUENCE:{rev}",
        f"SUMMARY:{summary}",
        f"LOCATION:https://{DOMAIN}/m/{meeting_id}",
        f"DESCRIPTION:{desc}",
        f"ORGANIZER;CN=User {organizer}:mailto:user{organizer}@example.com",
        f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=CHAIR;PARTSTAT=ACCEPTED;CN=User {organizer}:mailto:user"
        f"{organizer}@example.com",
        *(
            f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=User {g}:"
            f"mailto:user{g}@example.com"
            for g in guests
        ),
        *(
            [f"ATTENDEE;CUTYPE=RESOURCE;ROLE=NON-PARTICIPANT;PARTSTAT=NEEDS-ACTION;CN={room}:mailto:{room}"]
            if room
            else []
        ),
        "STATUS:CONFIRMED",
        "TRANSP:OPAQUE",
    ]
    alarm_block = "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT10M\r\nEND:VALARM\r\n"
    master = [f"UID:{uid}", f"DTSTART{local(start)}", f"DTEND{local(end)}"]
    if recurring:
        rule = f"FREQ=WEEKLY;BYDAY={DAYS[start.weekday()]}"
        if until < 0.15:
            rule += f";COUNT={weeks}"
        elif until < 0.3:
            rule += f";UNTIL={start + timedelta(weeks=weeks):%Y%m%d}T235959Z"
        master.append(f"RRULE:{rule}")
        if moved:
            master.append(f"EXDATE{local(start + timedelta(weeks=1))}")
    blocks = ["BEGIN:VEVENT\r\n", *map(fold, master + common), alarm_block if alarm else "", "END:VEVENT\r\n"]
    if moved:  # the third instance moved by an hour, as an override in the same object
        original = start + timedelta(weeks=2)
        override = [
            f"UID:{uid}",
            f"RECURRENCE-ID{local(original)}",
            f"DTSTART{local(original + timedelta(hours=1))}",
            f"DTEND{local(end + timedelta(weeks=2, hours=1))}",
        ]
        blocks += ["BEGIN:VEVENT\r\n", *map(fold, override + common), "END:VEVENT\r\n"]
    return Event(uid, tzid, "".join(blocks), recurring, moved, room is not None)


def changed_indices(change: int, events: int) -> list[int]:
    """The CHANGED events (spread over the calendar) that change number `change` modifies."""
    return sorted({(k * events // CHANGED + change) % events for k in range(CHANGED)})


def feed_body(events: list[Event]) -> bytes:
    """The whole calendar as one .ics feed: each VTIMEZONE once, then every VEVENT."""
    return (FEED_HEAD + "".join(TIMEZONES.values()) + "".join(e.vevents for e in events) + END).encode()


# ---------------------------------------------------------------- subprocess side: Radicale's cache, prebuilt

WARM_UNAVAILABLE = 3  # exit status of _warm when this Radicale's internals are not the ones used here


def radicale_storage(folder: str) -> Any:
    """Radicale's filesystem storage on `folder`, without fsync (setup only: the server runs with it)."""
    from radicale import config, storage

    conf = config.load([])
    conf.update({"storage": {"filesystem_folder": folder}}, "bench")
    conf.update({"storage": {"_filesystem_fsync": "False"}}, "bench", privileged=True)
    return storage.load(conf)


def warm_radicale(folder: str, part: str, workers: int) -> int:
    """Build Radicale's item cache for every `workers`-th item from `part` on, or (part "history") its sync
    history. A server parses each item with vobject on first use (about 10 ms each here); doing it in
    parallel processes, through Radicale's own (private) code, saves a minute of setup at 10,000 events.
    Returns WARM_UNAVAILABLE when the internals differ; the HTTP warm-up then does the work, slowly."""
    try:
        store = radicale_storage(folder)
        with store.acquire_lock("r"):
            collection = next(iter(store.discover(COLLECTION)))
            if part == "history":
                collection.sync("")
                return 0
            # Each item is handled by one worker, so the lock that keeps processes from parsing the same
            # item twice is not needed, and would serialise the workers.
            collection._acquire_cache_lock = lambda ns="": contextlib.nullcontext()
            for href in sorted(collection._list())[int(part) :: workers]:
                collection._get(href, verify_href=False)
    except (ImportError, AttributeError, TypeError) as e:
        print(f"cannot prebuild Radicale's cache: {e!r}", file=sys.stderr)
        return WARM_UNAVAILABLE
    return 0


# ---------------------------------------------------------------- subprocess side: the .ics feed server


async def serve_feed(port: int, events: int, base: date) -> None:
    """Serve the calendar as /bench.ics with ETag and Last-Modified until SIGTERM; POST /_change?n=C."""
    calendar = [make_event(i, base) for i in range(events)]
    state: dict[str, Any] = {}

    def publish() -> None:
        body = feed_body(calendar)
        state.update(
            body=body,
            etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"',
            modified=format_datetime(datetime.now(UTC), usegmt=True),
        )

    async def get(request: web.Request) -> web.Response:
        headers = {"ETag": state["etag"], "Last-Modified": state["modified"], "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == state["etag"]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=state["body"], headers=headers, content_type="text/calendar")

    async def change(request: web.Request) -> web.Response:
        number = int(request.query["n"])
        for i in changed_indices(number, events):
            calendar[i] = make_event(i, base, number)
        publish()
        return web.json_response({"bytes": len(state["body"])})

    publish()
    app = web.Application()
    app.router.add_get("/bench.ics", get)
    app.router.add_post("/_change", change)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


# ---------------------------------------------------------------- subprocess side: one source, measured


def current_rss() -> int | None:
    """This process's resident set size in bytes (Linux /proc), or None."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss() -> int:
    """This process's RSS high-water mark in bytes (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


_LOGGED = re.compile(r"\] \w+ response status for '([^']*)'.*? in ([\d.]+) seconds")


def server_log(log: Path, offset: int) -> tuple[int, float]:
    """Requests Radicale logged for the collection after `offset`, and the seconds it logged on them."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    hits = [float(m.group(2)) for m in _LOGGED.finditer(text) if m.group(1) == COLLECTION]
    return len(hits), sum(hits)


def log_size(log: Path) -> int:
    """Where Radicale's log ends now (read before timing a poll; a stat is not worth a thread)."""
    return log.stat().st_size


def write_objects(folder: Path, events: list[Event]) -> None:
    """Write events into the folder as their .ics files."""
    for e in events:
        (folder / e.href).write_bytes(e.ics())


async def loop_lag(tick: float, worst: list[float]) -> None:
    """Sleep `tick` s over and over; keep in worst[0] the longest the loop was late to wake us (s)."""
    while True:
        due = time.perf_counter() + tick
        await asyncio.sleep(tick)
        worst[0] = max(worst[0], time.perf_counter() - due)


async def timed_poll(source: Source, log: Path | None, http: bool) -> tuple[Changes, dict[str, Any]]:
    """One poll with its wall time, client CPU, event-loop stall, request counts and what it returned."""
    requests = source.state.requests
    offset = log_size(log) if log else 0
    worst = [0.0]
    probe = asyncio.create_task(loop_lag(LAG_TICK, worst))
    await asyncio.sleep(0)  # let the probe start
    cpu, start = time.process_time(), time.perf_counter()
    try:
        changes = await source.poll()
    finally:
        seconds = time.perf_counter() - start
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
    result: dict[str, Any] = {
        "seconds": seconds,
        "cpu_s": time.process_time() - cpu,
        "loop_lag_ms": worst[0] * 1000,
        "requests": source.state.requests - requests if http else None,
        "changed": len(changes.changed),
        "deleted": len(changes.deleted),
        "full": changes.full,
        "objects": source.state.objects,
    }
    if log:
        await asyncio.sleep(0.05)  # Radicale logs the response status just after sending it
        result["server_requests"], result["server_s"] = server_log(log, offset)
    return changes, result


async def apply_change(spec: dict[str, Any], number: int) -> None:
    """Modify CHANGED events behind the source's back: PUT to Radicale, rebuild the feed, rewrite files."""
    base = date.fromisoformat(spec["base"])
    events = [make_event(i, base, number) for i in changed_indices(number, spec["events"])]
    kind = spec["kind"]
    if kind == "folder":
        await asyncio.to_thread(write_objects, Path(spec["folder"]), events)
        return
    async with aiohttp.ClientSession(raise_for_status=True) as http:
        if kind == "ics":
            async with http.post(spec["control"], params={"n": str(number)}) as resp:
                await resp.read()
            return
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        for e in events:
            async with http.put(spec["url"] + e.href, data=e.ics(), headers=headers) as resp:
                await resp.read()


async def measure_source(spec: dict[str, Any]) -> dict[str, Any]:
    """First poll, unchanged re-poll, CHANGED modified, poll again; plus memory while holding the objects."""
    kind, events = spec["kind"], spec["events"]
    session: aiohttp.ClientSession | None = None
    source: Source
    if kind.startswith("caldav"):
        from calendars.caldav_source import CalDavSource

        source = CalDavSource(spec["url"], use_sync_token=kind == "caldav-sync")
    elif kind == "ics":
        from calendars.ics_source import IcsUrlSource

        session = aiohttp.ClientSession()
        source = IcsUrlSource(spec["url"], session)
    else:
        from calendars.folder_source import FolderSource

        source = FolderSource(spec["folder"])
    log = Path(spec["log"]) if kind.startswith("caldav") else None
    http = kind != "folder"
    out: dict[str, Any] = {}
    try:
        gc.collect()
        rss0 = current_rss()
        first, out["first"] = await timed_poll(source, log, http)
        gc.collect()
        rss1, peak = current_rss(), peak_rss()
        payload = sum(len(o.data) for o in first.changed)
        python = sys.getsizeof(first.changed) + sum(
            sys.getsizeof(o) + sys.getsizeof(o.href) + sys.getsizeof(o.etag) + sys.getsizeof(o.data)
            for o in first.changed
        )
        out["memory"] = {
            "objects": len(first.changed),
            "payload_bytes": payload,
            "python_bytes": python,
            "held_bytes": rss1 - rss0 if rss0 is not None and rss1 is not None else None,
            "peak_bytes": max(peak, rss1 or 0) - rss0 if rss0 is not None else None,
            "snapshot_bytes": len(json.dumps(source.snapshot())),
        }
        out["first"]["check"] = first.full and len(first.changed) == events and not first.deleted
        del first
        _, out["unchanged"] = await timed_poll(source, log, http)
        out["unchanged"]["check"] = out["unchanged"]["changed"] == out["unchanged"]["deleted"] == 0
        await apply_change(spec, spec["change"])
        changes, out["changed"] = await timed_poll(source, log, http)
        expected = {
            make_event(i, date.fromisoformat(spec["base"])).href
            for i in changed_indices(spec["change"], events)
        }
        got = {o.href.rsplit("/", 1)[-1] for o in changes.changed}
        if kind == "ics":  # hrefs are "uid:<UID>"
            got = {h.removeprefix("uid:") + ".ics" for h in got}
        out["changed"]["check"] = got == expected and not changes.deleted and not changes.full
    finally:
        await source.close()
        if session is not None:
            await session.close()
    return out


# ---------------------------------------------------------------- orchestrator: servers and fixtures


def free_port() -> int:
    """Return a currently unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own session, output to a log file (an unread pipe could block it)."""
    with log.open("ab") as out:
        return subprocess.Popen(args, start_new_session=True, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started, then SIGKILL it after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def wait_port(proc: subprocess.Popen[bytes], port: int, log: Path, what: str, limit: float = 120) -> None:
    """Wait until the process accepts connections on port, bounded by `limit` s."""
    deadline = time.monotonic() + limit
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(
                    f"{what} did not start:\n{log.read_text(errors='replace')[-2000:]}"
                ) from None
            time.sleep(0.05)


@dataclass
class Fixture:
    """The calendar, served the ways the selected sources need, with what setting it up cost."""

    events: int
    base: date
    root: Path
    procs: contextlib.ExitStack
    setup: dict[str, float]
    calendar: dict[str, Any]
    radicale_url: str = ""
    radicale_log: Path | None = None
    feed_url: str = ""
    feed_control: str = ""
    folder: Path | None = None


async def warm_over_http(url: str, cold: bool) -> None:
    """Sync-collect without a token (and when `cold`, PROPFIND every etag first), as a running server has."""
    propfind = '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'
    sync = (
        '<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level>'
        "<d:prop><d:getetag/></d:prop></d:sync-collection>"
    )
    requests = [("PROPFIND", propfind, "1")] if cold else []
    headers = {"Content-Type": "application/xml; charset=utf-8"}
    async with aiohttp.ClientSession(raise_for_status=True, timeout=aiohttp.ClientTimeout(1800)) as http:
        for method, body, depth in [*requests, ("REPORT", sync, "0")]:
            async with http.request(method, url, data=body, headers={**headers, "Depth": depth}) as resp:
                await resp.read()


def prewarm(folder: Path, log: Path) -> dict[str, float] | None:
    """Prebuild Radicale's item cache (one process per core), then its sync history; return the times,
    or None when this Radicale's internals are not the ones expected."""
    times: dict[str, float] = {}
    workers = os.cpu_count() or 1
    t = time.perf_counter()
    procs = [
        spawn([sys.executable, SCRIPT, "_warm", str(folder), str(i), str(workers)], log)
        for i in range(workers)
    ]
    codes = [p.wait(RUN_TIMEOUT) for p in procs]
    times["radicale_item_cache_s"] = time.perf_counter() - t
    if any(c == WARM_UNAVAILABLE for c in codes):
        return None
    if any(codes):
        raise BenchError(f"prebuilding Radicale's cache failed:\n{log.read_text(errors='replace')[-2000:]}")
    t = time.perf_counter()
    proc = spawn([sys.executable, SCRIPT, "_warm", str(folder), "history", "1"], log)
    if proc.wait(RUN_TIMEOUT):
        raise BenchError(f"prebuilding Radicale's history failed:\n{log.read_text(errors='replace')[-2000:]}")
    times["radicale_sync_history_s"] = time.perf_counter() - t
    return times


def write_calendar(directory: Path, objects: list[tuple[str, bytes]]) -> None:
    """Write one file per object, dated an hour ago (a calendar at rest, not files written this instant)."""
    directory.mkdir(parents=True)
    old = time.time_ns() - 3600 * 10**9
    for href, data in objects:
        path = directory / href
        path.write_bytes(data)
        os.utime(path, ns=(old, old))


def start_radicale(fx: Fixture, objects: list[tuple[str, bytes]]) -> None:
    """Write the calendar into Radicale's filesystem storage, warm its caches, start it (auth none)."""
    t = time.perf_counter()
    collections = fx.root / "radicale" / "collections"
    collection = collections / "collection-root" / COLLECTION.strip("/")
    write_calendar(collection, objects)
    props = {"C:supported-calendar-component-set": "VEVENT", "D:displayname": "Bench", "tag": "VCALENDAR"}
    (collection / ".Radicale.props").write_text(json.dumps(props))
    fx.setup["radicale_write_s"] = time.perf_counter() - t
    warmed = prewarm(collections, fx.root / "warm.log")
    fx.setup.update(warmed or {})

    t = time.perf_counter()
    port = free_port()
    config, log = fx.root / "radicale" / "config", fx.root / "radicale" / "radicale.log"
    config.write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = none\n[rights]\ntype = authenticated\n"
        f"[storage]\nfilesystem_folder = {collections}\n[web]\ntype = none\n[logging]\nlevel = info\n"
    )
    radicale = spawn([sys.executable, "-m", "radicale", "-C", str(config)], log)
    fx.procs.callback(stop, radicale)
    wait_port(radicale, port, log, "Radicale")
    fx.setup["radicale_start_s"] = time.perf_counter() - t
    fx.radicale_url, fx.radicale_log = f"http://127.0.0.1:{port}{COLLECTION}", log

    t = time.perf_counter()
    run_loop(warm_over_http(fx.radicale_url, cold=warmed is None))
    fx.setup["radicale_http_warm_s" if warmed else "radicale_cold_cache_over_http_s"] = (
        time.perf_counter() - t
    )


def start_feed(fx: Fixture) -> None:
    """Start the feed server process (it generates the same calendar itself)."""
    t = time.perf_counter()
    port, log = free_port(), fx.root / "feed.log"
    feed = spawn([sys.executable, SCRIPT, "_feed", str(port), str(fx.events), fx.base.isoformat()], log)
    fx.procs.callback(stop, feed)
    wait_port(feed, port, log, "the feed server")
    fx.setup["feed_start_s"] = time.perf_counter() - t
    fx.feed_url, fx.feed_control = f"http://127.0.0.1:{port}/bench.ics", f"http://127.0.0.1:{port}/_change"


@contextlib.contextmanager
def fixture(events: int, needs: set[str]) -> Iterator[Fixture]:
    """Generate the calendar and serve it as `needs` says: "radicale", "feed", "folder"."""
    base = datetime.now(UTC).date()
    with tempfile.TemporaryDirectory(prefix="chimebot-bench-cal-") as tmp, contextlib.ExitStack() as procs:
        t = time.perf_counter()
        calendar = [make_event(i, base) for i in range(events)]
        objects = [(e.href, e.ics()) for e in calendar]
        info = {
            "events": events,
            "weekly_series": sum(e.recurring for e in calendar),
            "with_moved_instance": sum(e.moved for e in calendar),
            "inviting_meeting_address": sum(e.invites for e in calendar),
            "object_bytes": sum(len(d) for _, d in objects),
            "feed_bytes": len(feed_body(calendar)),
        }
        del calendar
        fx = Fixture(events, base, Path(tmp), procs, {"generate_s": time.perf_counter() - t}, info)
        if "folder" in needs:
            t = time.perf_counter()
            fx.folder = fx.root / "folder"
            write_calendar(fx.folder, objects)
            fx.setup["folder_write_s"] = time.perf_counter() - t
        if "radicale" in needs:
            start_radicale(fx, objects)
        del objects
        if "feed" in needs:
            start_feed(fx)
        yield fx


# ---------------------------------------------------------------- section "sync"

SYNC_SOURCES = {
    "caldav-sync": "CalDAV sync-token",
    "caldav-etag": "CalDAV ctag/ETag",
    "ics": ".ics feed",
    "folder": "folder",
}
SYNC_NEEDS = {"caldav-sync": "radicale", "caldav-etag": "radicale", "ics": "feed", "folder": "folder"}
SYNC_PHASES = {"first": "first poll", "unchanged": "unchanged", "changed": f"{CHANGED} changed"}
SYNC_METRICS = (
    "seconds",
    "cpu_s",
    "loop_lag_ms",
    "requests",
    "server_requests",
    "server_s",
    "changed",
    "deleted",
)
MEMORY_METRICS = ("objects", "payload_bytes", "python_bytes", "held_bytes", "peak_bytes", "snapshot_bytes")


def run_source(fx: Fixture, kind: str, change: int) -> dict[str, Any]:
    """Measure one source in a fresh process (so its memory figures are its own)."""
    spec = {
        "kind": kind,
        "events": fx.events,
        "base": fx.base.isoformat(),
        "url": fx.feed_url if kind == "ics" else fx.radicale_url,
        "control": fx.feed_control,
        "folder": str(fx.folder),
        "log": str(fx.radicale_log),
        "change": change,
    }
    args = [sys.executable, SCRIPT, "_source", json.dumps(spec)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    if res.returncode != 0:
        raise BenchError(f"{kind} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def median(values: list[Any]) -> Any:
    """Median of the values that are not None (None when there are none)."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def section_sync(fx: Fixture, opts: argparse.Namespace) -> dict[str, Any]:
    """Measure each selected source `opts.runs` times; return medians per source and phase, and the runs."""
    kinds = [k for k in SYNC_SOURCES if k in opts.sources]
    raw: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    change = 0
    for run in range(opts.runs):
        print(f"sync run {run + 1}/{opts.runs}", file=sys.stderr, flush=True)
        for kind in kinds if run % 2 == 0 else reversed(kinds):  # alternate who runs on a warmer machine
            change += 1
            print(f"  {kind} ...", file=sys.stderr, flush=True)
            raw[kind].append(run_source(fx, kind, change))
    out: dict[str, Any] = {}
    for kind, results in raw.items():
        summary: dict[str, Any] = {}
        for phase in SYNC_PHASES:
            summary[phase] = {m: median([r[phase].get(m) for r in results]) for m in SYNC_METRICS}
            summary[phase]["check"] = all(r[phase]["check"] for r in results)
        summary["memory"] = {m: median([r["memory"][m] for r in results]) for m in MEMORY_METRICS}
        summary["runs"] = results
        out[kind] = summary
    return out


def fmt(v: float | None, spec: str = ",.0f") -> str:
    """Format a number, or '-' when there is none."""
    return "-" if v is None else format(v, spec)


def mib(v: float | None) -> str:
    """Bytes as MiB with one decimal."""
    return fmt(None if v is None else v / 2**20, ",.1f")


def print_sync(fx: Fixture, result: dict[str, Any]) -> None:
    """Print the sync tables: polls, then memory."""
    cols = ("source", "poll", "time s", "ms/1k", "ratio", "CPU s", "lag ms", "requests", "server", "server s")
    widths = (19, 12, 9, 8, 7, 8, 8, 9, 7, 9)
    print(
        f"{cols[0]:<19}{cols[1]:<12}"
        + "".join(f"{c:>{w}}" for c, w in zip(cols[2:], widths[2:], strict=True))
    )
    for kind, summary in result.items():
        first_s = summary["first"]["seconds"]
        for phase, phase_label in SYNC_PHASES.items():
            p = summary[phase]
            returned = p["changed"] + p["deleted"]
            cells = (
                fmt(p["seconds"], ".3f"),
                fmt(p["seconds"] / returned * 1e6 if phase == "first" and returned else None, ".1f"),
                fmt(p["seconds"] / first_s if first_s else None, ".3f"),
                fmt(p["cpu_s"], ".3f"),
                fmt(p["loop_lag_ms"], ",.0f"),
                fmt(p["requests"]),
                fmt(p["server_requests"]),
                fmt(p["server_s"], ".3f"),
            )
            got = f"  {returned:,} returned" + ("" if p["check"] else ": WRONG")
            row = f"{SYNC_SOURCES[kind] if phase == 'first' else '':<19}{phase_label:<12}"
            print(row + "".join(f"{c:>{w}}" for c, w in zip(cells, widths[2:], strict=True)) + got)
    print(
        "\nmemory of the polling process while it holds the first poll's objects (a fresh process per source)"
    )
    cols = ("source", "objects", "payload MiB", "as Python MiB", "held MiB", "peak MiB", "snapshot KiB")
    print(f"{cols[0]:<19}" + "".join(f"{c:>14}" for c in cols[1:]))
    for kind, summary in result.items():
        m = summary["memory"]
        cells = (
            fmt(m["objects"]),
            mib(m["payload_bytes"]),
            mib(m["python_bytes"]),
            mib(m["held_bytes"]),
            mib(m["peak_bytes"]),
            fmt(m["snapshot_bytes"] / 1024, ",.0f"),
        )
        print(f"{SYNC_SOURCES[kind]:<19}" + "".join(f"{c:>14}" for c in cells))


@dataclass(frozen=True)
class Section:
    """One part of the benchmark: what it needs served, how it measures, how it prints, whether it passed."""

    needs: Callable[[argparse.Namespace], set[str]]
    measure: Callable[[Fixture, argparse.Namespace], dict[str, Any]]
    report: Callable[[Fixture, dict[str, Any]], None]
    ok: Callable[[dict[str, Any]], bool]


SECTIONS = {
    "sync": Section(
        lambda opts: {SYNC_NEEDS[k] for k in opts.sources},
        section_sync,
        print_sync,
        lambda r: all(s[p]["check"] for s in r.values() for p in SYNC_PHASES),
    ),
    # To come: "occurrences" (memory with 100,000 future occurrences) once calendars/invites.py exists,
    # and "ring" (delay from an occurrence's start to meeting.ring) once chimebot/scheduler.py exists.
}


def machine_facts() -> dict[str, Any]:
    """Describe the machine and library versions the figures come from."""

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    facts: dict[str, Any] = {"nproc": os.cpu_count(), "python": sys.version.split()[0]}
    facts.update({d.lower(): version(d) for d in ("Radicale", "caldav", "niquests", "aiohttp", "icalendar")})
    facts["uvloop"] = HAVE_UVLOOP
    facts["loadavg_before"] = round(os.getloadavg()[0], 2)
    return facts


def print_header(fx: Fixture, facts: dict[str, Any], runs: int) -> None:
    """Print what was measured, on what, and what the setup cost."""
    c = fx.calendar
    print(
        f"\nchimebot calendar sources: {c['events']:,} events ({c['weekly_series']:,} weekly series,"
        f" {c['with_moved_instance']:,} with a moved instance, {c['inviting_meeting_address']:,} inviting"
        f" meet@/pin+), {mib(c['object_bytes'])} MiB as objects, {mib(c['feed_bytes'])} MiB as one feed;"
        f" {runs} run(s), medians"
    )
    print(", ".join(f"{k}={v}" for k, v in facts.items()))
    print(
        "setup, not counted: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in fx.setup.items())
    )
    print()


def main() -> int:
    """Parse options, dispatch hidden subcommands, or run the benchmark."""
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        cmd, *a = sys.argv[1:]
        if cmd == "_warm":
            return warm_radicale(a[0], a[1], int(a[2]))
        if cmd == "_feed":
            run_loop(serve_feed(int(a[0]), int(a[1]), date.fromisoformat(a[2])))
        elif cmd == "_source":
            print(json.dumps(run_loop(measure_source(json.loads(a[0])))), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help=f"events in the calendar (default {EVENTS:,})")
    parser.add_argument(
        "--runs", type=int, default=1, help="runs per source; medians are reported (default 1)"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} events (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of the tables")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument(
        "--sources", nargs="+", choices=list(SYNC_SOURCES), default=list(SYNC_SOURCES), help="sync: sources"
    )
    opts = parser.parse_args()
    opts.events = opts.events or (QUICK_EVENTS if opts.quick else EVENTS)
    if opts.events < CHANGED or opts.runs < 1:
        parser.error(f"--events must be >= {CHANGED} and --runs >= 1")
    facts = machine_facts()
    results: dict[str, Any] = {}
    needs = set().union(*(SECTIONS[name].needs(opts) for name in opts.sections))
    try:
        with fixture(opts.events, needs) as fx:
            for name in opts.sections:
                results[name] = SECTIONS[name].measure(fx, opts)
    except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 2
    ok = all(SECTIONS[name].ok(r) for name, r in results.items())
    if opts.json:
        summary = {"machine": facts, "runs": opts.runs, "calendar": fx.calendar, "setup": fx.setup, **results}
        print(json.dumps(summary, indent=2))
    else:
        print_header(fx, facts, opts.runs)
        for name, r in results.items():
            SECTIONS[name].report(fx, r)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
