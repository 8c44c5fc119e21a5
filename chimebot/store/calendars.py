"""Queries for watched calendars: each source's sync state and health, and the meeting objects kept."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.store.schema import calendar_objects, calendar_sources

_CHUNK = 500  # keeps `IN (…)` lists far below the engines' bound-parameter limits


@dataclass(frozen=True)
class SourceRow:
    """A calendar source as stored: its sync state and how its last sync went."""

    name: str
    kind: str
    snapshot: dict[str, Any] | None
    last_sync: datetime | None
    last_error: str | None
    objects: int
    requests: int
    problems: tuple[str, ...]
    updated_at: datetime


async def sources(conn: AsyncConnection) -> list[SourceRow]:
    """Every source that has been synchronised at least once, by name."""
    result = await conn.execute(select(calendar_sources).order_by(calendar_sources.c.name))
    return [
        SourceRow(
            name=row["name"],
            kind=row["kind"],
            snapshot=json.loads(row["snapshot"]) if row["snapshot"] else None,
            last_sync=row["last_sync"],
            last_error=row["last_error"],
            objects=row["objects"],
            requests=row["requests"],
            problems=tuple(json.loads(row["problems"])) if row["problems"] else (),
            updated_at=row["updated_at"],
        )
        for row in result.mappings()
    ]


async def save_source(conn: AsyncConnection, row: SourceRow) -> None:
    """Insert or replace a source's row."""
    await conn.execute(delete(calendar_sources).where(calendar_sources.c.name == row.name))
    await conn.execute(
        calendar_sources.insert().values(
            name=row.name,
            kind=row.kind,
            snapshot=json.dumps(row.snapshot) if row.snapshot is not None else None,
            last_sync=row.last_sync,
            last_error=row.last_error,
            objects=row.objects,
            requests=row.requests,
            problems=json.dumps(list(row.problems)) if row.problems else None,
            updated_at=row.updated_at,
        )
    )


async def uids_of(
    conn: AsyncConnection, source: str, hrefs: Iterable[str] | None = None
) -> dict[str, list[str]]:
    """href → UIDs of the kept objects of `source` (only these hrefs, if given)."""
    stmt = select(calendar_objects.c.href, calendar_objects.c.uids).where(calendar_objects.c.source == source)
    if hrefs is None:
        return {href: json.loads(uids) for href, uids in await conn.execute(stmt)}
    wanted = list(dict.fromkeys(hrefs))
    found: dict[str, list[str]] = {}
    for i in range(0, len(wanted), _CHUNK):
        chunk = stmt.where(calendar_objects.c.href.in_(wanted[i : i + _CHUNK]))
        found.update({href: json.loads(uids) for href, uids in await conn.execute(chunk)})
    return found


async def objects_of(conn: AsyncConnection, source: str) -> list[tuple[str, str]]:
    """(href, iCalendar text) of every kept object of `source`."""
    stmt = select(calendar_objects.c.href, calendar_objects.c.data).where(calendar_objects.c.source == source)
    return [(href, data) for href, data in await conn.execute(stmt)]


async def forget(conn: AsyncConnection, source: str, hrefs: Sequence[str]) -> None:
    """Drop kept objects of `source`."""
    for i in range(0, len(hrefs), _CHUNK):
        await conn.execute(
            delete(calendar_objects).where(
                calendar_objects.c.source == source, calendar_objects.c.href.in_(hrefs[i : i + _CHUNK])
            )
        )


async def keep(
    conn: AsyncConnection, source: str, objects: Sequence[tuple[str, Sequence[str], str]], now: datetime
) -> None:
    """Insert or replace kept objects of `source`: (href, UIDs, iCalendar text)."""
    await forget(conn, source, [href for href, _, _ in objects])
    if objects:
        await conn.execute(
            calendar_objects.insert(),
            [
                {
                    "source": source,
                    "href": href,
                    "uids": json.dumps(list(uids)),
                    "data": data,
                    "updated_at": now,
                }
                for href, uids, data in objects
            ],
        )
