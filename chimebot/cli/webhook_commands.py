"""``chimebot webhook …``: create, list, show, set (dialect, lock, template, auth), regenerate, delete.

Webhooks declared in the config file are changed there; these commands manage the others, and
show every webhook's status (what its last body was read as, its last error).
"""

from __future__ import annotations

import argparse
from typing import Any

from chimebot.models import WEBHOOK_AUTHS, WEBHOOK_DIALECTS, Webhook
from chimebot.services import Services

AddCommand = Any


def add_commands(sub: Any, command: AddCommand) -> None:
    """Add ``chimebot webhook`` and its commands."""
    hook = sub.add_parser("webhook", help="incoming webhooks").add_subparsers(dest="action", required=True)
    p = command("create", "create a webhook in a room (by id or name)", hook)
    p.add_argument("room")
    p.add_argument("name")
    _setting_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("set", "change a webhook's dialect, lock, template or authentication", hook)
    p.add_argument("id")
    _setting_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("show", "a webhook's settings and status (last dialect, last error)", hook)
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("templates", "the templates a webhook may use", hook)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("regenerate", "give a webhook a new URL and token (the old URL stops working)", hook)
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("delete", "delete a webhook", hook)
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("list", "list a room's webhooks", hook)
    p.add_argument("room")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _setting_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dialect", choices=WEBHOOK_DIALECTS, help="how /hooks/ reads bodies (default auto)")
    lock = p.add_mutually_exclusive_group()
    lock.add_argument(
        "--locked", dest="locked", action="store_true", default=None, help="post only into its room"
    )
    lock.add_argument(
        "--unlocked", dest="locked", action="store_false", help="let a Slack `channel` name another room"
    )
    template = p.add_mutually_exclusive_group()
    template.add_argument("--template", help="a built-in or [[templates]] name (see `webhook templates`)")
    template.add_argument("--no-template", action="store_true", help="stop using a template")
    p.add_argument("--auth", choices=WEBHOOK_AUTHS, help="how senders prove they may post")
    p.add_argument(
        "--signing-secret",
        metavar="SECRET",
        help="the sender's whsec_ secret, or 'generate' (printed once) for auth standard-webhooks",
    )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.dialect:
        settings["dialect"] = args.dialect
    if args.locked is not None:
        settings["locked"] = args.locked
    if args.template:
        settings["template"] = args.template
    if args.no_template:
        settings["template"] = None
    if args.auth:
        settings["auth"] = args.auth
    if args.signing_secret:
        settings["signing_secret"] = args.signing_secret
    return settings


def _shown(svc: Services, hook: Webhook, token: str | None, secret: str | None) -> dict[str, Any]:
    return hook.shown(svc.config.server.base_url, token, secret)


async def _create(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    operator = await svc.accounts.operator()
    room = await svc.rooms.resolve(operator, args.room)
    hook, token, secret = await svc.incoming.create(operator, room.id, args.name, _settings(args))
    return _shown(svc, hook, token, secret)


async def _set(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    hook, secret = await svc.incoming.configure(await svc.accounts.operator(), args.id, _settings(args))
    return _shown(svc, hook, None, secret)


async def _show(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    return _shown(svc, await svc.incoming.get(await svc.accounts.operator(), args.id), None, None)


async def _templates(svc: Services, args: argparse.Namespace) -> list[str]:
    return svc.incoming.receiver.templates.names()


async def _regenerate(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    hook, token = await svc.incoming.regenerate(await svc.accounts.operator(), args.id)
    return _shown(svc, hook, token, None)


async def _delete(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    await svc.incoming.delete(await svc.accounts.operator(), args.id)
    return {"deleted": args.id}


async def _list(svc: Services, args: argparse.Namespace) -> list[dict[str, Any]]:
    operator = await svc.accounts.operator()
    room = await svc.rooms.resolve(operator, args.room)
    return [_shown(svc, h, None, None) for h in await svc.incoming.list(operator, room.id)]


COMMANDS = {
    ("webhook", "create"): _create,
    ("webhook", "set"): _set,
    ("webhook", "show"): _show,
    ("webhook", "templates"): _templates,
    ("webhook", "regenerate"): _regenerate,
    ("webhook", "delete"): _delete,
    ("webhook", "list"): _list,
}
READ_ONLY = {_show, _templates, _list}
