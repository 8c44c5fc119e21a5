"""The usage and billing report: ``GET /api/v1/accounts/{account_id}/usage?month=YYYY-MM``."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
