"""Sending one signed webhook POST safely, and deciding what to do after it.

``post`` makes one attempt and reports what happened as a ``Response``; it never raises for network
trouble. ``verdict`` sorts the outcome, ``retry_delay`` says how long to wait before the next attempt.
The caller owns the schedule (the outbox): it counts failures and gives up once the first attempt is
``RETRY_FOR`` behind it, or earlier if it chooses.

Outbound URLs are chosen by users, so requests must not reach the host's own networks (SSRF): a
session from ``make_session`` resolves names through a resolver that drops private, loopback,
link-local, multicast, reserved and unspecified addresses. The check happens at connect time, on the
very addresses aiohttp then connects to, so a name that resolves differently the second time (DNS
rebinding) gains nothing. aiohttp never asks the resolver about an IP-literal host, so ``post`` checks
those itself with ``check_url``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import math
import random
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict
from yarl import URL

Verdict = Literal["delivered", "retry", "gone", "refused"]

MAX_RESPONSE_BYTES = 64 * 1024
RETRY_FOR = timedelta(days=3)
MAX_DELAY = 6 * 3600.0
# Chime retries a bot's endpoint after 200 ms, then 400 ms (docs.aws.amazon.com/chime/latest/ag/
# auth-bots.html); a blip is over by then. Later waits grow from 5 s by a factor of 3 (5 s, 15 s, 45 s,
# … 3 h, then the 6 h cap), about 20 attempts over RETRY_FOR.
_QUICK_DELAYS = (0.2, 0.4)
_FIRST_SLOW_DELAY = 5.0
_GROWTH = 3.0
_JITTER = 0.2
_DELTA_SECONDS = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,9})?")


# --- What to do after an attempt ------------------------------------------------------------------


def verdict(status: int | None) -> Verdict:
    """What an answer's status means for the delivery: done, try again later, stop for good, or give up."""
    if status is None:  # no answer at all: timeout, connection error, refused address
        return "retry"
    if 200 <= status <= 299:
        return "delivered"
    if status == 410:  # the receiver asks us to stop sending (Standard Webhooks: disable the endpoint)
        return "gone"
    if status in (408, 429) or 500 <= status <= 599:
        return "retry"
    # Redirects are not followed (the URL should be updated instead) and other 4xx will not get better
    # by asking again.
    return "refused"


def retry_delay(failures: int, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1-based), at least ``retry_after``."""
    if failures < 1:
        raise ValueError("failures counts failed attempts and starts at 1")
    if failures <= len(_QUICK_DELAYS):
        delay = _QUICK_DELAYS[failures - 1]
    else:
        # The exponent stops growing once far past the cap, so a huge count cannot overflow a float.
        steps = min(failures - len(_QUICK_DELAYS) - 1, 30)
        jitter = rng.uniform(1 - _JITTER, 1 + _JITTER)  # spread retries of a shared outage apart
        delay = min(_FIRST_SLOW_DELAY * _GROWTH**steps * jitter, MAX_DELAY)
    if retry_after is not None and math.isfinite(retry_after):
        delay = max(delay, min(retry_after, MAX_DELAY))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date), or None when unreadable."""
    if value is None or not (text := value.strip()):
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return max(0.0, float(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no claim about local time (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


# --- The SSRF gate --------------------------------------------------------------------------------


class EndpointRefused(Exception):
    """A URL the webhook sender will not call; str() says why, for the person who set it."""


class AddressesRefused(OSError):
    """Raised by the guarded resolver when every address of a name is refused."""


def refused_reason(address: str) -> str | None:
    """Why an outbound request must not go to this IP address, or None when it may."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"address {address!r} is not an IP address"
    shown = address
    # An IPv6 address can carry an IPv4 one that the kernel or a relay connects to instead; Python
    # does not apply the IPv4 checks to ::ffff:127.0.0.1, so judge the embedded address.
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            shown = f"{address} (IPv4 {embedded})"
            ip = embedded
    for kind, hit in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),  # before private: Python counts 240.0.0.0/4 as both
        ("private", ip.is_private),
        # What is left and still not global: shared address space (100.64/10, carrier NAT), and the
        # like. They lead into someone's internal network, not to the internet.
        ("not publicly routable", not ip.is_global),
    ):
        if hit:
            return f"address {shown} is {kind}"
    return None


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL that is not http(s), has no host, or names a refused IP address outright."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise EndpointRefused(f"{url!r} is not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise EndpointRefused(f"only http and https URLs can be called, not {parsed.scheme or 'no scheme'}")
    host = parsed.host
    if not host:
        raise EndpointRefused("the URL has no host")
    if allow_private:
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if _legacy_ipv4(host):
            # 127.1, 2130706433, 0x7f.0.0.1: the C library reads them as 127.0.0.1, and some aiohttp
            # versions connect to them without asking the resolver.
            raise EndpointRefused(f"write the IPv4 address {host} as four decimal numbers") from None
        return  # a name: the guarded resolver judges what it resolves to, at connect time
    reason = refused_reason(host)
    if reason is not None:
        raise EndpointRefused(reason)


def _legacy_ipv4(host: str) -> bool:
    """Tell whether the C library would read a host as an IPv4 address in a non-dotted-quad form."""
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return False
    return True


class GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, minus the addresses ``refused_reason`` refuses."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and keep the allowed addresses; raise OSError when none is left."""
        results = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        reasons: dict[str, None] = {}  # ordered and without repeats
        for result in results:
            reason = refused_reason(result["host"])
            if reason is None:
                allowed.append(result)
            else:
                reasons[reason] = None
        if not allowed:
            detail = "; ".join(reasons) or "it has no address"
            raise AddressesRefused(f"{host} resolves to no address that may be called ({detail})")
        return allowed

    async def close(self) -> None:
        """Release the wrapped resolver."""
        await self._inner.close()


class _GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that also closes the guarded resolver (it does not own a resolver it is given)."""

    def __init__(self, resolver: GuardedResolver) -> None:
        super().__init__(resolver=resolver)
        self._guard = resolver

    async def close(self, **kwargs: Any) -> None:
        try:
            await super().close(**kwargs)
        finally:
            await self._guard.close()


def make_session(*, allow_private: bool) -> aiohttp.ClientSession:
    """A client session for webhooks; unless ``allow_private``, it connects to public addresses only.

    Call it inside the running event loop, and close the session when done. It ignores proxy settings
    from the environment, which would otherwise carry requests past the gate.
    """
    connector = aiohttp.TCPConnector() if allow_private else _GuardedConnector(GuardedResolver())
    return aiohttp.ClientSession(connector=connector, trust_env=False)


# --- One attempt ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    """What one attempt got back."""

    status: int | None  # None: no HTTP answer (timeout, connection error, refused address)
    body: bytes  # at most MAX_RESPONSE_BYTES of the answer, for replies and the admin view
    retry_after: float | None  # seconds the receiver asked us to wait, from Retry-After
    error: str | None  # why there was no answer, for people
    elapsed: float  # seconds

    @property
    def verdict(self) -> Verdict:
        """What this outcome means for the delivery."""
        return verdict(self.status)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,  # noqa: ASYNC109 - a per-attempt budget from the outbox, applied inside
    now: datetime,
    allow_private: bool,
) -> Response:
    """POST ``body`` once, within ``timeout`` seconds in all, following no redirect and raising for no outage.

    ``allow_private`` must match the session's (see ``make_session``); it decides about IP-literal
    hosts, which never reach the session's resolver. ``now`` reads a Retry-After given as a date.
    """
    started = time.monotonic()

    def failed(error: str) -> Response:
        return Response(None, b"", None, error, time.monotonic() - started)

    sent_headers = CIMultiDict(headers)
    sent_headers.setdefault("Content-Type", "application/json")
    try:
        check_url(url, allow_private=allow_private)
        # One deadline over connecting, sending and reading, whatever the session's ClientTimeout: its
        # sock_read restarts with every chunk, so a receiver trickling bytes would never trip it.
        async with (
            asyncio.timeout(timeout),
            session.post(url, data=body, headers=sent_headers, allow_redirects=False) as answer,
        ):
            received = await _read_at_most(answer.content, MAX_RESPONSE_BYTES)
            status = answer.status
            retry_after = parse_retry_after(answer.headers.get("Retry-After"), now)
    except TimeoutError:  # also aiohttp's ServerTimeoutError, a subclass
        return failed(f"timed out after {_seconds(timeout)} s")
    except EndpointRefused as exc:
        return failed(str(exc))
    except aiohttp.ClientError as exc:
        return failed(_describe(exc))
    except OSError as exc:
        return failed(_describe_os_error(exc))
    return Response(status, received, retry_after, None, time.monotonic() - started)


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to ``limit`` bytes of a body; the rest is left unread."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = await stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _seconds(value: float) -> str:
    """A duration as people write it: 2.0, 0.5, 0.25."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def _describe(exc: aiohttp.ClientError) -> str:
    """A short reason for an aiohttp failure, for the admin view."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _describe_os_error(exc.os_error, host=exc.host)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _describe_os_error(exc: OSError, host: str | None = None) -> str:
    """A short reason for a failure to connect."""
    if isinstance(exc, AddressesRefused):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host}" if host else "cannot resolve the host"
    return exc.strerror or str(exc) or type(exc).__name__
