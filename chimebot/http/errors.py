"""The one place where failures become HTTP answers: ``{"error": code, "message": text}``."""

from __future__ import annotations

import logging
import math
import sqlite3

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

from chimebot.errors import DomainError, RateLimited

log = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Render an error in the API's shape."""
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """Give aiohttp's own errors (no route, wrong method, body too large…) the API's shape."""
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    if exc.status == 404:
        message = f"there is nothing at {request.method} {request.path}"
    elif exc.status == 405:
        message = f"{request.method} is not allowed here; allowed: {headers.get('Allow', 'none')}"
    elif exc.status == 413:
        message = "the request body is larger than this server accepts"
    else:
        message = exc.reason
    code = exc.reason.lower().replace(" ", "_").replace("-", "_")
    return error_response(exc.status, code, message, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map domain errors, aiohttp errors and storage outages to JSON; never leak a traceback."""
    try:
        return await handler(request)
    except DomainError as exc:
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        return error_response(exc.status, exc.code, exc.message, headers)
    except (RequestPayloadError, BadHttpMessage) as exc:  # a body that does not decode (bad Content-Encoding)
        return error_response(400, "invalid_body", f"the request body could not be read: {exc}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except DataError as exc:  # a value the database would not take; validation should have caught it
        log.warning(
            "database refused a value in %s %s: %s", request.method, request.path, type(exc.orig).__name__
        )
        return error_response(400, "invalid", "a value in this request cannot be stored; nothing was changed")
    except (IntegrityError, sqlite3.IntegrityError):  # lost a race for a unique name or id
        return error_response(409, "conflict", "this conflicts with a change made at the same time; retry")
    except (OperationalError, InterfaceError, sqlite3.Error, ConnectionError) as exc:
        log.warning("storage unavailable for %s %s: %s", request.method, request.path, type(exc).__name__)
        return error_response(
            503, "unavailable", "the database is unavailable; retry shortly", {"Retry-After": "1"}
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "an unexpected error happened; it has been logged")
