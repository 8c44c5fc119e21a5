"""The HTTP surface: routes only; each parses a request, calls one service, renders the result."""

from aiohttp import web

from chimebot.services import Services

SERVICES = web.AppKey("services", Services)
