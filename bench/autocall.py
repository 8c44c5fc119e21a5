"""Benchmark the scheduler and auto-call: memory with 100,000 future occurrences, and the ring delay.

Run: .venv/bin/python bench/autocall.py [--occurrences N] [--rings N] [--json]

One process runs the real server (SQLite in a temporary folder, the system clock, uvloop when
installed) on a loopback port, as `chimebot serve` would, and the bench drives it:
1. Memory (issue 4: "memory with 100,000 future occurrences"): N occurrences spread over the next 30
   days are applied through `Scheduler.apply` in syncs of 5,000 (as a calendar sync would report them);
   the bench reports the process's resident memory before and after, the time per sync, the number of
   APScheduler alarms (only the next 24 h get one) and the time of one `run_due` sweep over the table.
2. Ring delay (issue 4: "the delay between the start time and the ring"): a user's stream client is
   connected over a real WebSocket; R meetings start one every 0.5 s from 3 s on, each inviting that
   user; the bench records, for each `meeting.ring` frame, the time it arrived minus the meeting's start
   (the call time). The 100,000 occurrences of part 1 stay in the table meanwhile.
Figures are printed as a table (or one JSON document with --json); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# Run as a script, this folder comes first on sys.path, and bench/calendars.py would hide the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from calendars.invites import MeetingOccurrence  # noqa: E402
from chimebot.app import app_for  # noqa: E402
from chimebot.config import parse_config  # noqa: E402
from chimebot.http import SERVICES  # noqa: E402
from chimebot.models import User  # noqa: E402
from chimebot.services import build_services  # noqa: E402
from chimebot.store import accounts as qa  # noqa: E402

BATCH = 5_000


def rss_mib() -> float:
    """The process's resident memory now, in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def occurrence(i: int, start: datetime, organizer: str, attendee: str) -> MeetingOccurrence:
    """One single-instance meeting (a meet@ invitation) at `start`."""
    return MeetingOccurrence(
        key=f"bench-{i}@example.com",
        uid=f"bench-{i}@example.com",
        recurrence_id=None,
        start=start,
        end=start + timedelta(minutes=30),
        summary=f"Bench meeting {i}",
        organizer=organizer,
        attendees=(attendee, f"guest{i % 97}@outside.example"),
        pin=None,
        sequence=0,
        cancelled=False,
    )


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    """Start the server, load the occurrences, then measure the rings."""
    data = Path(tempfile.mkdtemp(prefix="chimebot-bench-"))
    config = parse_config(
        {"logging": {"level": "warning"}, "meetings": {"address_domain": "chime.example.com"}}, "bench"
    )
    services = build_services(config, data)
    app = app_for(services)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    svc = app[SERVICES]
    admin = await svc.accounts.operator()
    bob = User(str(uuid.uuid4()), admin.account_id, "bob@example.com", "Bob", False)
    async with svc.store.transaction() as conn:
        await qa.insert_user(conn, bob, datetime.now(UTC))
    token = await svc.signin.create_token(bob, "bench")
    result: dict[str, Any] = {}
    try:
        # -- 1. memory with N future occurrences ----------------------------------------------------
        base = datetime.now(UTC) + timedelta(hours=1)
        spread = timedelta(days=30).total_seconds()
        before = rss_mib()
        times = []
        for first in range(0, opts.occurrences, BATCH):
            batch = [
                occurrence(i, base + timedelta(seconds=spread * i / opts.occurrences), admin.email, bob.email)
                for i in range(first, min(first + BATCH, opts.occurrences))
            ]
            t0 = time.perf_counter()
            await svc.scheduler.apply("bench", batch, complete=False)
            times.append(time.perf_counter() - t0)
        after = rss_mib()
        t0 = time.perf_counter()
        await svc.scheduler.run_due()
        sweep = time.perf_counter() - t0
        result["memory"] = {
            "occurrences": opts.occurrences,
            "rss_before_mib": round(before, 1),
            "rss_after_mib": round(after, 1),
            "rss_growth_mib": round(after - before, 1),
            "apply_s_per_5000_median": round(statistics.median(times), 3),
            "apply_s_total": round(sum(times), 2),
            "alarms": len(svc.scheduler.jobs()),
            "run_due_sweep_ms": round(sweep * 1000, 1),
        }

        # -- 2. ring delay ----------------------------------------------------------------------------
        delays: list[float] = []
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/api/v1/stream?token={token}"
            async with http.ws_connect(url) as ws:
                while json.loads((await ws.receive()).data)["type"] != "stream.ready":
                    pass
                first = datetime.now(UTC) + timedelta(seconds=3)
                starts = {}
                batch = []
                for r in range(opts.rings):
                    start = first + timedelta(seconds=0.5 * r)
                    occ = occurrence(opts.occurrences + r, start, admin.email, bob.email)
                    starts[occ.key] = start
                    batch.append(occ)
                await svc.scheduler.apply("bench-rings", batch, complete=False)
                deadline = time.monotonic() + 3 + 0.5 * opts.rings + 30
                while len(delays) < opts.rings and time.monotonic() < deadline:
                    msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                    frame = json.loads(msg.data)
                    if frame.get("type") == "meeting.ring":
                        arrived = datetime.now(UTC)
                        delays.append((arrived - starts[frame["data"]["occurrence"]]).total_seconds())
        result["ring_delay"] = {
            "rings": len(delays),
            "expected": opts.rings,
            "median_ms": round(statistics.median(delays) * 1000, 1) if delays else None,
            "max_ms": round(max(delays) * 1000, 1) if delays else None,
            "min_ms": round(min(delays) * 1000, 1) if delays else None,
        }
    finally:
        await runner.cleanup()
    return result


def main() -> int:
    """Parse the options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--occurrences", type=int, default=100_000)
    parser.add_argument("--rings", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    result = asyncio.run(run(opts))
    if opts.json:
        print(json.dumps(result))
    else:
        for section, figures in result.items():
            print(section)
            for key, value in figures.items():
                print(f"  {key:28} {value}")
    return 0 if result["ring_delay"]["rings"] == opts.rings else 1


if __name__ == "__main__":
    sys.exit(main())
