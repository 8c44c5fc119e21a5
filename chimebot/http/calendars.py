"""Watched calendars under ``/api/v1/calendars``: their status and the occurrences they ask to call.

Calendars are configured for the whole server, so their status is shown to any administrator; the
occurrences are filtered to the caller's account (organizers who are its users) except for
administrators of the operator's account, who run the server and see everything, including
invitations from organizers chimebot does not know.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from chimebot.errors import Invalid
from chimebot.http import SERVICES
from chimebot.http.parsing import admin_only
from chimebot.models import User
from chimebot.scheduler import STATES
from chimebot.watch import occurrence_json

routes = web.RouteTableDef()


@routes.get("/api/v1/calendars")
@admin_only
async def calendar_status(request: web.Request, admin: User) -> web.Response:
    """Each watched calendar's last sync, last error, objects, problems and occurrences by state."""
    statuses = await request.app[SERVICES].calendars.status()
    return web.json_response({"calendars": [status.to_json() for status in statuses]})


@routes.get("/api/v1/calendars/occurrences")
@admin_only
async def calendar_occurrences(request: web.Request, admin: User) -> web.Response:
    """What the calendars ask to call, by start time: ?state=…(repeatable), ?source=NAME, ?all=true."""
    svc = request.app[SERVICES]
    states = request.query.getall("state", [])
    if unknown := sorted(set(states) - set(STATES)):
        raise Invalid(f"unknown state(s) {', '.join(unknown)}; use {', '.join(STATES)}")
    past = request.query.get("all", "false")
    if past not in ("true", "false"):
        raise Invalid("`all` must be true or false")
    since = (
        None if past == "true" else svc.clock.now() - timedelta(minutes=svc.config.scheduler.grace_minutes)
    )
    found = await svc.calendars.occurrences(
        states=states or None, source=request.query.get("source") or None, since=since
    )
    operator = await svc.accounts.operator()
    if admin.account_id != operator.account_id:
        ours = await svc.calendars.users_of_account(
            admin.account_id, {o.organizer for o in found if o.organizer}
        )
        found = [occ for occ in found if occ.organizer in ours]
    return web.json_response({"occurrences": [occurrence_json(occ) for occ in found]})
