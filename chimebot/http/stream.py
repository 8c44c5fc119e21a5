"""The live stream: ``GET /api/v1/stream`` (WebSocket) with resume from ``?since=<event id>``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import WSMsgType, web

from chimebot.bus import Envelope, Subscription
from chimebot.http import SERVICES
from chimebot.http.parsing import current_user, query_int
from chimebot.models import User
from chimebot.services import Services
from chimebot.store import messages as qm

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CLOSE_TOO_SLOW = 4000  # the client fell behind; reconnect with since=<last id received>
REPLAY_PAGE = 500


def _control(kind: str, **fields: object) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


@routes.get("/api/v1/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """Send the caller's room events as JSON text frames, oldest first, each exactly once."""
    svc = request.app[SERVICES]
    user = await current_user(request, svc, allow_query=True)
    since = query_int(request, "since", None)
    cfg = svc.config.stream
    ws = web.WebSocketResponse(heartbeat=cfg.heartbeat_seconds, max_msg_size=4096)
    await ws.prepare(request)
    # Subscribe before reading the log: an event committed meanwhile is in one or both, never neither;
    # ids already sent are skipped, so it is not sent twice.
    sub = svc.bus.subscribe(user.id, await svc.rooms.room_ids_of(user), cfg.queue_size)
    pump: asyncio.Task[None] | None = None
    try:
        if since is None:  # live from now: everything buffered since subscribing is new to the client
            async with svc.store.read() as conn:
                await ws.send_str(_control("stream.ready", last_id=await qm.last_event_id(conn)))
            last = 0
        else:
            last = await _catch_up(ws, svc, user, sub, since)
            await ws.send_str(_control("stream.ready", last_id=last))
        pump = asyncio.create_task(_pump(ws, sub, last))
        async for msg in ws:  # clients have nothing to say yet; reading keeps pings answered
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        svc.bus.unsubscribe(sub)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    return ws


async def _catch_up(
    ws: web.WebSocketResponse, svc: Services, user: User, sub: Subscription, since: int
) -> int:
    """Send logged events after ``since``; return the id of the last event the client has."""
    async with svc.store.read() as conn:
        head = await qm.last_event_id(conn)
    if since >= head:
        return since
    limit = svc.config.stream.replay_limit
    if head - since > limit:  # ids are global, so this over-counts; a precise count is not worth a scan
        async with svc.store.read() as conn:
            pending = await qm.events_since(conn, since, sub.room_ids, user.id, limit=limit + 1)
        if len(pending) > limit:
            await ws.send_str(
                _control(
                    "stream.reset",
                    last_id=head,
                    message=f"more than {limit} events were missed; reload history through the REST API",
                )
            )
            return head
    last = since
    while True:
        async with svc.store.read() as conn:
            rows = await qm.events_since(conn, last, sub.room_ids, user.id, limit=REPLAY_PAGE)
        for row in rows:
            env = Envelope.from_row(row)
            if env is not None:
                await ws.send_str(env.frame)
        if len(rows) < REPLAY_PAGE:
            return max(last, rows[-1]["event_id"] if rows else last, head)
        last = rows[-1]["event_id"]


async def _pump(ws: web.WebSocketResponse, sub: Subscription, last: int) -> None:
    """Send live frames as they arrive, skipping any the catch-up already sent."""
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
