"""webhooks.delivery: one POST against real aiohttp servers on loopback, the SSRF gate, the retry policy."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from webhooks.delivery import (
    MAX_DELAY,
    MAX_RESPONSE_BYTES,
    RETRY_FOR,
    EndpointRefused,
    GuardedResolver,
    Response,
    check_url,
    make_session,
    parse_retry_after,
    post,
    refused_reason,
    retry_delay,
    verdict,
)

NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
BODY = b'{"Content": "build 42 passed"}'
BIG = bytes(range(256)) * 800  # 200 KiB


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 and what it was asked."""

    server: TestServer
    hits: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """The URL of a path on this server, by address or by another name for it."""
        return f"http://{host}:{self.server.port}{path}"

    @property
    def paths(self) -> list[str]:
        """The paths requested, in order."""
        return [path for path, _, _ in self.hits]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver with a route per kind of answer."""
    app = web.Application()
    state = Receiver(TestServer(app, host="127.0.0.1"))

    def recorded(
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            state.hits.append((request.path, dict(request.headers), await request.read()))
            return await handler(request)

        return wrapper

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text='{"ok": true}', content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        headers = {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
        return web.Response(status=int(request.match_info["code"]), text="answer", headers=headers)

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/target"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(state.release.wait(), 10)
        return web.Response(text="late")

    async def trickle(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse()
        await answer.prepare(request)
        for _ in range(100):  # headers at once, then a byte every 50 ms: 5 s in all
            if state.release.is_set():
                break
            await answer.write(b"x")
            await asyncio.sleep(0.05)
        return answer

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=BIG)

    app.router.add_post("/ok", recorded(ok))
    app.router.add_post("/status/{code}", recorded(status))
    app.router.add_post("/redirect", recorded(redirect))
    app.router.add_route("*", "/target", recorded(ok))
    app.router.add_post("/slow", recorded(slow))
    app.router.add_post("/trickle", recorded(trickle))
    app.router.add_post("/big", recorded(big))
    await state.server.start_server()
    try:
        yield state
    finally:
        state.release.set()
        await state.server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that may call loopback, as the receiver lives there."""
    async with make_session(allow_private=True) as client:
        yield client


@pytest.fixture
async def guarded() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that refuses private addresses."""
    async with make_session(allow_private=False) as client:
        yield client


async def send(
    session: aiohttp.ClientSession,
    url: str,
    *,
    within: float = 5.0,
    allow_private: bool = True,
    headers: dict[str, str] | None = None,
) -> Response:
    """One post of BODY with the test defaults, given ``within`` seconds."""
    return await post(session, url, BODY, headers or {}, timeout=within, now=NOW, allow_private=allow_private)


# --- Answers --------------------------------------------------------------------------------------


async def test_a_2xx_is_delivered_with_the_body_read(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    answer = await send(session, receiver.url("/ok"), headers={"Chime-Signature": "c2ln"})
    assert answer.status == 200
    assert answer.verdict == "delivered"
    assert answer.body == b'{"ok": true}'
    assert answer.error is None
    assert answer.retry_after is None
    assert 0 <= answer.elapsed < 5
    [(path, headers, body)] = receiver.hits
    assert (path, body) == ("/ok", BODY)
    assert headers["Content-Type"] == "application/json"
    assert headers["Chime-Signature"] == "c2ln"


async def test_a_given_content_type_is_kept(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    await send(session, receiver.url("/ok"), headers={"content-type": "text/plain; charset=utf-8"})
    [(_, headers, _)] = receiver.hits
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("code", "retry_after", "expected"),
    [
        (500, None, None),
        (502, None, None),
        (503, "120", 120.0),
        (429, "Thu, 26 Nov 2026 10:01:30 GMT", 90.0),
        (408, None, None),
        (429, "whenever", None),
    ],
)
async def test_server_trouble_and_rate_limits_are_retried(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    code: int,
    retry_after: str | None,
    expected: float | None,
) -> None:
    query = f"?retry_after={retry_after}" if retry_after else ""
    answer = await send(session, receiver.url(f"/status/{code}{query}"))
    assert answer.status == code
    assert answer.verdict == "retry"
    assert answer.retry_after == expected
    assert answer.body == b"answer"
    assert answer.error is None


async def test_410_is_gone(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    answer = await send(session, receiver.url("/status/410"))
    assert (answer.status, answer.verdict) == (410, "gone")


@pytest.mark.parametrize("code", [400, 401, 404, 413])
async def test_other_client_errors_are_refused(
    receiver: Receiver, session: aiohttp.ClientSession, code: int
) -> None:
    answer = await send(session, receiver.url(f"/status/{code}"))
    assert (answer.status, answer.verdict) == (code, "refused")


async def test_a_redirect_is_refused_and_not_followed(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    answer = await send(session, receiver.url("/redirect"))
    assert (answer.status, answer.verdict) == (302, "refused")
    await asyncio.sleep(0.05)  # give a followed request time to arrive, were there one
    assert receiver.paths == ["/redirect"]


async def test_a_slow_answer_times_out(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    answer = await send(session, receiver.url("/slow"), within=0.3)
    assert answer.status is None
    assert answer.verdict == "retry"
    assert answer.error == "timed out after 0.3 s"
    assert 0.3 <= answer.elapsed < 2
    assert receiver.paths == ["/slow"]


async def test_the_timeout_bounds_reading_the_body_too(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    # Headers arrive at once and a byte every 50 ms: per-read timeouts would never fire.
    answer = await send(session, receiver.url("/trickle"), within=0.5)
    assert answer.status is None
    assert answer.error == "timed out after 0.5 s"
    assert 0.5 <= answer.elapsed < 2


async def test_a_closed_port_is_no_answer(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    answer = await send(session, f"http://127.0.0.1:{port}/ok")
    assert answer.status is None
    assert answer.verdict == "retry"
    assert answer.error == "connection refused"
    assert answer.body == b""


async def test_a_large_answer_is_cut_at_64_kib(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    answer = await send(session, receiver.url("/big"))
    assert answer.status == 200
    assert MAX_RESPONSE_BYTES == 65536
    assert len(answer.body) == MAX_RESPONSE_BYTES
    assert answer.body == BIG[:MAX_RESPONSE_BYTES]


async def test_a_bad_url_is_no_answer_rather_than_an_exception(session: aiohttp.ClientSession) -> None:
    for url, reason in (("ftp://example.com/hook", "only http and https"), ("http:///hook", "no host")):
        answer = await send(session, url)
        assert answer.status is None
        assert answer.error is not None and reason in answer.error


# --- The SSRF gate --------------------------------------------------------------------------------


async def test_a_private_literal_address_is_refused_before_sending(
    receiver: Receiver, guarded: aiohttp.ClientSession
) -> None:
    answer = await send(guarded, receiver.url("/ok"), allow_private=False)
    assert answer.status is None
    assert answer.verdict == "retry"
    assert answer.error == "address 127.0.0.1 is loopback"
    assert receiver.hits == []


async def test_a_name_for_a_private_address_is_refused_at_connect_time(
    receiver: Receiver, guarded: aiohttp.ClientSession
) -> None:
    answer = await send(guarded, receiver.url("/ok", host="localhost"), allow_private=False)
    assert answer.status is None
    assert answer.error is not None
    assert answer.error.startswith("localhost resolves to no address that may be called")
    assert "address 127.0.0.1 is loopback" in answer.error
    assert receiver.hits == []


async def test_a_legacy_numeric_form_of_loopback_is_refused(
    receiver: Receiver, guarded: aiohttp.ClientSession
) -> None:
    for host in ("127.1", "2130706433", "0x7f.0.0.1"):
        answer = await send(guarded, receiver.url("/ok", host=host), allow_private=False)
        assert answer.status is None, host
    assert receiver.hits == []


async def test_allow_private_lets_loopback_through(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    by_address = await send(session, receiver.url("/ok"), allow_private=True)
    by_name = await send(session, receiver.url("/ok", host="localhost"), allow_private=True)
    assert (by_address.status, by_name.status) == (200, 200)
    assert receiver.paths == ["/ok", "/ok"]


class FixedResolver(AbstractResolver):
    """A resolver with fixed answers, like a hosts file: a name that resolves to public and private."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_the_guarded_resolver_keeps_only_public_addresses() -> None:
    resolver = GuardedResolver(FixedResolver(["10.0.0.7", "93.184.216.34", "::1", "2606:4700::1111"]))
    kept = await resolver.resolve("hooks.example.com", 443)
    assert [result["host"] for result in kept] == ["93.184.216.34", "2606:4700::1111"]
    assert all(result["port"] == 443 for result in kept)
    only_private = GuardedResolver(FixedResolver(["169.254.169.254", "fd00::1"]))
    with pytest.raises(
        OSError, match=r"metadata\.internal resolves to no address that may be called"
    ) as caught:
        await only_private.resolve("metadata.internal", 80)
    assert "address 169.254.169.254 is link-local" in str(caught.value)
    assert "address fd00::1 is private" in str(caught.value)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("127.0.0.1", "loopback"),
        ("fc00::1", "private"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not publicly routable"),
        ("2002:7f00:1::", "loopback"),
    ],
)
def test_refused_reason_names_what_is_wrong(address: str, reason: str) -> None:
    found = refused_reason(address)
    assert found is not None
    assert found.startswith(f"address {address}")
    assert found.endswith(f"is {reason}")


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111", "8.8.8.8", "1.1.1.1"])
def test_refused_reason_allows_public_addresses(address: str) -> None:
    assert refused_reason(address) is None


def test_refused_reason_refuses_what_is_not_an_address() -> None:
    assert refused_reason("example.com") == "address 'example.com' is not an IP address"


def test_check_url() -> None:
    check_url("https://hooks.example.com/x", allow_private=False)
    check_url("http://93.184.216.34:8080/x", allow_private=False)
    check_url("http://[2606:4700::1111]/x", allow_private=False)
    check_url("http://10.0.0.1/x", allow_private=True)
    refusals = {
        "file:///etc/passwd": "only http and https URLs can be called, not file",
        "gopher://example.com/": "only http and https URLs can be called, not gopher",
        "/relative/path": "only http and https URLs can be called, not no scheme",
        "http:///path": "the URL has no host",
        "http://10.0.0.1/x": "address 10.0.0.1 is private",
        "http://[::ffff:169.254.169.254]/latest/meta-data": "is link-local",
        "http://[fe80::1%25eth0]/": "is link-local",
        "http://127.1/": "write the IPv4 address 127.1 as four decimal numbers",
    }
    for url, message in refusals.items():
        with pytest.raises(EndpointRefused, match=message.replace(".", r"\.")):
            check_url(url, allow_private=False)
    with pytest.raises(EndpointRefused, match="only http and https"):
        check_url("ftp://10.0.0.1/", allow_private=True)


# --- Verdicts and the retry policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "retry"),
        (200, "delivered"),
        (201, "delivered"),
        (204, "delivered"),
        (299, "delivered"),
        (410, "gone"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (599, "retry"),
        (301, "refused"),
        (302, "refused"),
        (304, "refused"),
        (400, "refused"),
        (404, "refused"),
        (409, "refused"),
        (100, "refused"),
        (600, "refused"),
    ],
)
def test_verdict(status: int | None, expected: str) -> None:
    assert verdict(status) == expected


def test_retry_delay_starts_with_chimes_quick_retries() -> None:
    rng = random.Random(42)
    assert retry_delay(1, rng) == 0.2
    assert retry_delay(2, rng) == 0.4
    with pytest.raises(ValueError, match="starts at 1"):
        retry_delay(0, rng)


def test_retry_delay_then_grows_about_threefold_from_five_seconds_with_jitter() -> None:
    rng = random.Random(42)
    delays = [retry_delay(n, rng) for n in range(3, 11)]
    for n, delay in zip(range(3, 11), delays, strict=True):
        nominal = 5 * 3 ** (n - 3)
        assert 0.8 * nominal <= delay <= 1.2 * nominal, (n, delay)
    assert all(later > earlier for earlier, later in itertools.pairwise(delays))
    # Jitter: the same step differs between draws, and a seed reproduces it.
    draws = {retry_delay(5, rng) for _ in range(20)}
    assert len(draws) == 20
    assert [retry_delay(n, random.Random(7)) for n in range(3, 8)] == [
        retry_delay(n, random.Random(7)) for n in range(3, 8)
    ]


def test_retry_delay_is_capped_at_six_hours() -> None:
    rng = random.Random(1)
    assert MAX_DELAY == 6 * 3600
    assert retry_delay(12, rng) == MAX_DELAY  # nominal 5 * 3**9 s, about 27 h
    assert retry_delay(10_000, rng) == MAX_DELAY
    assert retry_delay(1, rng, retry_after=10 * 86400) == MAX_DELAY


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(3)
    assert retry_delay(1, rng, retry_after=30.0) == 30.0
    assert retry_delay(2, rng, retry_after=0.0) == 0.4
    delay = retry_delay(4, rng, retry_after=1.0)
    assert 12 <= delay <= 18  # a shorter Retry-After does not hurry us


def test_a_whole_schedule_spans_the_retry_window_in_a_sensible_number_of_attempts() -> None:
    rng = random.Random(5)
    waited, failures = 0.0, 0
    while waited < RETRY_FOR.total_seconds():
        failures += 1
        waited += retry_delay(failures, rng)
    assert RETRY_FOR.total_seconds() == 3 * 86400
    assert 15 <= failures <= 25


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 0 ", NOW) == 0.0
    assert parse_retry_after("1.5", NOW) == 1.5
    assert parse_retry_after("-5", NOW) == 0.0
    assert parse_retry_after("Thu, 26 Nov 2026 10:02:00 GMT", NOW) == 120.0
    assert parse_retry_after("Thu, 26 Nov 2026 11:02:00 +0100", NOW) == 120.0
    assert parse_retry_after("Thu, 26 Nov 2026 09:00:00 GMT", NOW) == 0.0  # already past
    for garbage in (None, "", "soon", "1e3", "nan", "Thu, 99 Nov 2026 10:02:00 GMT", "12 monkeys"):
        assert parse_retry_after(garbage, NOW) is None, garbage
