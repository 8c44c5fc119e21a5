"""Incoming webhooks: managing them, and turning a Chime-dialect POST into a room message."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chimebot import secrets
from chimebot.clock import Clock
from chimebot.config import RoomDecl, WebhooksConfig
from chimebot.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited, TooLarge
from chimebot.ids import new_id
from chimebot.models import Sender, User, Webhook
from chimebot.ratelimit import RateLimiter
from chimebot.rooms import Rooms
from chimebot.store import Store
from chimebot.store import rooms as qr
from chimebot.store import webhooks as q
from chimebot.store.batches import GuardFailed
from webhooks import chime

log = logging.getLogger(__name__)

GONE = "no webhook at this URL; it may have been regenerated or deleted"

# Cached webhooks answer the hot path without a database round trip; they are safe to keep because
# every message is committed only if its webhook still has the same token (the writer's guard).
CACHE_SIZE = 10_000


class IncomingWebhooks:
    """Webhooks of rooms and the Chime-compatible way of posting through them."""

    def __init__(
        self, store: Store, rooms: Rooms, clock: Clock, config: WebhooksConfig, limiter: RateLimiter
    ) -> None:
        self._store = store
        self._rooms = rooms
        self._clock = clock
        self._config = config
        self._limiter = limiter
        self._cache: dict[str, Webhook] = {}

    # -- posting ---------------------------------------------------------------------------------

    async def post_chime(
        self, webhook_id: str, token: str | None, read_body: Callable[[], Awaitable[bytes]]
    ) -> dict[str, str]:
        """Post a Chime webhook body; return Chime's success body or raise with Chime's status.

        The body is read (``read_body`` enforces the size limit) only once the URL is known to be
        right, so that a wrong URL is a 404 or 403 whatever it carries.
        """
        hook = self._cache.get(webhook_id)
        if hook is None or not (token and secrets.token_matches(token, hook.token_hash)):
            hook = await self._load(webhook_id)  # a miss, or a token changed by another process
        if hook is None:
            raise NotFound(GONE)
        if not token or not secrets.token_matches(token, hook.token_hash):
            raise Forbidden("the token in this webhook URL is wrong", code="invalid_token")
        body = await read_body()
        wait = await self._limiter.take(hook.id)
        if wait:
            # Refusals are rare enough to afford the truth: a webhook gone meanwhile is a 404, not a 429.
            fresh = await self._load(webhook_id)
            if fresh is None or fresh.token_hash != hook.token_hash:
                raise NotFound(GONE)
            raise RateLimited(
                f"this webhook accepts {self._config.rate_per_second:g} request(s) per second; "
                f"retry in {wait:.2f} s",
                retry_after=wait,
            )
        try:
            message = chime.parse_body(body, max_chars=self._config.max_content_chars)
        except chime.ChimeBodyError as exc:
            error = TooLarge if exc.status == 413 else Invalid
            raise error(exc.message, code=exc.code) from None
        try:
            row = await self._rooms.post(
                hook.room_id,
                Sender("webhook", hook.id, f"{hook.name} (Webhook)"),
                message.content,
                message.format,
                broadcast_limit=self._config.mention_all_max_members,
                guard=(hook.id, hook.token_hash),
            )
        except GuardFailed:
            self._cache.pop(hook.id, None)
            raise NotFound(GONE) from None
        return chime.success_body(row["id"], hook.room_id)

    async def _load(self, webhook_id: str) -> Webhook | None:
        """Read a webhook from the database and refresh the cache with it."""
        async with self._store.read() as conn:
            hook = await q.webhook_by_id(conn, webhook_id)
        if hook is None:
            self._cache.pop(webhook_id, None)
        else:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[webhook_id] = hook
        return hook

    # -- management ------------------------------------------------------------------------------

    async def list(self, actor: User, room_id: str) -> list[Webhook]:
        """List a room's webhooks (room administrators)."""
        await self._rooms.require_admin(actor, room_id)
        async with self._store.read() as conn:
            return await q.webhooks_of(conn, room_id)

    async def create(self, actor: User, room_id: str, name: Any) -> tuple[Webhook, str]:
        """Create a webhook in a room; return it and its token, which is shown only now."""
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 64:
            raise Invalid("a webhook name must be a string of 1 to 64 characters")
        await self._rooms.require_admin(actor, room_id)
        token = secrets.new_token()
        hook = Webhook(new_id(), room_id, name.strip(), secrets.token_hash(token), False, self._clock.now())
        async with self._store.transaction() as conn:
            await qr.room_by_id(conn, room_id, lock=True)  # concurrent creations count one at a time
            if await q.count_webhooks(conn, room_id) >= self._config.max_per_room:
                raise Conflict(
                    f"a room can have at most {self._config.max_per_room} webhooks; delete one first",
                    code="webhook_limit",
                )
            if any(h.name.lower() == hook.name.lower() for h in await q.webhooks_of(conn, room_id)):
                raise Conflict(f"this room already has a webhook named {hook.name!r}")
            await q.insert_webhook(conn, hook)
        return hook, token

    async def regenerate(self, actor: User, webhook_id: str) -> tuple[Webhook, str]:
        """Give a webhook a new URL and token; the old URL answers 404 from now on."""
        old = await self._managed(actor, webhook_id)
        token = secrets.new_token()
        hook = Webhook(new_id(), old.room_id, old.name, secrets.token_hash(token), False, old.created_at)
        async with self._store.transaction() as conn:
            await q.replace_webhook(conn, old.id, hook)
        self._cache.pop(old.id, None)
        return hook, token

    async def delete(self, actor: User, webhook_id: str) -> None:
        """Delete a webhook; its URL answers 404 from now on."""
        await self._managed(actor, webhook_id)
        async with self._store.transaction() as conn:
            await q.delete_webhook(conn, webhook_id)
        self._cache.pop(webhook_id, None)

    async def _managed(self, actor: User, webhook_id: str) -> Webhook:
        """Return a webhook the actor may change; webhooks declared in the config file are changed there."""
        async with self._store.read() as conn:
            hook = await q.webhook_by_id(conn, webhook_id)
        if hook is None:
            raise NotFound(f"no webhook with id {webhook_id!r}")
        await self._rooms.require_admin(actor, hook.room_id)
        if hook.from_config:
            raise Conflict(
                "this webhook is declared in the config file; change or remove it there and restart",
                code="declared_in_config",
            )
        return hook

    async def apply_declarations(self, owner: User, declared: tuple[RoomDecl, ...]) -> list[str]:
        """Make the rooms and webhooks the config file declares exist, with their tokens; delete the
        webhooks that an earlier config declared and this one does not (revoking their tokens).
        Return what changed, one line each (nothing when the database already matched)."""
        kept: set[str] = set()
        changes: list[str] = []
        for room_decl in declared:
            room = await self._rooms.ensure(owner, room_decl.name)
            async with self._store.transaction() as conn:
                existing = {h.name.lower(): h for h in await q.webhooks_of(conn, room.id)}
                for decl in room_decl.webhooks:
                    token_hash = secrets.token_hash(decl.token)
                    same_name = existing.get(decl.name.lower())
                    hook_id = decl.id or (same_name.id if same_name else new_id())
                    if same_name and same_name.id != hook_id:
                        await q.delete_webhook(conn, same_name.id)  # the declaration replaces it
                    current = await q.webhook_by_id(conn, hook_id)
                    where = f"webhook {decl.name!r} ({hook_id}) in room {room.name!r}"
                    if current is None:
                        hook = Webhook(hook_id, room.id, decl.name, token_hash, True, self._clock.now())
                        await q.insert_webhook(conn, hook)
                        changes.append(f"{where} created")
                    else:
                        await q.update_declared(conn, hook_id, room.id, decl.name, token_hash)
                        if (current.room_id, current.name, current.token_hash, current.from_config) != (
                            room.id,
                            decl.name,
                            token_hash,
                            True,
                        ):
                            changes.append(f"{where} updated")
                    kept.add(hook_id)
                    self._cache.pop(hook_id, None)
            log.info("room %r: %d declared webhook(s) applied", room.name, len(room_decl.webhooks))
        async with self._store.transaction() as conn:
            for hook in await q.declared_webhooks(conn):
                if hook.id not in kept:
                    await q.delete_webhook(conn, hook.id)
                    self._cache.pop(hook.id, None)
                    changes.append(f"webhook {hook.name!r} ({hook.id}) deleted: no longer declared")
                    log.info(
                        "webhook %r (%s) is no longer declared in the config: deleted", hook.name, hook.id
                    )
        return changes
