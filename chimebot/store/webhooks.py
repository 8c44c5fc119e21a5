"""Queries for incoming webhooks."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.models import Webhook
from chimebot.store.schema import webhooks


def _webhook(row: RowMapping) -> Webhook:
    return Webhook(
        row["id"], row["room_id"], row["name"], row["token_hash"], bool(row["from_config"]), row["created_at"]
    )


async def webhook_by_id(conn: AsyncConnection, webhook_id: str) -> Webhook | None:
    """Find a webhook by id."""
    row = (await conn.execute(select(webhooks).where(webhooks.c.id == webhook_id))).mappings().first()
    return _webhook(row) if row else None


async def webhooks_of(conn: AsyncConnection, room_id: str) -> list[Webhook]:
    """List a room's webhooks by name."""
    stmt = select(webhooks).where(webhooks.c.room_id == room_id).order_by(webhooks.c.name)
    return [_webhook(r) for r in (await conn.execute(stmt)).mappings()]


async def declared_webhooks(conn: AsyncConnection) -> list[Webhook]:
    """List the webhooks that came from a config file."""
    stmt = select(webhooks).where(webhooks.c.from_config.is_(True))
    return [_webhook(r) for r in (await conn.execute(stmt)).mappings()]


async def count_webhooks(conn: AsyncConnection, room_id: str) -> int:
    """Return how many webhooks a room has."""
    stmt = select(func.count()).select_from(webhooks).where(webhooks.c.room_id == room_id)
    return (await conn.execute(stmt)).scalar_one()


async def insert_webhook(conn: AsyncConnection, hook: Webhook) -> None:
    """Create a webhook."""
    await conn.execute(
        webhooks.insert().values(
            id=hook.id,
            room_id=hook.room_id,
            name=hook.name,
            token_hash=hook.token_hash,
            from_config=hook.from_config,
            created_at=hook.created_at,
        )
    )


async def replace_webhook(conn: AsyncConnection, old_id: str, hook: Webhook) -> None:
    """Give a webhook a new id and token hash, so its old URL stops working."""
    await conn.execute(
        update(webhooks).where(webhooks.c.id == old_id).values(id=hook.id, token_hash=hook.token_hash)
    )


async def update_declared(
    conn: AsyncConnection, webhook_id: str, room_id: str, name: str, token_hash: str
) -> None:
    """Re-apply a config file's declaration to an existing webhook."""
    await conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id)
        .values(room_id=room_id, name=name, token_hash=token_hash, from_config=True)
    )


async def delete_webhook(conn: AsyncConnection, webhook_id: str) -> bool:
    """Delete a webhook; return whether it existed."""
    return (await conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))).rowcount > 0
