"""Build the aiohttp application: config → services → routes, with start-up and shut-down."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import weakref
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from chimebot.clock import Clock
from chimebot.config import Config
from chimebot.http import SERVICES, admin, api, audit, bots, calendars, hooks, pages, stream, usage, webhooks
from chimebot.http.audit import audit_middleware
from chimebot.http.errors import error_middleware
from chimebot.services import Services, build_services

RELOADS = web.AppKey("reloads", set)  # SIGHUP reloads in progress

# Webhook bodies have their own, smaller limit; this bounds everything else.
MAX_REQUEST_BYTES = 256 * 1024


class AccessLogger(AbstractAccessLogger):
    """Logs method, path, status and time; never the query string, where webhook tokens travel."""

    @property
    def enabled(self) -> bool:
        """Skip the call altogether when the level drops access lines (aiohttp asks per request)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write one line per request."""
        self.logger.info(
            "%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status, time * 1000
        )


def build_app(config: Config, data_dir: Path, *, clock: Clock | None = None) -> web.Application:
    """Create the application; the database is opened and migrated when it starts."""
    services = build_services(config, data_dir, clock)
    return app_for(services)


def app_for(services: Services) -> web.Application:
    """Create the application around services that are already built."""
    app = web.Application(
        # The audit middleware is outermost, so it records the status the error middleware chose.
        middlewares=[audit_middleware, error_middleware],
        client_max_size=max(MAX_REQUEST_BYTES, services.config.webhooks.max_body_bytes),
    )
    app[SERVICES] = services
    app.add_routes(pages.routes)
    app.add_routes(api.routes)
    app.add_routes(admin.routes)
    app.add_routes(audit.routes)
    app.add_routes(usage.routes)
    app.add_routes(calendars.routes)
    app.add_routes(bots.routes)
    app.add_routes(hooks.routes)
    app.add_routes(webhooks.routes)
    app.add_routes(stream.routes)
    app[stream.OPEN_STREAMS] = weakref.WeakSet()
    app[RELOADS] = set()
    app.on_startup.append(_start)
    app.on_shutdown.append(stream.close_streams)
    app.on_cleanup.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    services = app[SERVICES]
    await services.start()
    link = await services.bootstrap()
    await services.apply_config()
    await services.start_scheduling()
    _reload_on_sighup(app)
    if link:
        # Printed, not logged: the link is a credential and logs are kept and shipped.
        boot = services.config.bootstrap
        print(
            f"chimebot: created the account and the administrator {boot.admin_email}.\n"
            f"Sign in once with this link (valid {boot.signin_link_ttl_minutes} minutes):\n"
            f"  {link}",
            flush=True,
        )


def _reload_on_sighup(app: web.Application) -> None:
    """Re-read the config file on SIGHUP (rooms, webhooks and bots); only a server from a file does."""
    services = app[SERVICES]
    if not os.path.isfile(services.config.source):
        return
    loop = asyncio.get_running_loop()
    reloads = app[RELOADS]  # held, so a reload is not collected mid-way, and cancelled on stop

    def reload() -> None:
        task = loop.create_task(services.reload(), name="chimebot-reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here (Windows, a thread)
        logging.getLogger(__name__).info("SIGHUP reload is not available on this platform")


async def _stop(app: web.Application) -> None:
    reloads = list(app[RELOADS])
    for task in reloads:
        task.cancel()
    await asyncio.gather(*reloads, return_exceptions=True)
    await app[SERVICES].close()
