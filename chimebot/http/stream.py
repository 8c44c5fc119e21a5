"""The live stream: ``GET /api/v1/stream`` (WebSocket) with resume from ``?since=<event id>``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import weakref
from collections.abc import Iterator

from aiohttp import WSCloseCode, WSMsgType, web

from chimebot.bus import Subscription
from chimebot.errors import Forbidden, Unauthorized
from chimebot.http import SERVICES
from chimebot.http.parsing import bearer_token, current_user, query_int
from chimebot.services import Services
from chimebot.streams import READY, control_frame

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

CLOSE_TOO_SLOW = 4000  # the client fell behind; reconnect with since=<last id received>
CLOSE_SIGNED_OUT = 4001  # the token was revoked or the user suspended; do not reconnect with it
OPEN_STREAMS = web.AppKey("open_streams", weakref.WeakSet[web.WebSocketResponse])


@routes.get("/api/v1/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """Send the caller's room events as JSON text frames, oldest first, each exactly once."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc, allow_query=True)
    since = query_int(request, "since", None)
    cfg = svc.config.stream
    # No permessage-deflate: it would compress every frame once per client, undoing "serialise once";
    # frames are small JSON, and TLS or a proxy in front can compress the connection as a whole.
    ws = web.WebSocketResponse(heartbeat=cfg.heartbeat_seconds, max_msg_size=4096, compress=False)
    await ws.prepare(request)
    request.app[OPEN_STREAMS].add(ws)
    sub, head = await svc.streams.open(user)
    pump: asyncio.Task[None] | None = None
    guard: asyncio.Task[None] | None = None
    try:
        # Without `since` the client starts from now; the backlog then holds only what was committed
        # while the session opened.
        last = head if since is None else since
        async for event_id, frame in svc.streams.backlog(user, sub, last, head):
            await ws.send_str(frame)
            last = event_id
        await ws.send_str(control_frame(READY, last_id=max(last, head)))
        pump = asyncio.create_task(_pump(ws, sub, last, _Cork.of(request)))
        guard = asyncio.create_task(
            _recheck(ws, svc, bearer_token(request, allow_query=True), cfg.heartbeat_seconds)
        )
        async for msg in ws:  # clients have nothing to say yet; reading keeps pings answered
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        svc.streams.close(sub)
        for task in (pump, guard):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return ws


async def _recheck(ws: web.WebSocketResponse, svc: Services, token: str | None, every: float) -> None:
    """Close the stream once its token stops being valid (signed out by an admin, revoked, suspended).

    Checked at the heartbeat interval on whichever node holds the connection, so it also takes effect
    for changes made on another node or by the command line.
    """
    while True:
        await asyncio.sleep(every)
        try:
            await svc.signin.authenticate(token)
        except (Unauthorized, Forbidden) as exc:
            await ws.close(code=CLOSE_SIGNED_OUT, message=exc.message.encode()[:120])
            return
        except Exception as exc:  # the database is away for a moment: keep the stream, check again later
            log.warning("could not recheck a stream's token: %s", type(exc).__name__)


async def _pump(ws: web.WebSocketResponse, sub: Subscription, last: int, cork: _Cork) -> None:
    """Send live frames as they arrive, skipping any the backlog already sent."""
    try:
        while True:
            frames = await sub.take()
            if sub.overflowed:
                await ws.close(code=CLOSE_TOO_SLOW, message=f"too slow; reconnect with since={last}".encode())
                return
            fresh = [(event_id, frame) for event_id, frame in frames if event_id > last]
            with cork.held(len(fresh) > 1):
                for event_id, frame in fresh:
                    await ws.send_str(frame)
                    last = event_id
    except ConnectionResetError:
        return


class _Cork:
    """Holds a client's TCP packets while a run of frames is written, then sends them together.

    Each frame is its own write; corked, the kernel packs a whole batch into full segments. The
    client then wakes once per batch instead of once per frame: with 100 clients in a room this
    doubled the messages per second that reach all of them, and it frees CPU for the server.
    """

    def __init__(self, sock: socket.socket | None) -> None:
        self._sock = sock

    @classmethod
    def of(cls, request: web.Request) -> _Cork:
        """The cork for a request's connection; a no-op where TCP_CORK does not exist (not Linux)."""
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        usable = (
            hasattr(socket, "TCP_CORK")
            and sock is not None
            and sock.family in (socket.AF_INET, socket.AF_INET6)
        )
        return cls(sock if usable else None)

    @contextlib.contextmanager
    def held(self, wanted: bool) -> Iterator[None]:
        """Cork for the duration of the block when ``wanted``."""
        if not wanted or self._sock is None:
            yield
            return
        self._set(1)
        try:
            yield
        finally:
            self._set(0)  # uncorking sends what is held at once

    def _set(self, value: int) -> None:
        assert self._sock is not None
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, value)
        except OSError:  # the connection is gone; the write that follows reports it
            self._sock = None


async def close_streams(app: web.Application) -> None:
    """On shutdown, tell every stream client to come back (to this node or another) and resume."""
    message = b"server shutting down; reconnect with since=<last id received>"
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=message) for ws in list(app[OPEN_STREAMS])),
        return_exceptions=True,
    )
