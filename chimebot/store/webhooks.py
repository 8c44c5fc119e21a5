"""Queries for incoming webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.models import Webhook
from chimebot.store.schema import webhook_receipts, webhooks

# The settings a webhook's owner chooses (API, CLI or config file), as columns.
SETTINGS = ("dialect", "locked", "template", "auth", "signing_secret")


def _webhook(row: RowMapping) -> Webhook:
    return Webhook(
        row["id"],
        row["room_id"],
        row["name"],
        row["token_hash"],
        bool(row["from_config"]),
        row["created_at"],
        dialect=row["dialect"],
        locked=bool(row["locked"]),
        template=row["template"],
        auth=row["auth"],
        signing_secret=row["signing_secret"],
        last_dialect=row["last_dialect"],
        last_error=row["last_error"],
        last_error_at=row["last_error_at"],
    )


def settings_of(hook: Webhook) -> dict[str, Any]:
    """A webhook's chosen settings, by column."""
    return {name: getattr(hook, name) for name in SETTINGS}


async def webhook_by_id(conn: AsyncConnection, webhook_id: str) -> Webhook | None:
    """Find a webhook by id."""
    row = (await conn.execute(select(webhooks).where(webhooks.c.id == webhook_id))).mappings().first()
    return _webhook(row) if row else None


async def webhook_by_token_hash(conn: AsyncConnection, token_hash: str) -> Webhook | None:
    """Find the webhook whose token has this hash (``/hooks/{token}``)."""
    stmt = select(webhooks).where(webhooks.c.token_hash == token_hash)
    row = (await conn.execute(stmt)).mappings().first()
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
            **settings_of(hook),
        )
    )


async def replace_webhook(conn: AsyncConnection, old_id: str, hook: Webhook) -> None:
    """Give a webhook a new id and token hash, so its old URL stops working."""
    await conn.execute(
        update(webhooks).where(webhooks.c.id == old_id).values(id=hook.id, token_hash=hook.token_hash)
    )


async def update_declared(conn: AsyncConnection, hook: Webhook) -> None:
    """Re-apply a config file's declaration to an existing webhook."""
    await conn.execute(
        update(webhooks)
        .where(webhooks.c.id == hook.id)
        .values(
            room_id=hook.room_id,
            name=hook.name,
            token_hash=hook.token_hash,
            from_config=True,
            **settings_of(hook),
        )
    )


async def update_settings(conn: AsyncConnection, webhook_id: str, values: dict[str, Any]) -> None:
    """Change some of a webhook's settings (names from ``SETTINGS``)."""
    assert set(values) <= set(SETTINGS), values
    await conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(**values))


async def record_status(conn: AsyncConnection, webhook_id: str, values: dict[str, Any]) -> None:
    """Record what the last body was read as, or the last error and when it happened."""
    assert set(values) <= {"last_dialect", "last_error", "last_error_at"}, values
    await conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(**values))


async def delete_webhook(conn: AsyncConnection, webhook_id: str) -> bool:
    """Delete a webhook; return whether it existed."""
    return (await conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))).rowcount > 0


async def receipt(conn: AsyncConnection, webhook_id: str, key: str) -> RowMapping | None:
    """The answer recorded for an idempotency key (kept until ``prune_receipts`` forgets it)."""
    t = webhook_receipts
    stmt = select(t.c.message_id, t.c.created_at).where(t.c.webhook_id == webhook_id, t.c.key == key)
    return (await conn.execute(stmt)).mappings().first()


async def add_receipt(
    conn: AsyncConnection, webhook_id: str, key: str, message_id: str | None, at: datetime
) -> bool:
    """Record the answer to an idempotency key; False when the key was already recorded."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                webhook_receipts.insert().values(
                    webhook_id=webhook_id, key=key, message_id=message_id, created_at=at
                )
            )
    except IntegrityError:
        return False
    return True


async def prune_receipts(conn: AsyncConnection, before: datetime) -> int:
    """Forget the idempotency keys recorded before ``before``; return how many."""
    stmt = delete(webhook_receipts).where(webhook_receipts.c.created_at < before)
    return (await conn.execute(stmt)).rowcount
