"""``chimebot bot …``: the bots and their status, their deliveries, replaying failed ones, rooms.

Bots are declared in the config file and applied by the server (at start and on SIGHUP); these
commands read and change what is stored, so they work beside a running server.
"""

from __future__ import annotations

import argparse
from typing import Any

from chimebot.cli.accounts import acting_admin
from chimebot.models import BOT_ID_PREFIX
from chimebot.services import Services

AddCommand = Any


def add_commands(sub: Any, command: AddCommand) -> None:
    """Add ``chimebot bot`` and its commands."""
    bot = sub.add_parser("bot", help="chat-room bots").add_subparsers(dest="action", required=True)
    p = command("list", "every bot with its address, status and deliveries by status", bot)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("deliveries", "a bot's deliveries, newest first", bot)
    p.add_argument("name")
    p.add_argument("--status", choices=("pending", "sending", "delivered", "failed"))
    p.add_argument("--limit", type=int, default=50, help="how many (default 50, at most 200)")
    p.add_argument("--before", type=int, metavar="ID", help="only deliveries older than this id")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("replay", "send failed deliveries again (the given ids, or every failed one)", bot)
    p.add_argument("name")
    p.add_argument("ids", nargs="*", type=int, metavar="ID")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("add", "add a bot to a room (by room id or name) of the operator's account", bot)
    p.add_argument("room")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("remove", "remove a bot from a room (by room id or name)", bot)
    p.add_argument("room")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print one JSON document")


async def _operator_account(svc: Services) -> str:
    return (await svc.accounts.operator()).account_id


async def _list(svc: Services, args: argparse.Namespace) -> list[dict[str, Any]]:
    admin = await acting_admin(svc, args)
    return await svc.bots.list(admin, operator_account=await _operator_account(svc))


async def _deliveries(svc: Services, args: argparse.Namespace) -> list[dict[str, Any]]:
    admin = await acting_admin(svc, args)
    page, _ = await svc.bots.deliveries(
        admin,
        args.name,
        operator_account=await _operator_account(svc),
        status=args.status,
        limit=args.limit,
        before=args.before,
    )
    return page


async def _replay(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    admin = await acting_admin(svc, args)
    ids = args.ids or None
    queued = await svc.bots.replay(admin, args.name, ids, operator_account=await _operator_account(svc))
    return {"replayed": queued}


async def _add(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    admin = await acting_admin(svc, args)
    room = await svc.rooms.resolve(admin, args.room)
    return (await svc.rooms.add_member(admin, room.id, svc.bots.address(args.name))).to_json()


async def _remove(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    admin = await acting_admin(svc, args)
    room = await svc.rooms.resolve(admin, args.room)
    await svc.rooms.remove_member(admin, room.id, BOT_ID_PREFIX + args.name)
    return {"removed": args.name, "room": room.id}


COMMANDS = {
    ("bot", "list"): _list,
    ("bot", "deliveries"): _deliveries,
    ("bot", "replay"): _replay,
    ("bot", "add"): _add,
    ("bot", "remove"): _remove,
}
READ_ONLY = {_list, _deliveries}
