"""The live stream: ``GET /api/v1/stream`` (WebSocket) with resume from ``?since=<event id>``."""

from __future__ import annotations

import asyncio
import contextlib
import weakref

from aiohttp import WSCloseCode, WSMsgType, web

from chimebot.bus import Subscription
from chimebot.http import SERVICES
from chimebot.http.parsing import current_user, query_int
from chimebot.streams import READY, control_frame

routes = web.RouteTableDef()

CLOSE_TOO_SLOW = 4000  # the client fell behind; reconnect with since=<last id received>
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
    try:
        # Without `since` the client starts from now; the backlog then holds only what was committed
        # while the session opened.
        last = head if since is None else since
        async for event_id, frame in svc.streams.backlog(user, sub, last, head):
            await ws.send_str(frame)
            last = event_id
        await ws.send_str(control_frame(READY, last_id=max(last, head)))
        pump = asyncio.create_task(_pump(ws, sub, last))
        async for msg in ws:  # clients have nothing to say yet; reading keeps pings answered
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        svc.streams.close(sub)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    return ws


async def _pump(ws: web.WebSocketResponse, sub: Subscription, last: int) -> None:
    """Send live frames as they arrive, skipping any the backlog already sent."""
    try:
        while True:
            frames = await sub.take()
            if sub.overflowed:
                await ws.close(code=CLOSE_TOO_SLOW, message=f"too slow; reconnect with since={last}".encode())
                return
            for event_id, frame in frames:
                if event_id > last:
                    await ws.send_str(frame)
                    last = event_id
    except ConnectionResetError:
        return


async def close_streams(app: web.Application) -> None:
    """On shutdown, tell every stream client to come back (to this node or another) and resume."""
    message = b"server shutting down; reconnect with since=<last id received>"
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=message) for ws in list(app[OPEN_STREAMS])),
        return_exceptions=True,
    )
