"""The usage and billing report: ``GET /api/v1/accounts/{account_id}/usage?month=YYYY-MM``."""

from __future__ import annotations

from aiohttp import web

from chimebot.errors import Invalid
from chimebot.http import SERVICES
from chimebot.http.parsing import admin_only
from chimebot.models import User

routes = web.RouteTableDef()


def _wants_csv(request: web.Request) -> bool:
    """``?format=csv`` (or ``json``) decides; without it, an Accept header that lists text/csv does."""
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in ("csv", "json"):
            raise Invalid("`format` must be json or csv")
        return fmt == "csv"
    accepted = (
        part.split(";", 1)[0].strip().lower() for part in request.headers.get("Accept", "").split(",")
    )
    return "text/csv" in accepted


@routes.get("/api/v1/accounts/{account_id}/usage")
@admin_only
async def usage(request: web.Request, admin: User) -> web.Response:
    """An account's usage and charges for a month (default: the current one), as JSON or CSV."""
    wants_csv = _wants_csv(request)
    report = await request.app[SERVICES].usage.report(admin.account_id, request.query.get("month"))
    if not wants_csv:
        return web.json_response(report.to_json())
    # Both parts are validated (path id characters, YYYY-MM), so they are safe inside the header.
    filename = f"usage-{report.account_id}-{report.month}.csv"
    return web.Response(
        text=report.to_csv(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
