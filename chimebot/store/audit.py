"""Queries for the append-only audit log: insert and filtered listing, never update or delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.store.schema import audit_log


async def append(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Add one entry."""
    await conn.execute(audit_log.insert().values(**values))


async def entries(
    conn: AsyncConnection,
    account_id: str | None,
    *,
    equal: dict[str, str],
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[RowMapping]:
    """Entries of an account (None: all), newest first, matching the filters."""
    stmt = select(audit_log)
    if account_id is not None:
        stmt = stmt.where(audit_log.c.account_id == account_id)
    for column, value in equal.items():
        stmt = stmt.where(audit_log.c[column] == value)
    if since is not None:
        stmt = stmt.where(audit_log.c.at >= since)
    if until is not None:
        stmt = stmt.where(audit_log.c.at < until)
    if before_id is not None:
        stmt = stmt.where(audit_log.c.id < before_id)
    return list((await conn.execute(stmt.order_by(audit_log.c.id.desc()).limit(limit))).mappings())
