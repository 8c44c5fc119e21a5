"""``chimebot calendar …``: the watched calendars' status, a one-off sync, and what will be called."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from calendars.sources import SourceError
from chimebot.scheduler import STATES
from chimebot.services import Services
from chimebot.watch import occurrence_json

AddCommand = Any


@dataclass(frozen=True)
class Outcome:
    """A command's result with an exit status other than 0 (printed like any result)."""

    result: Any
    status: int


def add_commands(sub: Any, command: AddCommand) -> None:
    """Add ``chimebot calendar`` and its commands."""
    cal = sub.add_parser("calendar", help="watched calendars").add_subparsers(dest="action", required=True)
    p = command("status", "each calendar's last sync, last error, objects and occurrences", cal)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command(
        "sync", "sync every calendar once and exit (1 if any failed); the server syncs continuously", cal
    )
    p.add_argument("--once", action="store_true", required=True, help="sync once and exit (required)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = command("occurrences", "the meetings calendars ask to call, by start time", cal)
    p.add_argument("--state", choices=STATES, action="append", help="only this state (repeatable)")
    p.add_argument("--source", metavar="NAME", help="only this calendar ('imip': mailed invitations)")
    p.add_argument("--all", action="store_true", help="include past occurrences (default: from now on)")
    p.add_argument("--json", action="store_true", help="print one JSON document")


async def _status(svc: Services, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [status.to_json() for status in await svc.calendars.status()]


async def _sync(svc: Services, args: argparse.Namespace) -> Outcome:
    results = await svc.calendars.sync_all()
    report: dict[str, Any] = {}
    for name, result in results.items():
        if isinstance(result, SourceError):
            report[name] = {"ok": False, "error": result.reason}
        else:
            report[name] = {
                "ok": True,
                "changed": result.changed,
                "deleted": result.deleted,
                "occurrences": result.occurrences,
                "cancelled": result.cancelled,
                "problems": list(result.problems),
            }
    await svc.calendars.stop()
    failed = any(not entry["ok"] for entry in report.values())
    return Outcome(report, 1 if failed else 0)


async def _occurrences(svc: Services, args: argparse.Namespace) -> list[dict[str, Any]]:
    # "From now on" keeps a meeting that is running (started within the grace) in the list.
    since = None if args.all else svc.clock.now() - timedelta(minutes=svc.config.scheduler.grace_minutes)
    found = await svc.calendars.occurrences(states=args.state, source=args.source, since=since)
    return [occurrence_json(occ) for occ in found]


COMMANDS = {
    ("calendar", "status"): _status,
    ("calendar", "sync"): _sync,
    ("calendar", "occurrences"): _occurrences,
}
READ_ONLY = set(COMMANDS.values())
