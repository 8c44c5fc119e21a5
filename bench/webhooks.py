"""Benchmark chimebot's Chime-compatible webhooks against bare aiohttp ceilings (see shared/PERFORMANCE.md).

Run: .venv/bin/python bench/webhooks.py [--duration S] [--runs N] [--quick] [--json]
Figures: ingest (wrk -t1 -c64 on the Chime webhook, one stream client counting frames), the same on
`/hooks/{token}` with a Slack body (a link and one attachment) and with GitHub's push payload through
the `github` template, and fan-out (a 64-connection poster, 100 stream clients measuring delivery
delay). Each figure is measured next to a bare aiohttp ceiling that parses the same body in the same
run; the Slack and template figures are also compared with the Chime path of the same run. All load
comes from other processes on 127.0.0.1. Hidden subcommands (_bare, _clients, _poster) run those
processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(SCRIPT).parent.parent
CONNECTIONS = 64
FANOUT_CLIENTS = 100
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
TARGETS = {"ingest": 0.5, "fanout": 0.7}
# Run in this order; the figures without a target are compared with the ceiling and the Chime path.
FIGURES = ("ingest", "slack", "template", "fanout")
WRK_FIGURES = ("ingest", "slack", "template")  # measured with wrk on one webhook URL
# The rate limit applies to every webhook, on /incomingwebhooks/ and /hooks/ alike.
CONFIG_TOML = '[webhooks]\nrate_per_second = 1000000\nburst = 1000000\n[logging]\nlevel = "warning"\n'
JSON_HEADERS = {"Content-Type": "application/json"}
# A typical Slack incoming-webhook body: mrkdwn text with a link, one attachment with fields.
SLACK_BODY = {
    "text": "Deployed <https://ci.example.com/chimebot/builds/4242|build 4242> of `chimebot` to production",
    "username": "ci-bot",
    "attachments": [
        {
            "color": "good",
            "title": "Build 4242 passed",
            "title_link": "https://ci.example.com/chimebot/builds/4242",
            "text": "All 1,204 tests passed in 3m 12s on <https://git.example.com/chimebot/commit/0d1a26e|0d1a26e>",
            "fields": [
                {"title": "Branch", "value": "main", "short": True},
                {"title": "Environment", "value": "production", "short": True},
            ],
            "footer": "CI",
            "ts": 1764000000,
        }
    ],
}
GITHUB_FIXTURE = ROOT / "tests" / "fixtures" / "github" / "push_1_commit.json"
TEMPLATE = "github"
# Each wrk figure: its body, its request headers, and how its answer reads (checked before the load).
WRK_BODIES: dict[str, tuple[bytes, dict[str, str], str]] = {
    "ingest": (b'{"Content": "bench message"}', JSON_HEADERS, "chime"),
    "slack": (json.dumps(SLACK_BODY).encode(), JSON_HEADERS, "slack"),
    "template": (GITHUB_FIXTURE.read_bytes(), {**JSON_HEADERS, "X-GitHub-Event": "push"}, "chime"),
}


def wrk_lua(body: bytes, headers: dict[str, str]) -> str:
    """A wrk script that POSTs `body` with `headers` (the body in a Lua long string, verbatim)."""
    text = body.decode()
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    lines = ['wrk.method = "POST"', f"wrk.body = [{eq}[{text}]{eq}]"]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    return "\n".join(lines) + "\n"


class BenchError(RuntimeError):
    """A server or load process failed; the message says how."""


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on uvloop when installed (as chimebot does), else on plain asyncio."""
    if HAVE_UVLOOP:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# ---------------------------------------------------------------- subprocess side: bare ceilings


def bare_app(figure: str) -> web.Application:
    """Build the ceiling server: parse the JSON body, broadcast one frame string if fanout, answer 200."""
    fanout = figure == "fanout"
    clients: set[web.WebSocketResponse] = set()
    counter = 0

    async def post(request: web.Request) -> web.Response:
        nonlocal counter
        body = await request.json()
        counter += 1
        if fanout:
            # Encoded once and sent as the same string to every client, like chimebot should do.
            frame = json.dumps(
                {
                    "id": counter,
                    "type": "message.created",
                    "room_id": "bare",
                    "data": {"id": str(counter), "content": body["Content"], "format": "text"},
                }
            )
            for ws in list(clients):  # copy: a client may disconnect while we await
                with contextlib.suppress(ConnectionError):
                    await ws.send_str(frame)
        return web.json_response({"MessageId": str(counter), "RoomId": "bare"})

    async def hook(request: web.Request) -> web.Response:
        # /hooks/{token}: the same parse, answered as chimebot answers that body (Slack: text/plain ok).
        nonlocal counter
        await request.json()
        counter += 1
        if figure == "slack":
            return web.Response(text="ok", content_type="text/plain")
        return web.json_response({"MessageId": str(counter), "RoomId": "bare"})

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)  # as chimebot: small frames, one encoding for all
        await ws.prepare(request)
        await ws.send_str('{"type": "stream.ready", "last_id": 0}')
        clients.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            clients.discard(ws)
        return ws

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/incomingwebhooks/{id}", post)
    app.router.add_post("/hooks/{key}", hook)
    app.router.add_get("/healthz", healthz)
    if fanout:
        app.router.add_get("/api/v1/stream", stream)
    return app


async def serve_bare(figure: str, port: int) -> None:
    """Serve the bare app for one figure on 127.0.0.1:port until SIGTERM."""
    runner = web.AppRunner(bare_app(figure), access_log=None)  # no access log: chimebot logs warnings only
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


# ---------------------------------------------------------------- subprocess side: load generators


async def stream_clients(url: str, count: int, max_seconds: float) -> tuple[dict[str, Any], array[int]]:
    """Hold `count` stream clients; print "ready", then on SIGTERM drain; return counts and delays (ns)."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    ready = [asyncio.Event() for _ in range(count)]
    delays = array("q")
    state: dict[str, Any] = {"frames": 0, "closed": 0, "last_ns": 0}
    got_frame = asyncio.Event()

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(url, max_msg_size=0) as ws:
            async for msg in ws:
                now = time.time_ns()  # before parsing, so client-side work is not counted as delay
                ready[i].set()
                # Substring checks, not json.loads: at ~130k frames/s parsing would cost this process
                # a fifth of a core, and it shares the 2 cores with the server it measures.
                data = msg.data if msg.type == aiohttp.WSMsgType.TEXT else ""
                if '"message.created"' not in data:
                    continue
                state["frames"] += 1
                state["last_ns"] = now
                got_frame.set()
                start = data.find('"bench ') + 7  # the poster's content: "bench <send time_ns>"
                sent = data[start : data.find('"', start)] if start >= 7 else ""
                if sent.isdigit():
                    delays.append(now - int(sent))
        if not stop.is_set():
            state["closed"] += 1  # the server closed us early (e.g. dropped as a slow client)

    timeout = aiohttp.ClientTimeout(connect=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        tasks = [asyncio.create_task(client(i, session)) for i in range(count)]
        # The first frame (stream.ready) shows the subscription is live; fall back to a timeout in case
        # a server sends none, so no early message is missed by the count.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 5)
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise BenchError(f"stream client failed: {failed[0].exception()!r}")
        print("ready", flush=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
        # CPU share while loaded: near 100% would mean the clients, not the server, set the pace.
        state["cpu"] = round((time.process_time() - cpu0) / (time.monotonic() - wall0), 2)
        # Drain: keep reading until no message frame arrived for 1 s (at most 15 s).
        drain_end = time.monotonic() + 15
        while time.monotonic() < drain_end:
            got_frame.clear()
            try:
                await asyncio.wait_for(got_frame.wait(), 1)
            except TimeoutError:
                break
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return state, delays


async def poster(url: str, duration: float, concurrency: int) -> None:
    """POST timestamped messages over `concurrency` connections for `duration` s; print a JSON result."""
    counts = {"ok": 0, "non2xx": 0, "errors": 0}
    start_ns = time.time_ns()
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def worker() -> None:
            while time.monotonic() < deadline:
                body = b'{"Content": "bench %d"}' % time.time_ns()
                try:
                    async with session.post(url, data=body, headers=JSON_HEADERS) as resp:
                        await resp.read()
                        counts["ok" if resp.status < 300 else "non2xx"] += 1
                except (TimeoutError, aiohttp.ClientError):
                    counts["errors"] += 1
                    await asyncio.sleep(0.01)  # don't spin on a refusing server

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(json.dumps({**counts, "start_ns": start_ns, "end_ns": time.time_ns()}), flush=True)


# ---------------------------------------------------------------- orchestrator: processes and servers


def free_port() -> int:
    """Return a currently unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """Start a process in its own session so it and any children can be stopped by its id."""
    return subprocess.Popen(args, start_new_session=True, text=True, cwd=ROOT, **kwargs)


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process group we started, then SIGKILL it after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def wait_healthy(proc: subprocess.Popen[str], port: int, log: Path) -> None:
    """Poll GET /healthz until 200, bounded by 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        url = f"http://127.0.0.1:{port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"server not healthy after 30 s:\n{log.read_text()[-2000:]}")


def chimebot_cli(base: list[str], *args: str) -> dict[str, Any]:
    """Run a `python -m chimebot` management command and return its --json output."""
    res = subprocess.run([*base, *args, "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    if res.returncode != 0:
        raise BenchError(f"chimebot {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()[-1500:]}")
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"chimebot {' '.join(args)} printed no JSON: {res.stdout!r}") from exc


@contextlib.contextmanager
def server(kind: str, figure: str) -> Iterator[dict[str, str]]:
    """Start a fresh server (chimebot or bare) and yield its webhook and stream URLs."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="chimebot-bench-") as tmp:
        log = Path(tmp, "server.log")
        with open(log, "w") as logf:
            if kind == "bare":
                args = [sys.executable, SCRIPT, "_bare", figure, str(port)]
            else:
                Path(tmp, "bench.toml").write_text(CONFIG_TOML)
                base = [sys.executable, "-m", "chimebot"]
                opts = ["--config", f"{tmp}/bench.toml", "--data-dir", f"{tmp}/data"]
                args = [*base, "serve", *opts, "--host", "127.0.0.1", "--port", str(port)]
            # A log file, not a pipe: an unread pipe would block a chatty server.
            proc = spawn(args, stdout=logf, stderr=subprocess.STDOUT)
        try:
            wait_healthy(proc, port, log)
            if kind == "bare":
                post = "/incomingwebhooks/bare?token=x" if figure in ("ingest", "fanout") else "/hooks/bare"
                yield {
                    "post": f"http://127.0.0.1:{port}{post}",
                    "stream": f"ws://127.0.0.1:{port}/api/v1/stream?token=x",
                }
            else:
                token = chimebot_cli(base, "token", "create", "admin@localhost", *opts)["token"]
                chimebot_cli(base, "admin", "create-room", "bench", *opts)
                extra = ["--template", TEMPLATE] if figure == "template" else []
                hook = chimebot_cli(base, "webhook", "create", "bench", "bench-hook", *extra, *opts)
                if figure in ("ingest", "fanout"):
                    post = f"/incomingwebhooks/{hook['id']}?token={hook['token']}"
                else:
                    post = f"/hooks/{hook['token']}"
                yield {
                    "post": f"http://127.0.0.1:{port}{post}",
                    "stream": f"ws://127.0.0.1:{port}/api/v1/stream?token={token}",
                }
        finally:
            stop(proc)


@contextlib.contextmanager
def clients(url: str, count: int, max_seconds: float) -> Iterator[dict[str, Any]]:
    """Run the stream-client process; yield a dict filled with its result after the block ends."""
    with tempfile.NamedTemporaryFile(prefix="chimebot-bench-delays-") as delays_file:
        args = [sys.executable, SCRIPT, "_clients", url, str(count), delays_file.name, str(max_seconds)]
        proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        result: dict[str, Any] = {}
        try:
            # Bounded wait for "ready" (the client's own timeouts are 10 s connect + 5 s ready).
            if not select.select([proc.stdout], [], [], 30)[0] or proc.stdout.readline().strip() != "ready":
                stop(proc)  # so that reading its stderr cannot block
                raise BenchError(f"stream clients did not get ready: {proc.stderr.read()[-1500:]}")
            yield result
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=40)
            if proc.returncode != 0 or not out.strip():
                raise BenchError(f"stream clients failed (exit {proc.returncode}): {err[-1500:]}")
            result.update(json.loads(out.strip().splitlines()[-1]))
            result["delays"] = sorted(array("q", Path(delays_file.name).read_bytes()))
        finally:
            stop(proc)


# ---------------------------------------------------------------- orchestrator: measurements


def parse_wrk(out: str) -> dict[str, Any]:
    """Extract requests/s, p50/p99 latency (ms), requests, non-2xx and socket errors from wrk output."""
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}

    def latency(pct: str) -> float | None:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        return float(m.group(1)) * unit[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    reqs = re.search(r"(\d+) requests in", out)
    if not rps or not reqs:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "requests": int(reqs.group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, sock.groups())) if sock else 0,
    }


def check_answer(url: str, figure: str) -> None:
    """POST the figure's body once and check the answer is the success the figure is meant to measure."""
    body, headers, answer = WRK_BODIES[figure]

    async def post() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(url, data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.text(errors="replace")

    try:
        status, text = asyncio.run(post())
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise BenchError(f"{figure}: the check request failed: {exc!r}") from exc
    ok = False
    if answer == "slack":
        ok = status == 200 and text == "ok"
    else:  # a MessageId, not null: a template that drops the event answers {"MessageId": null}
        with contextlib.suppress(ValueError, AttributeError):
            ok = status == 200 and bool(json.loads(text).get("MessageId"))
    if not ok:
        raise BenchError(f"{figure}: the check request was answered {status} {text[:500]!r}")


def measure_ingest(kind: str, figure: str, duration: float) -> dict[str, Any]:
    """wrk one webhook URL with the figure's body; for chimebot, with one stream client counting frames."""
    body, headers, _ = WRK_BODIES[figure]
    with server(kind, figure) as urls, tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(wrk_lua(body, headers))
        lua.flush()
        # Before the stream client subscribes, so its count holds only the load's messages.
        check_answer(urls["post"], figure)
        wrk = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration:g}s", "--latency", "-s", lua.name]
        with contextlib.ExitStack() as stack:
            # The bare ceiling has no stream; chimebot is measured with one subscriber attached.
            stream = None
            if kind != "bare":
                stream = stack.enter_context(clients(urls["stream"], 1, duration + 60))
            res = subprocess.run([*wrk, urls["post"]], capture_output=True, text=True, timeout=duration + 30)
            if res.returncode != 0:
                raise BenchError(f"wrk failed: {res.stderr}")
        result: dict[str, Any] = parse_wrk(res.stdout)
        if stream is not None:
            result.update(stream_frames=stream["frames"], stream_closed=stream["closed"])
        return result


def percentile(values: list[int], pct: float) -> float | None:
    """Nearest-rank percentile of sorted nanosecond values, in ms."""
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * pct / 100))] / 1e6


def measure_fanout(kind: str, duration: float) -> dict[str, Any]:
    """Post timestamped messages for `duration` s while 100 stream clients measure delivery."""
    with server(kind, "fanout") as urls, clients(urls["stream"], FANOUT_CLIENTS, duration + 60) as stream:
        args = [sys.executable, SCRIPT, "_poster", urls["post"], str(duration), str(CONNECTIONS)]
        res = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, cwd=ROOT)
        if res.returncode != 0:
            raise BenchError(f"poster failed: {res.stderr[-1500:]}")
        posted = json.loads(res.stdout.strip().splitlines()[-1])
    # Count from the first send to the last delivery, so frames drained after the poster stopped
    # are not credited to a window they did not fit in.
    span_s = (max(posted["end_ns"], stream["last_ns"]) - posted["start_ns"]) / 1e9
    return {
        "msg_per_s": stream["frames"] / FANOUT_CLIENTS / span_s,
        "frames": stream["frames"],
        "posted_ok": posted["ok"],
        "non2xx": posted["non2xx"],
        "errors": posted["errors"],
        "closed": stream["closed"],
        "client_cpu": stream["cpu"],
        "p50_ms": percentile(stream["delays"], 50),
        "p99_ms": percentile(stream["delays"], 99),
    }


def measure(kind: str, figure: str, duration: float) -> dict[str, Any]:
    """Measure one figure on one server; record a chimebot failure so the ceilings still print."""
    print(f"  {figure:8} {kind:8} ...", file=sys.stderr, flush=True)
    try:
        if figure == "fanout":
            return measure_fanout(kind, duration)
        return measure_ingest(kind, figure, duration)
    except (BenchError, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as exc:
        if kind == "bare":
            raise
        print(f"  chimebot {figure} failed: {str(exc).strip().splitlines()[-1]}", file=sys.stderr, flush=True)
        return {"error": str(exc)}


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    """Median of one metric over the runs that produced it."""
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def machine_facts() -> dict[str, Any]:
    """Describe the machine the figures come from (a high load average means noisy neighbours)."""
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split(" Copyright")[0]
    return {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "uvloop": HAVE_UVLOOP,
        "wrk": wrk.strip(),
        "loadavg_before": round(os.getloadavg()[0], 2),
    }


def summarise(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Reduce per-run results to medians and ratios."""
    summary: dict[str, Any] = {}
    for figure in FIGURES:
        rate = "msg_per_s" if figure == "fanout" else "rps"
        keys = (rate, "p50_ms", "p99_ms")
        fig = {kind: {k: median(runs, k) for k in keys} for kind, runs in raw[figure].items()}
        c, b = fig["chimebot"][rate], fig["bare"][rate]
        fig["ratio"] = c / b if c is not None and b else None
        if figure in WRK_FIGURES and figure != "ingest":
            # Against the Chime path (and its ceiling) of the same run.
            chime = summary["ingest"]
            for kind in ("chimebot", "bare"):
                r, base = fig[kind]["rps"], chime[kind]["rps"]
                fig[kind]["vs_chime"] = r / base if r is not None and base else None
        fig["target"] = TARGETS.get(figure)
        fig["runs"] = raw[figure]
        summary[figure] = fig
    return summary


def fmt(v: float | None, spec: str = ",.0f") -> str:
    """Format a number, or '-' when no run produced it (see the errors below the table)."""
    return "-" if v is None else format(v, spec)


def print_table(summary: dict[str, Any], facts: dict[str, Any], duration: float, runs: int) -> None:
    """Print the human-readable result table."""
    labels = {
        "ingest": "ingest req/s",
        "slack": "slack req/s",
        "template": f"{TEMPLATE} tpl req/s",
        "fanout": "fan-out msg/s",
    }
    rows = [("figure", "chimebot", "ceiling", "ratio", "target", "vs Chime")]
    for figure in FIGURES:
        fig = summary[figure]
        key = "msg_per_s" if figure == "fanout" else "rps"
        ratio, target = fig["ratio"], fig["target"]
        ok = "" if ratio is None or target is None else (" ok" if ratio >= target else " BELOW")
        vs_chime = fig["chimebot"].get("vs_chime")
        rows.append(
            (
                labels[figure],
                fmt(fig["chimebot"][key]),
                fmt(fig["bare"][key]),
                fmt(ratio, ".2f") + ok,
                "-" if target is None else f">= {target}",
                "" if figure not in WRK_FIGURES[1:] else fmt(vs_chime, ".2f"),
            )
        )
        for p in ("p50_ms", "p99_ms"):
            name = f"  {'delay' if figure == 'fanout' else 'latency'} {p[:3]} ms"
            rows.append((name, fmt(fig["chimebot"][p], ".2f"), fmt(fig["bare"][p], ".2f"), "", "", ""))
    print(f"\nchimebot webhooks: {runs} run(s) x {duration:g} s, {CONNECTIONS} connections, medians")
    print(", ".join(f"{k}={v}" for k, v in facts.items()))
    for row in rows:
        print(f"{row[0]:<20}{row[1]:>12}{row[2]:>12}{row[3]:>12}{row[4]:>9}{row[5]:>10}")
    print(
        f"(ceilings: bare aiohttp parsing the same body; vs Chime: chimebot's req/s over its Chime path's;"
        f" the {TEMPLATE} ceiling is {fmt(summary['template']['bare']['vs_chime'], '.2f')} x the Chime"
        f" ceiling, the Slack ceiling {fmt(summary['slack']['bare']['vs_chime'], '.2f')} x)"
    )
    for figure in WRK_FIGURES:
        for i, r in enumerate(summary[figure]["runs"]["chimebot"], 1):
            if "error" in r:
                print(f"{figure} run {i}: chimebot error: {r['error']}")
                continue
            # wrk does not count the (up to 64) requests in flight when it stops, which may still commit.
            extra = r["stream_frames"] - (r["requests"] - r["non2xx"])
            ok = 0 <= extra <= CONNECTIONS + r["socket_errors"] and not r["stream_closed"]
            closed = ", stream closed early" if r["stream_closed"] else ""
            print(
                f"{figure} run {i}: wrk {r['requests']:,} responses ({r['non2xx']} non-2xx,"
                f" {r['socket_errors']} socket errors); stream saw {r['stream_frames']:,} message.created"
                f" ({extra:+} vs 2xx, in flight at wrk stop): {'match' if ok else 'MISMATCH'}{closed}"
            )
    fan = summary["fanout"]
    for i, (r, bare) in enumerate(zip(fan["runs"]["chimebot"], fan["runs"]["bare"], strict=True), 1):
        if "error" in r:
            print(f"fan-out run {i}: chimebot error: {r['error']}")
            continue
        print(
            f"fan-out run {i}: {r['posted_ok']:,} posted 2xx ({r['non2xx']} non-2xx, {r['errors']} errors),"
            f" {r['frames']:,} frames to {FANOUT_CLIENTS} clients, {r['closed']} clients closed early;"
            f" client process CPU {r['client_cpu']:.0%} (ceiling run: {bare['client_cpu']:.0%})"
        )


def main() -> int:
    """Parse options, dispatch hidden subcommands, or run the benchmark."""
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        cmd, *a = sys.argv[1:]
        if cmd == "_bare":
            run_loop(serve_bare(a[0], int(a[1])))
        elif cmd == "_clients":
            state, delays = run_loop(stream_clients(a[0], int(a[1]), float(a[3])))
            Path(a[2]).write_bytes(delays.tobytes())
            print(json.dumps(state), flush=True)
        elif cmd == "_poster":
            run_loop(poster(a[0], float(a[1]), int(a[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="duration 3, runs 1")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")
    opts = parser.parse_args()
    duration, runs = (3.0, 1) if opts.quick else (opts.duration, opts.runs)
    if duration <= 0 or runs < 1:
        parser.error("--duration must be > 0 and --runs >= 1")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    facts = machine_facts()
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {f: {"chimebot": [], "bare": []} for f in FIGURES}
    for run in range(runs):
        print(f"run {run + 1}/{runs}", file=sys.stderr, flush=True)
        # Alternate the order so neither side always runs on a warmer (or hotter) machine.
        kinds = ("bare", "chimebot") if run % 2 == 0 else ("chimebot", "bare")
        for figure in FIGURES:
            for kind in kinds:
                raw[figure][kind].append(measure(kind, figure, duration))
    summary = summarise(raw)
    if opts.json:
        print(json.dumps({"machine": facts, "duration": duration, "runs": runs, **summary}, indent=2))
    else:
        print_table(summary, facts, duration, runs)
    return 0 if all("error" not in r for f in raw.values() for r in f["chimebot"]) else 1


if __name__ == "__main__":
    sys.exit(main())
