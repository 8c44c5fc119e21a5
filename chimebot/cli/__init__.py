"""The ``chimebot`` command: serve, migrate, check-config, tokens, rooms, webhooks and ``admin`` actions
(account administration lives in ``chimebot.cli.accounts``, calendars in ``cli.calendar_commands``,
bots in ``cli.bot_commands``, webhooks in ``cli.webhook_commands``)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import getpass
import json
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from chimebot import __version__
from chimebot.audit import Entry
from chimebot.cli import accounts, bot_commands, calendar_commands, webhook_commands
from chimebot.cli.accounts import Command
from chimebot.config import Config, ConfigError, load_config
from chimebot.errors import DomainError
from chimebot.logs import configure_logging
from chimebot.models import User
from chimebot.services import Services, build_services
from chimebot.texts import load_texts


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the subcommand; SUPPRESS keeps a subcommand from erasing the top value.
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default, help="TOML config file (default: none)")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default="chimebot-data" if top else argparse.SUPPRESS,
        help="where the embedded database lives (default: ./chimebot-data)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chimebot", description="Self-hosted chat rooms and Chime webhooks."
    )
    parser.add_argument("--version", action="version", version=f"chimebot {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, parent: Any = sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        _common(p, top=False)
        return p

    serve = command("serve", "run the server")
    serve.add_argument("--host", help="address to listen on (overrides [server] host; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides [server] port; default 8080)")
    command("migrate", "apply database migrations and exit")
    check = command(
        "check-config", "validate a config file; exit 0 if it is valid, 1 with the problems if not"
    )
    check.add_argument("file", metavar="FILE")

    token = sub.add_parser("token", help="personal API tokens").add_subparsers(dest="action", required=True)
    p = command("create", "create a personal API token for a user", token)
    p.add_argument("email")
    p.add_argument("--name", default="cli", help="a name to recognise the token by")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    admin = sub.add_parser("admin", help="administration").add_subparsers(dest="action", required=True)
    p = command("create-room", "create a room", admin)
    p.add_argument("name")
    p.add_argument("--owner", metavar="EMAIL", help="room administrator (default: the bootstrap admin)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("signin-link", "make a new one-time sign-in link for a user", admin)
    p.add_argument("email")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    accounts.add_commands(admin, command)
    calendar_commands.add_commands(sub, command)
    bot_commands.add_commands(sub, command)

    webhook_commands.add_commands(sub, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file)
    try:
        config = load_config(args.config)
        load_texts(config)  # every command builds the services, which need the meeting templates
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    configure_logging(config.logging.level)
    if args.command == "serve":
        return _serve(config, args)
    handler = _COMMANDS[(args.command, getattr(args, "action", None))]
    try:
        result = asyncio.run(_run(config, Path(args.data_dir), handler, args))
    except DomainError as exc:
        print(f"chimebot: {exc.message}", file=sys.stderr)
        return 1
    except IntegrityError:
        print("chimebot: this conflicts with a change made at the same time; retry", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as exc:
        print(f"chimebot: cannot open the database: {_storage_hint(config)}{exc}", file=sys.stderr)
        return 1
    status = 0
    if isinstance(result, calendar_commands.Outcome):
        result, status = result.result, result.status
    if isinstance(result, str):
        print(result, end="")
    elif result is not None:
        if getattr(args, "json", False):
            print(json.dumps(result))
        else:
            _print_human(result)
    return status


def _check_config(path: str) -> int:
    try:
        load_texts(load_config(path))  # the template files it names are part of the config
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{path}: ok")
    return 0


def _serve(config: Config, args: argparse.Namespace) -> int:
    from aiohttp import web

    from chimebot.app import AccessLogger, build_app

    server = config.server
    server = replace(server, host=args.host or server.host, port=args.port or server.port)
    config = replace(config, server=server)
    app = build_app(config, Path(args.data_dir))
    app.on_startup.append(_freeze_heap)
    try:
        web.run_app(
            app,
            host=server.host,
            port=server.port,
            access_log_class=AccessLogger,
            print=lambda _: print(f"chimebot {__version__} listening on {server.base_url}", flush=True),
            loop=_new_loop(),
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"chimebot: {server.host}:{server.port} is in use; pick another with --port", file=sys.stderr
            )
        else:
            print(f"chimebot: cannot start: {_storage_hint(config)}{exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(
            f"chimebot: cannot open the database: {_storage_hint(config)}{exc.orig or exc}", file=sys.stderr
        )
        return 1
    return 0


def _storage_hint(config: Config) -> str:
    """Name the setting to look at when the database cannot be reached."""
    return "check [database] url; " if config.database.url else "check that the data directory is writable; "


async def _freeze_heap(app: object) -> None:
    """Exempt everything alive after start-up from garbage collection, and collect less often.

    Modules, SQLAlchemy's tables and caches live as long as the process; frozen, the collector
    stops rescanning them, which took full collections under load from ~60 ms to a few. A request
    allocates a few hundred objects that die with it: at the default threshold (700) the youngest
    generation was collected every few requests; at 20,000 the webhook endpoint serves 4-15% more.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def _new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed (about 1.45 times the requests/s here), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _run(config: Config, data_dir: Path, handler: Command, args: argparse.Namespace) -> Any:
    services = build_services(config, data_dir)
    await services.start()
    try:
        link = await services.bootstrap()
        if link:
            print(f"chimebot: created the administrator; sign in once with: {link}", file=sys.stderr)
        if handler in _READ_ONLY:
            return await handler(services, args)
        return await _audited(services, handler, args)
    finally:
        await services.close()


async def _audited(svc: Services, handler: Command, args: argparse.Namespace) -> Any:
    """Run a command that changes something and record it, with its outcome, in the audit log."""
    action = f"{args.command}.{args.action}" if getattr(args, "action", None) else args.command
    target = " ".join(
        str(v) for k in ("email", "emails", "name", "room", "id", "domain") if (v := getattr(args, k, None))
    )
    where = f"{getpass.getuser()}@{socket.gethostname()}"
    actor: User | None = None
    outcome, detail = "failed", None
    try:
        actor = await accounts.acting_admin(svc, args)
        result = await handler(svc, args)
        outcome = "ok"
        return result
    except DomainError as exc:
        outcome, detail = "refused", f"{exc.code}: {exc.message}"
        raise
    finally:
        fields: dict[str, Any] = {"source": "cli", "action": action, "outcome": outcome}
        fields |= {"target": target or None, "address": where, "detail": detail}
        await svc.audit.record(Entry.by(actor, **fields) if actor else Entry(actor="cli", **fields))


def _print_human(result: Any) -> None:
    if isinstance(result, dict):
        for key, value in result.items():
            print(f"{key}: {value}")
    elif isinstance(result, list):
        for item in result:
            print("  ".join(f"{k}={v}" for k, v in item.items()))


async def _token_create(svc: Services, args: argparse.Namespace) -> dict[str, str]:
    return {"token": await svc.signin.create_token(await svc.accounts.user(args.email), args.name)}


async def _create_room(svc: Services, args: argparse.Namespace) -> dict[str, str]:
    owner = await (svc.accounts.user(args.owner) if args.owner else svc.accounts.operator())
    room = await svc.rooms.create(owner, args.name)
    return {"id": room.id, "name": room.name}


async def _signin_link(svc: Services, args: argparse.Namespace) -> dict[str, str]:
    return {"url": await svc.signin.signin_link(await svc.accounts.user(args.email))}


async def _migrate(svc: Services, args: argparse.Namespace) -> None:
    print("chimebot: the database is up to date", file=sys.stderr)


_COMMANDS: dict[tuple[str, str | None], Command] = (
    accounts.COMMANDS
    | calendar_commands.COMMANDS
    | bot_commands.COMMANDS
    | webhook_commands.COMMANDS
    | {
        ("migrate", None): _migrate,
        ("token", "create"): _token_create,
        ("admin", "create-room"): _create_room,
        ("admin", "signin-link"): _signin_link,
    }
)

# Commands that change nothing, so they are not written to the audit log.
_READ_ONLY = {
    _migrate,
    *webhook_commands.READ_ONLY,
    *accounts.READ_ONLY,
    *calendar_commands.READ_ONLY,
    *bot_commands.READ_ONLY,
}
