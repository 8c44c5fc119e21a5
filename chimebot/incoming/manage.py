"""Managing incoming webhooks: create, change settings, regenerate, delete, apply the config file."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets as random
from dataclasses import replace
from typing import Any

from chimebot import secrets
from chimebot.clock import Clock
from chimebot.config import RoomDecl, WebhookDecl, WebhooksConfig
from chimebot.errors import Conflict, Invalid, NotFound
from chimebot.ids import new_id
from chimebot.incoming.receive import Receiver
from chimebot.models import WEBHOOK_AUTHS, WEBHOOK_DIALECTS, User, Webhook
from chimebot.rooms import Rooms
from chimebot.store import Store
from chimebot.store import rooms as qr
from chimebot.store import webhooks as q
from webhooks import signing

log = logging.getLogger(__name__)

GENERATE = "generate"  # the signing_secret value that asks the server to make one


class IncomingWebhooks:
    """Webhooks of rooms: who may see and change them, and their settings."""

    def __init__(
        self, store: Store, rooms: Rooms, clock: Clock, config: WebhooksConfig, receiver: Receiver
    ) -> None:
        self._store = store
        self._rooms = rooms
        self._clock = clock
        self._config = config
        self.receiver = receiver

    # -- management ------------------------------------------------------------------------------

    async def list(self, actor: User, room_id: str) -> list[Webhook]:
        """List a room's webhooks (room administrators)."""
        await self._rooms.require_admin(actor, room_id)
        async with self._store.read() as conn:
            return await q.webhooks_of(conn, room_id)

    async def get(self, actor: User, webhook_id: str) -> Webhook:
        """One webhook with its settings and status (room administrators)."""
        async with self._store.read() as conn:
            hook = await q.webhook_by_id(conn, webhook_id)
        if hook is None:
            raise NotFound(f"no webhook with id {webhook_id!r}")
        await self._rooms.require_admin(actor, hook.room_id)
        return hook

    async def create(
        self, actor: User, room_id: str, name: Any, settings: dict[str, Any] | None = None
    ) -> tuple[Webhook, str, str | None]:
        """Create a webhook; return it, its token and any generated signing secret (shown only now)."""
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 64:
            raise Invalid("a webhook name must be a string of 1 to 64 characters")
        await self._rooms.require_admin(actor, room_id)
        token = secrets.new_token()
        hook = Webhook(new_id(), room_id, name.strip(), secrets.token_hash(token), False, self._clock.now())
        hook, shown_secret = self._changed(hook, settings or {})
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
        return hook, token, shown_secret

    async def configure(
        self, actor: User, webhook_id: str, settings: dict[str, Any]
    ) -> tuple[Webhook, str | None]:
        """Change a webhook's settings; return it and a signing secret the server generated, if any."""
        old = await self._managed(actor, webhook_id)
        hook, shown_secret = self._changed(old, settings)
        async with self._store.transaction() as conn:
            await q.update_settings(conn, hook.id, q.settings_of(hook))
        self.receiver.forget(hook.id)
        return hook, shown_secret

    def _changed(self, hook: Webhook, settings: dict[str, Any]) -> tuple[Webhook, str | None]:
        """A webhook with the settings of an API body applied, checked; and a generated secret."""
        if not isinstance(settings, dict):
            raise Invalid("the settings must be a JSON object")
        unknown = set(settings) - {"dialect", "locked", "template", "auth", "signing_secret"}
        if unknown:
            raise Invalid(
                f"unknown setting(s) {', '.join(sorted(unknown))}; "
                "the settings are dialect, locked, template, auth, signing_secret"
            )
        values: dict[str, Any] = {}
        if "dialect" in settings:
            if settings["dialect"] not in WEBHOOK_DIALECTS:
                raise Invalid(f"`dialect` must be one of {', '.join(WEBHOOK_DIALECTS)}")
            values["dialect"] = settings["dialect"]
        if "locked" in settings:
            if not isinstance(settings["locked"], bool):
                raise Invalid("`locked` must be true or false")
            values["locked"] = settings["locked"]
        if "template" in settings:
            template = settings["template"]
            if template is not None:
                if not isinstance(template, str):
                    raise Invalid("`template` must be a template name or null")
                self.receiver.templates.check(template)
            values["template"] = template
        if "auth" in settings:
            if settings["auth"] not in WEBHOOK_AUTHS:
                raise Invalid(f"`auth` must be one of {', '.join(WEBHOOK_AUTHS)}")
            values["auth"] = settings["auth"]
        shown: str | None = None
        if "signing_secret" in settings:
            secret = settings["signing_secret"]
            if secret == GENERATE:
                secret = shown = new_signing_secret()
            elif secret is not None:
                check_signing_secret(secret)
            values["signing_secret"] = secret
        hook = replace(hook, **values)
        if hook.auth == "standard-webhooks" and not hook.signing_secret:
            hook = replace(hook, signing_secret=(shown := new_signing_secret()))
        return hook, shown

    async def regenerate(self, actor: User, webhook_id: str) -> tuple[Webhook, str]:
        """Give a webhook a new URL and token; the old URL answers 404 from now on."""
        old = await self._managed(actor, webhook_id)
        token = secrets.new_token()
        hook = replace(
            old, id=new_id(), token_hash=secrets.token_hash(token), last_error=None, last_error_at=None
        )
        async with self._store.transaction() as conn:
            await q.replace_webhook(conn, old.id, hook)
        self.receiver.forget(old.id)
        return hook, token

    async def delete(self, actor: User, webhook_id: str) -> None:
        """Delete a webhook; its URL answers 404 from now on."""
        await self._managed(actor, webhook_id)
        async with self._store.transaction() as conn:
            await q.delete_webhook(conn, webhook_id)
        self.receiver.forget(webhook_id)

    async def _managed(self, actor: User, webhook_id: str) -> Webhook:
        """Return a webhook the actor may change; webhooks declared in the config file are changed there."""
        hook = await self.get(actor, webhook_id)
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
                    base = current or Webhook(
                        hook_id, room.id, decl.name, token_hash, True, self._clock.now()
                    )
                    hook = from_declaration(decl, base, room.id, token_hash)
                    if current is None:
                        await q.insert_webhook(conn, hook)
                        changes.append(f"{where} created")
                    elif hook != current:  # the status fields come from `current`: settings differ
                        await q.update_declared(conn, hook)
                        changes.append(f"{where} updated")
                    kept.add(hook_id)
                    self.receiver.forget(hook_id)
            log.info("room %r: %d declared webhook(s) applied", room.name, len(room_decl.webhooks))
        async with self._store.transaction() as conn:
            for hook in await q.declared_webhooks(conn):
                if hook.id not in kept:
                    await q.delete_webhook(conn, hook.id)
                    self.receiver.forget(hook.id)
                    changes.append(f"webhook {hook.name!r} ({hook.id}) deleted: no longer declared")
                    log.info(
                        "webhook %r (%s) is no longer declared in the config: deleted", hook.name, hook.id
                    )
        return changes


def from_declaration(decl: WebhookDecl, base: Webhook, room_id: str, token_hash: str) -> Webhook:
    """The webhook a config declaration describes, keeping the id and status of ``base``."""
    return replace(
        base,
        room_id=room_id,
        name=decl.name,
        token_hash=token_hash,
        from_config=True,
        dialect=decl.dialect,
        locked=decl.locked,
        template=decl.template,
        auth=decl.auth,
        signing_secret=decl.signing_secret or None,
    )


def new_signing_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 32 random bytes in Base64."""
    return signing.WHSEC_PREFIX + base64.b64encode(random.token_bytes(32)).decode()


def check_signing_secret(secret: Any) -> None:
    """Raise Invalid unless ``secret`` is a ``whsec_`` secret of 24 to 64 bytes in Base64."""
    if not isinstance(secret, str) or not secret.startswith(signing.WHSEC_PREFIX):
        raise Invalid(f"`signing_secret` must be {GENERATE!r} or a secret like whsec_<base64>")
    try:
        key = base64.b64decode(secret.removeprefix(signing.WHSEC_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("`signing_secret` must be whsec_ followed by Base64") from None
    if not 24 <= len(key) <= 64:
        raise Invalid(f"`signing_secret` must hold 24 to 64 bytes; it holds {len(key)}")
