"""Receiving incoming webhooks: find the webhook, check who sent it, read the body, post the message.

Three URLs lead here. ``/incomingwebhooks/{id}`` speaks Chime; ``/hooks/{token}`` takes Slack,
Mattermost, Teams, Discord and Chime bodies by their shape, or any JSON through the webhook's
template; ``/api/webhooks/{id}/{token}`` speaks Discord. The answers' wire shapes are the routes'
business; this module says what happened (an ``Outcome``) or why not (``Refused``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot import secrets
from chimebot.background import cancel_and_wait
from chimebot.bus import WEBHOOK_FAILED, notice_room
from chimebot.clock import Clock
from chimebot.config import WebhooksConfig
from chimebot.errors import DomainError, Forbidden, Invalid, NotFound, RateLimited, TooLarge, Unprocessable
from chimebot.incoming.templates import Templates
from chimebot.models import Sender, Webhook
from chimebot.ratelimit import RateLimiter
from chimebot.rooms import Rooms
from chimebot.store import Store
from chimebot.store import messages as qm
from chimebot.store import rooms as qr
from chimebot.store import webhooks as q
from chimebot.store.batches import GuardFailed, Repeated
from chimebot.store.log import EventDraft
from webhooks import bodies, chime, dialects, signing
from webhooks.message import DialectError, Rendered, storable
from webhooks.transforms import TemplateError

log = logging.getLogger(__name__)

GONE = "no webhook at this URL; it may have been regenerated or deleted"
TEMPLATE = "template"  # the `dialect` of an outcome whose message a template wrote
# Cached webhooks answer the hot path without a database round trip; they are safe to keep because
# every message is committed only if its webhook still has the same token (the writer's guard).
CACHE_SIZE = 10_000
ERROR_REPEAT_SECONDS = 60.0  # the same error is recorded (and told to admins) at most once a minute
PRUNE_SECONDS = 600.0
MAX_KEY = 255  # characters of an Idempotency-Key or webhook-id


@dataclass(frozen=True, slots=True)
class Arrival:
    """A request to a webhook URL, as much of it as receiving needs."""

    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    query: Mapping[str, str]
    bearer: str | None  # the token of an `Authorization: Bearer` header
    read_body: Callable[[], Awaitable[bytes]]  # enforces the body size limit


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a request did: the message it posted (None when its template dropped it)."""

    hook: Webhook
    dialect: str  # chime, slack, teams, discord or template
    room_id: str
    message: Mapping[str, Any] | None
    repeat: bool = False  # an idempotency key seen before: this is the first request's message


class Refused(Exception):
    """A request refused with a domain error, and the dialect it was read as (None: not read yet)."""

    def __init__(self, error: DomainError, dialect: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.dialect = dialect


class Receiver:
    """The receiving side of incoming webhooks, with a cache of the webhooks recently used."""

    def __init__(
        self,
        store: Store,
        rooms: Rooms,
        clock: Clock,
        config: WebhooksConfig,
        limiter: RateLimiter,
        templates: Templates,
    ) -> None:
        self._store = store
        self._rooms = rooms
        self._clock = clock
        self._config = config
        self._limiter = limiter
        self.templates = templates
        self._by_id: dict[str, Webhook] = {}
        self._by_token: dict[str, Webhook] = {}
        self._errors: dict[str, tuple[str, float]] = {}  # webhook id -> last error recorded, when
        self._pruner: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start forgetting idempotency keys older than ``receipt_hours``, every few minutes."""
        if self._pruner is None:
            self._pruner = asyncio.get_running_loop().create_task(self._prune(), name="chimebot-receipts")

    async def stop(self) -> None:
        """Stop the pruning task."""
        await cancel_and_wait(self._pruner)
        self._pruner = None

    async def prune(self) -> int:
        """Forget the idempotency keys older than ``receipt_hours``; return how many."""
        before = self._clock.now() - timedelta(hours=self._config.receipt_hours)
        async with self._store.transaction() as conn:
            count = await q.prune_receipts(conn, before)
        if count:
            log.info("forgot %d idempotency key(s) older than %g h", count, self._config.receipt_hours)
        return count

    async def _prune(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception as exc:  # the database may be away for a while; try again next round
                log.warning("could not forget old idempotency keys: %s", exc)
            await asyncio.sleep(PRUNE_SECONDS)

    # -- the three URLs --------------------------------------------------------------------------

    async def post_chime(self, webhook_id: str, url_token: str | None, arrival: Arrival) -> Outcome:
        """Amazon Chime's URL: the id in the path, the token in the query (or a Bearer header)."""
        hook = await self._by_id_checked(webhook_id, url_token, arrival)
        body = await arrival.read_body()
        key = await self._signed(hook, arrival.headers, body)
        await self._take(hook)
        try:
            message = chime.parse_body(body, max_chars=self._config.max_content_chars)
        except chime.ChimeBodyError as exc:
            raise _domain(exc) from None
        if repeat := await self._repeat(hook, key, "chime"):
            return repeat
        return await self._post(hook, Rendered(message.content, format=message.format), "chime", key)

    async def post_hook(self, path_key: str, arrival: Arrival) -> Outcome:
        """``/hooks/{token}`` (or ``/hooks/{id}`` with a Bearer token or a signature): any dialect."""
        try:
            hook = await self._by_path(path_key, arrival)
        except DomainError as exc:
            raise Refused(exc, None) from None
        # Until the body is read, refusals take the dialect the webhook is set to (Slack's if auto).
        dialect: str | None = TEMPLATE if hook.template else None if hook.dialect == "auto" else hook.dialect
        try:
            body = await arrival.read_body()
            key = await self._signed(hook, arrival.headers, body)
            await self._take(hook)
            data, left_out = bodies.decode(body, arrival.headers.get("Content-Type", ""))
            if dialect is None:  # auto: by the body's shape
                dialect = dialects.detect(data)
                if dialect is None:
                    raise DialectError(
                        400,
                        "invalid_payload",
                        "the body is not shaped like a Slack, Mattermost, Teams, Discord or Chime "
                        'webhook body; send {"text": "…"}, or have an administrator give this '
                        "webhook a template",
                    )
            if repeat := await self._repeat(hook, key, dialect):
                return repeat
            if hook.template:
                rendered = await self._transform(hook, data, arrival)
                if rendered is None:
                    return await self._dropped(hook, key)
            else:
                rendered = dialects.render(dialect, data, max_chars=self._config.max_content_chars)  # type: ignore[arg-type]
            return await self._post(hook, _with_dropped(rendered, left_out), dialect, key)
        except DialectError as exc:
            await self._failed(hook, f"{exc.code}: {exc.message}", notify=False)
            raise Refused(_domain(exc), dialect) from None
        except DomainError as exc:
            raise Refused(exc, dialect) from None

    async def post_discord(self, webhook_id: str, url_token: str, arrival: Arrival) -> Outcome:
        """Discord's URL shape, ``/api/webhooks/{id}/{token}``: Discord bodies only."""
        try:
            hook = await self._by_id_checked(webhook_id, url_token, arrival)
            body = await arrival.read_body()
            key = await self._signed(hook, arrival.headers, body)
            await self._take(hook)
            data, left_out = bodies.decode(body, arrival.headers.get("Content-Type", ""))
            if repeat := await self._repeat(hook, key, "discord"):
                return repeat
            rendered = dialects.render("discord", data, max_chars=self._config.max_content_chars)
            rendered = _with_dropped(replace(rendered, channel=None), left_out)  # Discord has no `channel`
            return await self._post(hook, rendered, "discord", key)
        except DialectError as exc:
            raise Refused(_domain(exc), "discord") from None
        except DomainError as exc:
            raise Refused(exc, "discord") from None

    # -- finding the webhook and checking the sender ---------------------------------------------

    async def _by_id_checked(self, webhook_id: str, url_token: str | None, arrival: Arrival) -> Webhook:
        """The webhook with this id, if the request carries its token as the webhook's `auth` wants."""
        hook = self._by_id.get(webhook_id)
        presented = url_token or arrival.bearer
        if hook is None or not (presented and secrets.token_matches(presented, hook.token_hash)):
            hook = await self._load(webhook_id)  # a miss, or a token changed by another process
        if hook is None:
            raise NotFound(GONE)
        self._authenticate(hook, url_token, arrival.bearer)
        return hook

    async def _by_path(self, path_key: str, arrival: Arrival) -> Webhook:
        """The webhook a ``/hooks/{key}`` URL names: by its token, else by its id."""
        token_hash = secrets.token_hash(path_key)
        hook = self._by_token.get(token_hash)
        if hook is None:
            async with self._store.read() as conn:
                hook = await q.webhook_by_token_hash(conn, token_hash)
            if hook is not None:
                self._remember(hook)
        if hook is not None:
            self._authenticate(hook, path_key, arrival.bearer)
            return hook
        return await self._by_id_checked(path_key, None, arrival)

    def _authenticate(self, hook: Webhook, url_token: str | None, bearer: str | None) -> None:
        """Check the credentials a webhook's `auth` asks for (the signature is checked with the body)."""
        if hook.auth == "standard-webhooks":
            return
        if hook.auth == "bearer":
            if url_token and secrets.token_matches(url_token, hook.token_hash):
                raise Forbidden(
                    "this webhook takes its token only in an 'Authorization: Bearer' header, "
                    "never in the URL; send it there and regenerate the token, which this URL exposed",
                    code="invalid_token",
                )
            url_token = None
        presented = url_token or bearer
        if not presented:
            raise Forbidden(
                "this webhook needs its token, in the URL or an 'Authorization: Bearer' header",
                code="invalid_token",
            )
        if not secrets.token_matches(presented, hook.token_hash):
            raise Forbidden("the token for this webhook is wrong", code="invalid_token")

    async def _signed(self, hook: Webhook, headers: Mapping[str, str], body: bytes) -> str | None:
        """The request's idempotency key, after checking its signature where the webhook wants one."""
        key = headers.get("Idempotency-Key") or headers.get(signing.WEBHOOK_ID)
        if hook.auth == "standard-webhooks":
            if not hook.signing_secret:
                raise Forbidden("this webhook has no signing secret yet; an administrator must set one")
            tolerance = timedelta(seconds=self._config.signature_tolerance_seconds)
            try:
                key = signing.verify_standard(
                    hook.signing_secret, headers, body, self._clock.now(), tolerance
                )
            except signing.SignatureError as exc:
                raise Forbidden(
                    f"the Standard Webhooks signature is not valid: {exc}", code="invalid_signature"
                ) from None
        if key is not None and not 1 <= len(key) <= MAX_KEY:
            raise Invalid(f"an Idempotency-Key or webhook-id must have 1 to {MAX_KEY} characters")
        return key

    async def _take(self, hook: Webhook) -> None:
        """Take the webhook's rate limit; a webhook gone meanwhile is a 404, not a 429."""
        wait = await self._limiter.take(hook.id)
        if wait:
            fresh = await self._load(hook.id)  # refusals are rare enough to afford the truth
            if fresh is None or fresh.token_hash != hook.token_hash:
                raise NotFound(GONE)
            raise RateLimited(
                f"this webhook accepts {self._config.rate_per_second:g} request(s) per second; "
                f"retry in {wait:.2f} s",
                retry_after=wait,
            )

    # -- posting ---------------------------------------------------------------------------------

    async def _transform(self, hook: Webhook, data: Any, arrival: Arrival) -> Rendered | None:
        """Run the webhook's template on a body in a worker thread (its time limit bounds the wait)."""
        assert hook.template is not None
        try:
            template = self.templates.get(hook.template)
            text = await asyncio.to_thread(template.render, data, arrival.headers, arrival.query)
        except TemplateError as exc:
            await self._failed(hook, f"template {hook.template!r}: {exc}", notify=True)
            raise Unprocessable(
                "this webhook's template failed on the body; the room's administrators were told why "
                "and can see it in the webhook's last_error",
                code="template_failed",
            ) from None
        if text is None:
            return None
        if not storable(text):  # a payload's NUL or lone surrogate, copied by the template
            text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
        return Rendered(text)

    async def _post(self, hook: Webhook, rendered: Rendered, dialect: str, key: str | None) -> Outcome:
        """Post a rendered message as the webhook, into its room or the `channel` it may choose."""
        room_id = await self._room_for(hook, rendered.channel)
        name = f"{rendered.username or hook.name} (Webhook)"
        try:
            row = await self._rooms.post(
                room_id,
                Sender("webhook", hook.id, name),
                rendered.text(),
                rendered.format,
                broadcast_limit=self._config.mention_all_max_members,
                guard=(hook.id, hook.token_hash),
                receipt=(hook.id, key) if key else None,
            )
        except GuardFailed:
            self.forget(hook.id)
            raise NotFound(GONE) from None
        except Repeated as exc:
            return await self._first(hook, exc.message_id, dialect)
        if hook.last_dialect != dialect:
            await self._record(hook, {"last_dialect": dialect})
        return Outcome(hook, dialect, room_id, row)

    async def _room_for(self, hook: Webhook, channel: str | None) -> str:
        """The webhook's room, or for an unlocked webhook the room of its account a body names."""
        if channel is None or hook.locked:
            return hook.room_id
        name = channel.removeprefix("#")
        async with self._store.read() as conn:
            own = await qr.room_by_id(conn, hook.room_id)
            if own is None:
                raise NotFound(GONE)
            room = await qr.room_by_id(conn, name)
            if room is None or room.account_id != own.account_id:
                room = await qr.room_by_name(conn, own.account_id, name)
        if room is None:
            raise NotFound(f"no room named {name!r} in this webhook's account", code="channel_not_found")
        return room.id

    async def _dropped(self, hook: Webhook, key: str | None) -> Outcome:
        """A body the template wrote nothing for: record the key, post nothing."""
        if key:
            async with self._store.transaction() as conn:
                added = await q.add_receipt(conn, hook.id, key, None, self._clock.now())
            if not added:
                repeat = await self._repeat(hook, key, TEMPLATE)
                if repeat:
                    return repeat
        return Outcome(hook, TEMPLATE, hook.room_id, None)

    async def _repeat(self, hook: Webhook, key: str | None, dialect: str) -> Outcome | None:
        """The first answer to a key seen before, or None for a new key."""
        if not key:
            return None
        async with self._store.read() as conn:
            found = await q.receipt(conn, hook.id, key)
        if found is None:
            return None
        return await self._first(hook, found["message_id"], dialect)

    async def _first(self, hook: Webhook, message_id: str | None, dialect: str) -> Outcome:
        """The outcome of the first request with a key, rebuilt from its message."""
        message = None
        if message_id is not None:
            async with self._store.read() as conn:
                message = await qm.message_by_id(conn, message_id)
        room_id = message["room_id"] if message else hook.room_id
        return Outcome(hook, dialect, room_id, message, repeat=True)

    # -- status ----------------------------------------------------------------------------------

    async def _failed(self, hook: Webhook, error: str, *, notify: bool) -> None:
        """Record a webhook's error (at most once a minute when it repeats); tell its room's admins."""
        last = self._errors.get(hook.id)
        now = time.monotonic()
        if last is not None and last[0] == error and now - last[1] < ERROR_REPEAT_SECONDS:
            return
        self._errors[hook.id] = (error, now)
        log.info("webhook %s (%s): %s", hook.name, hook.id, error)
        at = self._clock.now()
        if not notify:
            await self._record(hook, {"last_error": error, "last_error_at": at})
            return
        payload = {"webhook_id": hook.id, "room_id": hook.room_id, "name": hook.name, "error": error}

        async def change(conn: AsyncConnection) -> tuple[None, list[EventDraft]]:
            await q.record_status(conn, hook.id, {"last_error": error, "last_error_at": at})
            admins = [m.user_id for m in await qr.members(conn, hook.room_id) if m.is_admin]
            return None, [
                EventDraft(notice_room(user), WEBHOOK_FAILED, at, user_id=user, payload=payload)
                for user in admins
            ]

        await self._store.writer.run(change)
        self.forget(hook.id)

    async def _record(self, hook: Webhook, values: dict[str, Any]) -> None:
        async with self._store.transaction() as conn:
            await q.record_status(conn, hook.id, values)
        self.forget(hook.id)

    # -- the cache -------------------------------------------------------------------------------

    async def _load(self, webhook_id: str) -> Webhook | None:
        """Read a webhook from the database and refresh the cache with it."""
        async with self._store.read() as conn:
            hook = await q.webhook_by_id(conn, webhook_id)
        if hook is None:
            self.forget(webhook_id)
        else:
            self._remember(hook)
        return hook

    def _remember(self, hook: Webhook) -> None:
        if len(self._by_id) >= CACHE_SIZE:
            self._by_id.clear()
            self._by_token.clear()
        self.forget(hook.id)
        self._by_id[hook.id] = hook
        self._by_token[hook.token_hash] = hook

    def forget(self, webhook_id: str) -> None:
        """Drop a webhook from the cache (it was changed, regenerated or deleted)."""
        hook = self._by_id.pop(webhook_id, None)
        if hook is not None:
            self._by_token.pop(hook.token_hash, None)


def _with_dropped(rendered: Rendered, left_out: tuple[str, ...]) -> Rendered:
    """A rendered message that also names the parts of the HTTP body left out (file uploads)."""
    if not left_out:
        return rendered
    return replace(rendered, dropped=(*rendered.dropped, *left_out))


def _domain(exc: DialectError) -> DomainError:
    """A dialect's refusal as a domain error with the same status and code."""
    if exc.status == 413:
        return TooLarge(exc.message, code=exc.code)
    if exc.status == 404:
        return NotFound(exc.message, code=exc.code)
    return Invalid(exc.message, code=exc.code)
