"""Benchmark bot event delivery: events/s to one bot (1 and 10 rooms) and to 20 bots, and added latency.

Run: .venv/bin/python bench/bots.py [--quick] [--pg postgresql://USER@HOST:5432/SCRATCH_DB] [--json]
     (sizes: --messages N (2000), --crowd-messages M (200), --pings P (200); --quick: 300, 50, 50)

This process runs the real server (`build_services` + `app_for` on a loopback port, the system clock,
uvloop when installed, `[delivery] allow_private_endpoints = true`, `concurrency` 32 and
`poll_seconds` 1.0, both the defaults) on SQLite (a file in a temporary folder) and, with --pg, then
on that PostgreSQL database (give it a scratch one: the bench declares its own bots there, and a
server disables bots its config does not declare). The bots' HTTP endpoint is one aiohttp app with a
path per bot, in a **separate process** (hidden subcommand `_endpoint`), so the bots' CPU does not
share the server's event loop. It checks every request's Chime signature (Base64 HMAC-SHA256 over
"timestamp|body", as AWS documents it, a few microseconds), echoes the verification challenge and
answers events with an empty 200 (so no reply is posted). Bot secrets come from an env dict given to
`parse_config`. Messages are posted with `services.rooms.post` (what a webhook or the messages API
calls once the request is authenticated; not over HTTP) by 64 concurrent posters; every bot is
subscribed to `Message` only.
1. One bot, N messages in one room (a room's events reach a bot one after another), then the same bot
   in 10 rooms, messages round-robin (up to 10 sends in flight): events/s from just before the first
   post until the endpoint received the last `Message`.
2. 20 bots in one room, M messages: events/s = M x 20 / the same interval.
3. Added latency, from just before a post until the endpoint got its `Message` (both processes read
   CLOCK_MONOTONIC): P messages with one in flight (each posted 20 ms after the previous one's event
   arrived), then P messages at a fixed 20 ms cadence (50/s: delays include any queue that builds up).
Ceilings, measured in the same run from this process to the same endpoint with a plain aiohttp session
and bodies shaped and signed like chimebot's: the rate of signed POSTs with as many in flight as the
figure allows (1, 10, 20), and the latency of single POSTs 20 ms apart. "no bot" posts N messages into a
room without bots (the message path alone). Every figure checks that each bot received each
MessageId exactly once and that the database holds each delivery as `delivered`, and prints whether
it did (exit status 1 if not). Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import importlib.util
import io
import json
import os
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# Run as a script, this folder comes first on sys.path, and bench/webhooks.py would hide the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from chimebot.app import app_for  # noqa: E402
from chimebot.config import parse_config  # noqa: E402
from chimebot.models import Sender, User  # noqa: E402
from chimebot.services import Services, build_services  # noqa: E402
from chimebot.store import bots as qb  # noqa: E402
from webhooks import signing  # noqa: E402

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(SCRIPT).parent.parent
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
SEED_ENV = "CHIMEBOT_BENCH_BOT_SEED"  # the endpoint process derives each bot's secret from it
POSTERS = 64  # concurrent posters in the bursts
CROWD = 20  # bots in the 20-bot figure
SPREAD = 10  # rooms in the 10-room figure
GAP_S = 0.020  # between the latency probes
STALL_S = 30.0  # give up on a figure when no event arrived for this long


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on uvloop when installed (as chimebot does), else on plain asyncio."""
    if HAVE_UVLOOP:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def bot_secret(seed: str, name: str) -> str:
    """The secret of one bot (both processes derive it; at least 16 characters as the config asks)."""
    return hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:40]


# ---------------------------------------------------------------- subprocess side: the bots' endpoint


class Endpoint:
    """Every bot's endpoint: POST /bot/{name}; GET /stats, GET /dump and POST /reset for the bench."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.secrets: dict[str, bytes] = {}
        self.reset()

    def reset(self) -> None:
        """Forget what was received (between figures)."""
        self.got: dict[str, Counter[str]] = defaultdict(Counter)  # bot -> MessageId -> times received
        self.total = 0
        self.first_ns = 0
        self.last_ns = 0
        self.delays: list[tuple[str, str, int]] = []  # (bot, MessageId, ns from the post to here)
        self.bad_signatures = 0
        self.other_events: Counter[str] = Counter()
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []  # (total awaited, its /wait)

    def verified(self, name: str, request: web.Request, body: bytes) -> bool:
        """AWS's check: Base64(HMAC-SHA256(secret, timestamp + "|" + body)) == Chime-Signature."""
        secret = self.secrets.get(name)
        if secret is None:
            secret = self.secrets[name] = bot_secret(self.seed, name).encode()
        timestamp = request.headers.get("Chime-Request-Timestamp", "")
        mac = hmac.new(secret, timestamp.encode() + b"|" + body, hashlib.sha256).digest()
        return hmac.compare_digest(base64.b64encode(mac), request.headers.get("Chime-Signature", "").encode())

    async def event(self, request: web.Request) -> web.Response:
        """One event: verify, answer a challenge, or record a Message (MessageId, delay)."""
        now = time.monotonic_ns()
        name = request.match_info["name"]
        body = await request.read()
        if not self.verified(name, request, body):
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        event = json.loads(body)
        kind = event.get("EventType")
        if kind == "HTTPSEndpointVerification":
            return web.json_response({"Challenge": event["Challenge"]})
        if kind != "Message":
            self.other_events[kind] += 1
            return web.Response()
        message_id = event["MessageId"]
        self.got[name][message_id] += 1
        self.total += 1
        self.first_ns = self.first_ns or now
        self.last_ns = now
        for waiter in [w for w in self.waiters if w[0] <= self.total]:
            self.waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(None)
        content = event["Message"]
        if content.startswith("lat "):  # a latency probe: "lat <monotonic ns just before the post>"
            self.delays.append((name, message_id, now - int(content[4:])))
        return web.Response()  # an empty 200: delivered, and no reply to post

    async def stats(self, request: web.Request) -> web.Response:
        """Progress, cheap enough to poll."""
        return web.json_response(
            {
                "total": self.total,
                "first_ns": self.first_ns,
                "last_ns": self.last_ns,
                "cpu": time.process_time(),
            }
        )

    async def wait(self, request: web.Request) -> web.Response:
        """Answer once `total` events arrived since the reset (at most 30 s)."""
        total = int(request.query["total"])
        if self.total < total:
            waiter = (total, asyncio.get_running_loop().create_future())
            self.waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1], 30)
        return web.json_response({"total": self.total})

    async def dump(self, request: web.Request) -> web.Response:
        """Everything received since the last reset."""
        return web.json_response(
            {
                "got": {name: dict(ids) for name, ids in self.got.items()},
                "delays": self.delays,
                "bad_signatures": self.bad_signatures,
                "other_events": dict(self.other_events),
                "cpu": time.process_time(),
            }
        )

    async def do_reset(self, request: web.Request) -> web.Response:
        """Start a figure afresh."""
        self.reset()
        return web.json_response({"cpu": time.process_time()})


async def serve_endpoint(port: int) -> None:
    """Serve the bots' endpoint on 127.0.0.1:port, print "ready", run until SIGTERM."""
    endpoint = Endpoint(os.environ[SEED_ENV])
    app = web.Application()
    app.router.add_post("/bot/{name}", endpoint.event)
    app.router.add_get("/stats", endpoint.stats)
    app.router.add_get("/dump", endpoint.dump)
    app.router.add_get("/wait", endpoint.wait)
    app.router.add_post("/reset", endpoint.do_reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


# ---------------------------------------------------------------- orchestrator: processes


class BenchError(RuntimeError):
    """A process or a figure failed; the message says how."""


def free_port() -> int:
    """Return a currently unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def endpoint_process(seed: str) -> Any:
    """Start the endpoint process (in its own session, stopped by its id) and yield its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "_endpoint", str(port)],
        cwd=ROOT,
        env=os.environ | {SEED_ENV: seed},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        if not select.select([proc.stdout], [], [], 30)[0] or proc.stdout.readline().strip() != "ready":  # type: ignore[list-item,union-attr]
            proc.kill()
            raise BenchError(f"the endpoint process did not start: {proc.stderr.read()[-1500:]}")  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}"
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)


# ---------------------------------------------------------------- orchestrator: the server and figures


@dataclass
class Bench:
    """The running server, its bots' rooms, and a session to the endpoint process."""

    services: Services
    admin: User
    sender: Sender  # the admin, as the messages' sender
    http: aiohttp.ClientSession  # the bench's own session (stats, ceilings), not chimebot's
    base: str  # the endpoint process
    seed: str
    rooms: dict[str, list[str]]  # bot name -> its room ids, in the declared order

    async def endpoint(self, method: str, path: str) -> dict[str, Any]:
        """Call the endpoint's bench routes."""
        async with self.http.request(method, self.base + path) as resp:
            resp.raise_for_status()
            return await resp.json()


def bot_names(run: str) -> dict[str, list[str]]:
    """The bench's bots, by figure; names carry the run id so a reused database starts clean."""
    return {
        "solo": [f"solo-{run}"],
        "spread": [f"spread-{run}"],
        "crowd": [f"crowd-{run}-{i:02d}" for i in range(CROWD)],
        "ping": [f"ping-{run}"],
        "pace": [f"pace-{run}"],
    }


def bench_config(db_url: str, base: str, seed: str, run: str, opts: argparse.Namespace) -> Any:
    """The config: one declared bot per figure (the crowd's 20 share a room), secrets from an env dict."""
    names = bot_names(run)
    rooms = {
        "solo": [f"bench-solo-{run}"],
        "spread": [f"bench-spread-{run}-{k}" for k in range(SPREAD)],
        "crowd": [f"bench-crowd-{run}"],
        "ping": [f"bench-ping-{run}"],
        "pace": [f"bench-pace-{run}"],
    }
    env: dict[str, str] = {}
    bots = []
    for figure, members in names.items():
        for name in members:
            var = "BOT_SECRET_" + name.upper().replace("-", "_")
            env[var] = bot_secret(seed, name)
            bots.append(
                {
                    "name": name,
                    "endpoint": f"{base}/bot/{name}",
                    "secret_env": var,
                    "events": ["Message"],
                    "rooms": rooms[figure],
                }
            )
    data = {
        "database": {"url": db_url},
        "logging": {"level": "warning"},
        "meetings": {"address_domain": "chime.example.com"},
        "delivery": {
            "allow_private_endpoints": True,
            "poll_seconds": opts.poll,
            "concurrency": opts.concurrency,
        },
        "bots": bots,
    }
    return parse_config(data, "bench", env=env)


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of sorted values."""
    return values[min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))]


async def wait_for_events(b: Bench, expected: int, what: str) -> dict[str, Any]:
    """Poll the endpoint until `expected` events arrived, or none arrived for STALL_S seconds."""
    seen, progress = -1, time.monotonic()
    while True:
        stats = await b.endpoint("GET", "/stats")
        if stats["total"] >= expected:
            return stats
        if stats["total"] != seen:
            seen, progress = stats["total"], time.monotonic()
        elif time.monotonic() - progress > STALL_S:
            print(f"  {what}: stalled at {seen:,}/{expected:,} events", file=sys.stderr, flush=True)
            return stats
        await asyncio.sleep(0.05)


async def check_once(b: Bench, names: Sequence[str], posted: dict[str, list[str]]) -> dict[str, Any]:
    """Compare what each bot received with what was posted in its rooms; count the database's rows."""
    await asyncio.sleep(0.3)  # a duplicate would come right after the last event, not later
    dump = await b.endpoint("GET", "/dump")
    missing = duplicates = unexpected = once = 0
    for name in names:
        got = dump["got"].get(name, {})
        want = {mid for room in b.rooms[name] for mid in posted.get(room, [])}
        once += sum(1 for mid, n in got.items() if n == 1 and mid in want)
        duplicates += sum(n - 1 for n in got.values() if n > 1)
        missing += len(want - got.keys())
        unexpected += len(got.keys() - want)
    async with b.services.store.read() as conn:
        counts = await qb.delivery_counts(conn, None)
    statuses: Counter[str] = Counter()
    for name in names:
        statuses.update(counts.get(name, {}))
    return {
        "expected": sum(len(posted.get(room, [])) for name in names for room in b.rooms[name]),
        "once": once,
        "missing": missing,
        "duplicates": duplicates,
        "unexpected": unexpected,
        "bad_signatures": dump["bad_signatures"],
        "other_events": dump["other_events"],
        "db": dict(statuses),
        "delays": dump["delays"],
    }


async def post_many(b: Bench, rooms: Sequence[str], messages: int, posted: dict[str, list[str]]) -> float:
    """Post `messages` round-robin over `rooms` with POSTERS concurrent posters; seconds until committed."""
    queue = iter(range(messages))

    async def poster() -> None:
        for i in queue:
            room = rooms[i % len(rooms)]
            row = await b.services.rooms.post(room, b.sender, f"burst {i}", "text")
            posted[room].append(row["id"])

    t0 = time.monotonic_ns()
    await asyncio.gather(*(poster() for _ in range(POSTERS)))
    return (time.monotonic_ns() - t0) / 1e9


async def posting_only(b: Bench, run: str, messages: int) -> dict[str, Any]:
    """The message path alone: `messages` posts into a room no bot is in (the router still reads them)."""
    print(f"  no bot: {messages:,} messages ...", file=sys.stderr, flush=True)
    room = await b.services.rooms.create(b.admin, f"bench-quiet-{run}")
    cpu0 = time.process_time()
    seconds = await post_many(b, [room.id], messages, defaultdict(list))
    return {"messages": messages, "posted_s": seconds, "server_cpu": (time.process_time() - cpu0) / seconds}


async def burst(b: Bench, label: str, names: Sequence[str], messages: int) -> dict[str, Any]:
    """Post `messages` round-robin over the rooms of `names`, time until every bot got every Message."""
    rooms = sorted({room for name in names for room in b.rooms[name]}, key=b.rooms[names[0]].index)
    expected = messages * len(names)
    print(f"  {label}: {messages:,} messages, {expected:,} events ...", file=sys.stderr, flush=True)
    ep_cpu0 = (await b.endpoint("POST", "/reset"))["cpu"]
    posted: dict[str, list[str]] = defaultdict(list)
    cpu0 = time.process_time()
    t0 = time.monotonic_ns()
    posted_s = await post_many(b, rooms, messages, posted)
    stats = await wait_for_events(b, expected, label)
    # CPU over the same wall interval (to the last poll), as a share of one core.
    cpu_wall = (time.monotonic_ns() - t0) / 1e9
    cpu = time.process_time() - cpu0
    seconds = (stats["last_ns"] - t0) / 1e9 if stats["total"] else float("nan")
    check = await check_once(b, names, posted)
    check.pop("delays")
    return {
        "label": label,
        "bots": len(names),
        "rooms": len(rooms),
        "messages": messages,
        "events": stats["total"],
        "expected_events": expected,
        "seconds": seconds,
        "events_per_s": stats["total"] / seconds if stats["total"] else 0.0,
        "posted_s": posted_s,
        "first_event_ms": (stats["first_ns"] - t0) / 1e6 if stats["total"] else None,
        "server_cpu": cpu / cpu_wall,
        "endpoint_cpu": (stats["cpu"] - ep_cpu0) / cpu_wall,
        "check": check,
    }


def signed_body(seed: str, name: str, message_id: str, content: str) -> tuple[bytes, dict[str, str]]:
    """A body shaped and signed like chimebot's Message events, for the plain-aiohttp ceilings."""
    event = {
        "Sender": {"SenderId": "admin@localhost", "SenderIdType": "EmailId"},
        "Discussion": {"DiscussionId": "00000000-0000-0000-0000-000000000000", "DiscussionType": "Room"},
        "EventType": "Message",
        "InboundHttpsEndpoint": {
            "EndpointType": "ShortLived",
            # The shape of chimebot's short-lived reply URL (InboundEndpoints.short_lived).
            "Url": f"http://127.0.0.1:8080/bots/inbound/{name}/{'0' * 36}?token={'x' * 43}&expires={2**31}",
        },
        "EventTimestamp": "2026-01-01T00:00:00.000Z",
        "Message": content,
        "MessageId": message_id,
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = signing.chime_headers(bot_secret(seed, name), body, datetime.now(UTC))
    return body, headers | {"Content-Type": "application/json"}


async def ceiling(b: Bench, name: str, count: int, lanes: int) -> dict[str, Any]:
    """Signed POSTs from this process with a plain aiohttp session, `lanes` in flight: events/s."""
    await b.endpoint("POST", "/reset")
    queue = iter(range(count))
    url = f"{b.base}/bot/{name}"

    async def lane() -> None:
        for i in queue:
            body, headers = signed_body(b.seed, name, f"ceiling-{i}", f"burst {i}")
            async with b.http.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise BenchError(f"the endpoint answered the ceiling's POST with {resp.status}")

    t0 = time.monotonic_ns()
    await asyncio.gather(*(lane() for _ in range(lanes)))
    stats = await wait_for_events(b, count, f"ceiling x{lanes}")
    return {"lanes": lanes, "events": stats["total"], "events_per_s": count / ((stats["last_ns"] - t0) / 1e9)}


async def probes(b: Bench, count: int, mode: str) -> dict[str, Any]:
    """Latency probes; mode "serial": one message in flight, the next GAP_S after the last arrived;
    "paced": one message every GAP_S whatever happens; "plain": signed POSTs, GAP_S apart."""
    name = bot_names_of(b, "pace" if mode == "paced" else "ping")
    room = b.rooms[name][0]
    await b.endpoint("POST", "/reset")
    posted: dict[str, list[str]] = defaultdict(list)
    start = time.monotonic()
    for i in range(count):
        if mode == "paced":
            await asyncio.sleep(max(0.0, start + i * GAP_S - time.monotonic()))
        else:
            await asyncio.sleep(GAP_S)
        if mode == "plain":
            body, headers = signed_body(b.seed, name, f"plain-{i}", f"lat {time.monotonic_ns()}")
            async with b.http.post(f"{b.base}/bot/{name}", data=body, headers=headers) as resp:
                await resp.read()
            continue
        row = await b.services.rooms.post(room, b.sender, f"lat {time.monotonic_ns()}", "text")
        posted[room].append(row["id"])
        if mode == "serial":  # a long poll: the endpoint answers once it has i + 1 events
            await b.endpoint("GET", f"/wait?total={i + 1}")
    await wait_for_events(b, count, "latency")
    if mode == "plain":
        dump = await b.endpoint("GET", "/dump")
        delays, check = dump["delays"], None
    else:
        check = await check_once(b, [name], posted)
        delays = check.pop("delays")
    ms = sorted(d / 1e6 for _, _, d in delays)
    return {
        "mode": mode,
        "probes": count,
        "received": len(ms),
        "median_ms": statistics.median(ms) if ms else None,
        "p90_ms": percentile(ms, 90) if ms else None,
        "max_ms": ms[-1] if ms else None,
        "check": check,
    }


def bot_names_of(b: Bench, figure: str) -> str:
    """The one bot of a figure (by its name's prefix)."""
    return next(name for name in b.rooms if name.startswith(figure + "-"))


async def run_engine(
    engine: str, db_url: str, opts: argparse.Namespace, base: str, seed: str
) -> dict[str, Any]:
    """Start a server on one database, run every figure, stop it."""
    run = secrets.token_hex(3)
    data = Path(tempfile.mkdtemp(prefix="chimebot-bench-bots-"))
    config = bench_config(db_url, base, seed, run, opts)
    services = build_services(config, data)
    runner = web.AppRunner(app_for(services), access_log=None)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the first start prints a sign-in link
            await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        names = bot_names(run)
        async with services.store.read() as conn:
            bots = {bot.name: bot for bot in await qb.all_bots(conn)}
            rooms = {
                name: [r[0] for r in await qb.rooms_of_bot(conn, name)]
                for group in names.values()
                for name in group
            }
        unready = [name for group in names.values() for name in group if not bots[name].ready]
        if unready:
            raise BenchError(f"bots not verified: {', '.join(unready)} ({bots[unready[0]].verify_error})")
        # rooms_of_bot orders by name, which is the declared order here (…-0 to …-9).
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            admin = await services.accounts.operator()
            sender = Sender("user", admin.id, admin.display_name)
            b = Bench(services, admin, sender, http, base, seed, rooms)
            out: dict[str, Any] = {"engine": engine}
            solo, spread, crowd = names["solo"], names["spread"], names["crowd"]
            out["posting_only"] = await posting_only(b, run, opts.messages)
            out["bursts"] = [
                await burst(b, "1 bot, 1 room", solo, opts.messages),
                await burst(b, f"1 bot, {SPREAD} rooms", spread, opts.messages),
                await burst(b, f"{CROWD} bots, 1 room", crowd, opts.crowd_messages),
            ]
            lanes = {1: opts.messages, SPREAD: opts.messages, CROWD: opts.crowd_messages * CROWD}
            print("  ceilings: plain aiohttp POSTs ...", file=sys.stderr, flush=True)
            out["ceilings"] = {n: await ceiling(b, solo[0], count, n) for n, count in lanes.items()}
            print(
                f"  latency: {opts.pings} probes {GAP_S * 1000:g} ms apart ...", file=sys.stderr, flush=True
            )
            out["latency"] = {
                mode: await probes(b, opts.pings, mode) for mode in ("serial", "paced", "plain")
            }
    finally:
        await runner.cleanup()
        shutil.rmtree(data, ignore_errors=True)
    return out


async def run_all(opts: argparse.Namespace) -> list[dict[str, Any]]:
    """Start the endpoint process and measure each engine."""
    seed = secrets.token_hex(16)
    engines = [("SQLite", "")] + ([("PostgreSQL", opts.pg)] if opts.pg else [])
    results = []
    with endpoint_process(seed) as base:
        for engine, url in engines:
            print(f"{engine}:", file=sys.stderr, flush=True)
            if not url:
                url = ""  # the embedded SQLite file in the data folder
            results.append(await run_engine(engine, url, opts, base, seed))
    return results


# ---------------------------------------------------------------- report


def fmt(v: float | None, spec: str = ",.0f") -> str:
    """Format a number, or '-' when it was not measured."""
    return "-" if v is None else format(v, spec)


def check_line(label: str, check: dict[str, Any], bots: int) -> str:
    """One sentence on exactly-once delivery for a figure."""
    ok = (
        check["once"] == check["expected"]
        and not (check["missing"] or check["duplicates"] or check["unexpected"] or check["bad_signatures"])
        and check["db"] == {"delivered": check["expected"]}
    )
    db = ", ".join(f"{n:,} {s}" for s, n in sorted(check["db"].items())) or "no rows"
    return (
        f"  {label}: {'OK' if ok else 'PROBLEM'} - {check['once']:,}/{check['expected']:,} (bot, MessageId)"
        f" pairs received exactly once over {bots} bot(s); {check['missing']} missing, {check['duplicates']}"
        f" duplicates, {check['unexpected']} unexpected, {check['bad_signatures']} bad signatures;"
        f" database: {db}"
    )


def print_report(results: list[dict[str, Any]], opts: argparse.Namespace, facts: dict[str, Any]) -> None:
    """The human-readable tables."""
    print(
        f"\nchimebot bots: endpoint in a separate process (signatures verified), messages posted with"
        f" rooms.post by {POSTERS} posters, [delivery] concurrency {opts.concurrency},"
        f" poll_seconds {opts.poll:g}"
    )
    print(", ".join(f"{k}={v}" for k, v in facts.items()))
    for r in results:
        print(f"\n{r['engine']}")
        head = (
            "figure",
            "events",
            "seconds",
            "events/s",
            "ceiling/s",
            "ratio",
            "posts/s",
            "srv CPU",
            "bot CPU",
        )
        print(f"{head[0]:<18}" + "".join(f"{h:>10}" for h in head[1:]))
        quiet = r["posting_only"]
        row = (
            "-",
            "-",
            "-",
            "-",
            "-",
            fmt(quiet["messages"] / quiet["posted_s"]),
            fmt(quiet["server_cpu"], ".0%"),
            "-",
        )
        print(f"{'no bot (posting)':<18}" + "".join(f"{c:>10}" for c in row))
        for fig, lanes in zip(r["bursts"], (1, SPREAD, CROWD), strict=True):
            ceil = r["ceilings"][lanes]["events_per_s"]
            row = (
                fmt(fig["events"]),
                fmt(fig["seconds"], ".2f"),
                fmt(fig["events_per_s"]),
                fmt(ceil),
                fmt(fig["events_per_s"] / ceil, ".3f"),
                fmt(fig["messages"] / fig["posted_s"]),
                fmt(fig["server_cpu"], ".0%"),
                fmt(fig["endpoint_cpu"], ".0%"),
            )
            print(f"{fig['label']:<18}" + "".join(f"{c:>10}" for c in row))
        print(
            f"  ceilings: signed POSTs from the server process, 1 / {SPREAD} / {CROWD} in flight; posts/s:"
            f" the messages' commits (all posted before most events were sent); CPU: share of one core"
        )
        lat = r["latency"]
        serial, paced, plain = lat["serial"], lat["paced"], lat["plain"]
        print(f"{'latency ms':<18}{'median':>10}{'p90':>10}{'max':>10}{'received':>10}")
        rows = (
            ("one in flight", serial),
            (f"every {GAP_S * 1000:g} ms", paced),
            ("plain POST", plain),
        )
        for label, d in rows:
            cells = (
                fmt(d["median_ms"], ".2f"),
                fmt(d["p90_ms"], ".2f"),
                fmt(d["max_ms"], ".2f"),
                fmt(d["received"]),
            )
            print(f"{label:<18}" + "".join(f"{c:>10}" for c in cells))
        if serial["median_ms"] and plain["median_ms"]:
            print(
                f"{'ratio':<18}"
                + "".join(f"{serial[k] / plain[k]:>10.1f}" for k in ("median_ms", "p90_ms", "max_ms"))
                + f"   (one in flight / plain POST; added by chimebot, median:"
                f" {serial['median_ms'] - plain['median_ms']:.2f} ms)"
            )
        print(
            f"  one in flight: each message posted {GAP_S * 1000:g} ms after the last one's event arrived;"
            f" every {GAP_S * 1000:g} ms: a fixed cadence, so delays include any queue that builds up"
        )
        print("exactly once:")
        for fig in r["bursts"]:
            print(check_line(fig["label"], fig["check"], fig["bots"]))
        print(check_line("latency, one in flight", serial["check"], 1))
        print(check_line(f"latency, every {GAP_S * 1000:g} ms", paced["check"], 1))


def main() -> int:
    """Parse options, dispatch the hidden subcommand, or run the benchmark."""
    if len(sys.argv) > 2 and sys.argv[1] == "_endpoint":
        run_loop(serve_endpoint(int(sys.argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages for the 1-bot figures (2000)")
    parser.add_argument("--crowd-messages", type=int, default=200, help=f"messages to the {CROWD} bots (200)")
    parser.add_argument("--pings", type=int, default=200, help="latency probes (200)")
    parser.add_argument("--poll", type=float, default=1.0, help="[delivery] poll_seconds (1.0, the default)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="[delivery] concurrency (32, the default)"
    )
    parser.add_argument("--pg", metavar="URL", help="also run on this PostgreSQL database (a scratch one)")
    parser.add_argument("--quick", action="store_true", help="300 messages, 50 to the crowd, 50 probes")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    opts = parser.parse_args()
    if opts.quick:
        opts.messages, opts.crowd_messages, opts.pings = 300, 50, 50
    if min(opts.messages, opts.crowd_messages, opts.pings) < 1:
        parser.error("sizes must be >= 1")
    facts = {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "uvloop": HAVE_UVLOOP,
        "loadavg_before": round(os.getloadavg()[0], 2),
    }
    results = run_loop(run_all(opts))
    if opts.json:
        print(
            json.dumps({"machine": facts, "options": vars(opts), "results": results}, indent=2, default=str)
        )
    else:
        print_report(results, opts, facts)
    checks = [f["check"] for r in results for f in r["bursts"]]
    checks += [r["latency"][mode]["check"] for r in results for mode in ("serial", "paced")]
    return 0 if all(c["once"] == c["expected"] and not c["duplicates"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
