"""The bots service: the config's bots, endpoint verification, sending events, replies, admin views."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.background import cancel_and_wait
from chimebot.bots import builtin
from chimebot.bots.endpoints import EndpointRefused, InboundEndpoints
from chimebot.bots.events import ANSWERABLE, PERSISTENT, Plan, chime_event, with_endpoint
from chimebot.bots.router import Router
from chimebot.bots.worker import Delivery, Worker
from chimebot.bus import notice_room
from chimebot.clock import Clock
from chimebot.config import BotDecl, Config
from chimebot.errors import DomainError, Forbidden, Invalid, NotFound, RateLimited, TooLarge
from chimebot.ids import new_id
from chimebot.models import Bot, Sender, User, bot_address, iso
from chimebot.ratelimit import RateLimiter
from chimebot.rooms import Rooms
from chimebot.store import Store
from chimebot.store import bots as qb
from chimebot.store.log import EventDraft
from webhooks import chime, delivery, signing

log = logging.getLogger(__name__)

ENDPOINT_KEY = "bot-endpoints"
BOT_UNAVAILABLE = "bot.unavailable"  # told to a user who mentioned a disabled bot
MAX_PAGE = 200
REVERIFY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Reply:
    """A message a bot posted through its reply URL."""

    message_id: str
    room_id: str


class Bots:
    """Declared bots, their rooms and their deliveries."""

    def __init__(
        self, config: Config, store: Store, clock: Clock, rooms: Rooms, limiter: RateLimiter
    ) -> None:
        self._store = store
        self._clock = clock
        self._rooms = rooms
        self._domain = config.meeting_domain
        self._base_url = config.server.base_url
        self._allow_private = config.delivery.allow_private_endpoints
        self._max_chars = config.webhooks.max_content_chars  # replies have the limits of webhooks
        self._broadcast_limit = config.webhooks.mention_all_max_members
        self._limiter = limiter  # replies have the rate of webhooks too, per bot and room
        self._rate = config.webhooks.rate_per_second
        self._decls: dict[str, BotDecl] = {decl.name: decl for decl in config.bots}
        self._builtins: dict[str, builtin.BuiltinBot] = {}
        self._session: aiohttp.ClientSession | None = None
        self._endpoints: InboundEndpoints | None = None
        self._reverify: asyncio.Task[None] | None = None
        settings = config.delivery
        self.router = Router(
            store,
            clock,
            domain=self._domain,
            system_address=f"chimebot@{self._domain}",
            poll_seconds=settings.poll_seconds,
            on_planned=self._planned,
        )
        self.worker = Worker(
            store,
            clock,
            self,
            concurrency=settings.concurrency,
            poll_seconds=settings.poll_seconds,
            retry_for=timedelta(hours=settings.retry_hours),
            active=lambda: self.router.active,
        )

    # -- life cycle ------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Place the router in the log and load the key of the reply URLs (every process does this)."""
        await self.router.place()
        async with self._store.read() as conn:
            key = await qb.server_key(conn, ENDPOINT_KEY)
        if key is None:
            try:
                async with self._store.transaction() as conn:
                    await qb.insert_server_key(conn, ENDPOINT_KEY, secrets.token_hex(32), self._clock.now())
            except IntegrityError:
                pass  # another node made it first
            async with self._store.read() as conn:
                key = await qb.server_key(conn, ENDPOINT_KEY)
        assert key is not None
        self._endpoints = InboundEndpoints(bytes.fromhex(key), self._base_url)

    async def start(self) -> None:
        """Start sending (the server does this; commands do not)."""
        if self._session is None:  # verification at start-up may have opened it
            self._session = delivery.make_session(allow_private=self._allow_private)
        self.router.start()
        self.worker.start()
        self._reverify = asyncio.get_running_loop().create_task(
            self._reverify_loop(), name="chimebot-bot-verify"
        )

    async def stop(self) -> None:
        """Stop routing and sending; sends in flight finish first."""
        await cancel_and_wait(self._reverify)
        self._reverify = None
        await self.router.stop()
        await self.worker.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the config ------------------------------------------------------------------------------

    async def apply(self, decls: Sequence[BotDecl], owner: User) -> list[str]:
        """Make the stored bots match the config, verify endpoints, join the declared rooms.

        Returns one line per change, for the audit log. A bot left out of the config is disabled,
        not deleted. Bots are verified when new, changed, unverified, or disabled by a 410.
        """
        self._decls = {decl.name: decl for decl in decls}
        now = self._clock.now()
        changes: list[str] = []
        async with self._store.transaction() as conn:
            existing = {b.name: b for b in await qb.all_bots(conn)}
            if not existing and decls:
                await Router.fast_forward(conn)
            for decl in decls:
                changes += await self._put(conn, decl, existing.get(decl.name))
            for name, old in existing.items():
                if name not in self._decls and old.enabled:
                    reason = "no longer in the config"
                    await qb.update_bot(
                        conn, name, {"enabled": False, "disabled_reason": reason, "updated_at": now}
                    )
                    changes.append(f"bot {name}: disabled ({reason})")
        if decls:
            self.router.activate()
        await self._verify_all([d.name for d in decls if d.enabled])
        for decl in decls:
            if decl.enabled and decl.rooms:
                changes += await self._join_declared(decl, owner)
        return changes

    async def _put(self, conn: AsyncConnection, decl: BotDecl, old: Bot | None) -> list[str]:
        now = self._clock.now()
        kind = "builtin" if decl.builtin else "http"
        digest = hashlib.sha256(
            json.dumps([kind, decl.endpoint or decl.builtin, decl.signing, decl.secret]).encode()
        ).hexdigest()
        values: dict[str, Any] = {
            "name": decl.name,
            "display_name": decl.label,
            "kind": kind,
            "endpoint": decl.endpoint or decl.builtin,
            "events": json.dumps(list(decl.events)),
            "signing": decl.signing,
            "timeout_seconds": decl.timeout_seconds,
            "digest": digest,
            "updated_at": now,
        }
        if not decl.enabled:
            values |= {"enabled": False, "disabled_reason": "disabled in the config"}
        elif old is None or not old.enabled:
            # Enabled by the config; a bot its endpoint disabled (410) is enabled again once verified.
            gone = old is not None and old.disabled_reason is not None and "410" in old.disabled_reason
            values |= {"enabled": not gone, "disabled_reason": old.disabled_reason if gone else None}
        if old is None or old.digest != digest:
            values |= {"verified_at": None, "verify_error": "not verified yet"}
        await qb.put_bot(conn, values)
        if old is None:
            return [f"bot {decl.name}: added ({kind} {values['endpoint']}, events {', '.join(decl.events)})"]
        shown = {
            "display name": (old.display_name, decl.label),
            "endpoint": (old.endpoint, values["endpoint"]),
            "events": (list(old.events), list(decl.events)),
            "signing": (old.signing, decl.signing),
            "timeout": (old.timeout_seconds, decl.timeout_seconds),
            "enabled": (old.enabled, values.get("enabled", old.enabled)),
        }
        changed = [f"{what} {a!r} -> {b!r}" for what, (a, b) in shown.items() if a != b]
        if old.digest != digest and not changed:
            changed.append("secret changed")
        return [f"bot {decl.name}: " + "; ".join(changed)] if changed else []

    async def _join_declared(self, decl: BotDecl, owner: User) -> list[str]:
        changes = []
        for room_name in decl.rooms:
            room = await self._rooms.ensure(owner, room_name)

            async def change(conn: AsyncConnection, room_id: str = room.id) -> tuple[bool, list[EventDraft]]:
                bot = await qb.bot(conn, decl.name)
                assert bot is not None
                event = await self._rooms.join_bot(conn, room_id, bot, None)
                return event is not None, [event] if event else []

            if await self._store.writer.run(change):
                changes.append(f"bot {decl.name}: joined room {room_name!r}")
        return changes

    # -- verification ----------------------------------------------------------------------------

    async def _verify_all(self, names: Sequence[str], *, only_unverified: bool = False) -> None:
        async with self._store.read() as conn:
            bots = [b for b in await qb.all_bots(conn) if b.name in names]
        due = [
            b
            for b in bots
            if b.verified_at is None or (not b.enabled and not only_unverified and b.name in self._decls)
        ]
        await asyncio.gather(*(self._verify(b) for b in due))

    async def _verify(self, bot: Bot) -> None:
        """Check the bot's endpoint (or load its class) and record the result."""
        now = self._clock.now()
        error = await (self._load_builtin(bot) if bot.kind == "builtin" else self._challenge(bot))
        async with self._store.transaction() as conn:
            if error is not None:
                await qb.update_bot(
                    conn, bot.name, {"verified_at": None, "verify_error": error, "updated_at": now}
                )
            elif await qb.mark_verified(conn, bot.name, now):  # only the node that verified it first
                await self._invite_everywhere(conn, bot)
            decl = self._decls.get(bot.name)
            if error is None and not bot.enabled and decl is not None and decl.enabled:  # after a 410
                await qb.update_bot(conn, bot.name, {"enabled": True, "disabled_reason": None})
        if error:
            log.warning("bot %s is not verified: %s", bot.name, error)
        else:
            log.info("bot %s verified", bot.name)

    async def _challenge(self, bot: Bot) -> str | None:
        """Chime's HTTPSEndpointVerification: the endpoint must echo the challenge in a 200 JSON answer."""
        decl = self._decls.get(bot.name)
        if decl is None or bot.endpoint is None:
            return "the bot is not in the config"
        challenge = secrets.token_urlsafe(15)[:20]
        body = json.dumps({"Challenge": challenge, "EventType": "HTTPSEndpointVerification"}).encode()
        response = await self._post(bot, decl, body, f"verify_{bot.name}_{new_id()}")
        if response.status is None:
            return f"the endpoint did not answer the verification: {response.error}"
        if response.status != 200:
            return f"the endpoint answered the verification with HTTP {response.status}, not 200"
        try:
            echoed = json.loads(response.body).get("Challenge")
        except (ValueError, AttributeError):
            echoed = None
        if echoed != challenge:
            return 'the endpoint did not echo the challenge: answer {"Challenge": "<the challenge sent>"}'
        return None

    async def _load_builtin(self, bot: Bot) -> str | None:
        try:
            cls = builtin.load(bot.endpoint or "")
        except builtin.UnknownBot as exc:
            return str(exc)

        async def post(room_id: str, content: str, name: str = bot.name) -> str:
            return await self.post_as(name, room_id, content)

        self._builtins[bot.name] = cls(bot.name, bot.display_name, post)
        return None

    async def _invite_everywhere(self, conn: AsyncConnection, bot: Bot) -> None:
        """A bot verified only now missed the invitations of the rooms it is in: send them again."""
        now = self._clock.now()
        rows = [
            {
                "bot_name": bot.name,
                "room_id": room_id,
                "event_type": "Invite",
                "event_id": None,
                "payload": json.dumps(chime_event("Invite", f"chimebot@{self._domain}", room_id, now)),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for room_id, _, _ in await qb.rooms_of_bot(conn, bot.name)
            if "Invite" in bot.events
        ]
        await qb.insert_deliveries(conn, rows)

    async def _reverify_loop(self) -> None:
        """Try unverified bots again now and then: an endpoint down at start-up gets its events later."""
        while True:
            await asyncio.sleep(REVERIFY_SECONDS)
            try:
                await self._verify_all(list(self._decls), only_unverified=True)
            except Exception as exc:  # the database may be away; the next round retries
                log.warning("verifying bots failed: %s", exc)

    # -- sending (the worker's transport) --------------------------------------------------------

    async def current(self, name: str) -> Bot | None:
        """The bot as it is now (a 410 on another node may have disabled it)."""
        async with self._store.read() as conn:
            return await qb.bot(conn, name)

    async def send(self, bot: Bot, item: Delivery) -> delivery.Response:
        """Send one queued event to a bot: signed HTTP, or a call of its class."""
        event = json.loads(item.payload)
        kind = ANSWERABLE.get(item.event_type)
        if kind is not None:
            event = with_endpoint(event, kind, self._reply_url(bot.name, item.room_id, kind))
        if bot.kind == "builtin":
            return await self._call(bot, event)
        decl = self._decls.get(bot.name)
        if decl is None:
            return delivery.Response(None, b"", None, "the bot is no longer in the config", 0.0)
        body = json.dumps(event, separators=(",", ":")).encode()
        return await self._post(bot, decl, body, f"msg_{bot.name}_{item.id}")

    async def _post(self, bot: Bot, decl: BotDecl, body: bytes, msg_id: str) -> delivery.Response:
        now = self._clock.now()
        try:
            if decl.signing == "standard-webhooks":
                headers = signing.standard_headers(decl.secret, msg_id, body, now)
            else:
                headers = signing.chime_headers(decl.secret, body, now)
        except ValueError as exc:  # a whsec_ secret that is not Base64 (the config check catches it first)
            return delivery.Response(None, b"", None, f"cannot sign: {exc}", 0.0)
        if self._session is None:
            self._session = delivery.make_session(allow_private=self._allow_private)
        return await delivery.post(
            self._session,
            decl.endpoint,
            body,
            headers,
            timeout=decl.timeout_seconds,
            now=now,
            allow_private=self._allow_private,
        )

    async def _call(self, bot: Bot, event: dict[str, Any]) -> delivery.Response:
        """Hand an event to a built-in bot, with the same timeout and outcomes as an endpoint."""
        started = time.monotonic()
        instance = self._builtins.get(bot.name)
        if instance is None:
            error = await self._load_builtin(bot)
            instance = self._builtins.get(bot.name)
            if instance is None:
                return delivery.Response(None, b"", None, error, 0.0)
        try:
            reply = await asyncio.wait_for(
                instance.handle(builtin.BotEvent.from_payload(event)), bot.timeout_seconds
            )
        except TimeoutError:
            error = f"the bot did not finish within {bot.timeout_seconds:g} s"
            return delivery.Response(None, b"", None, error, time.monotonic() - started)
        except Exception as exc:  # the plugin's bug is its delivery's failure, retried like a 500
            log.exception("built-in bot %s failed on %s", bot.name, event.get("EventType"))
            return delivery.Response(
                500, b"", None, f"{type(exc).__name__}: {exc}", time.monotonic() - started
            )
        body = json.dumps({"Content": reply}).encode() if reply else b""
        return delivery.Response(200, body, None, None, time.monotonic() - started)

    async def delivered(self, bot: Bot, item: Delivery, response: delivery.Response) -> str | None:
        """Post a ``{"Content": …}`` answer as the bot's reply (anything else in the answer is ignored);
        return why a reply was not posted, for the delivery's record."""
        if not response.body.strip().startswith(b"{") or b'"Content"' not in response.body:
            return None
        try:
            message = chime.parse_body(response.body, max_chars=self._max_chars)
            await self.post_as(bot.name, item.room_id, message.content, message.format)
        except chime.ChimeBodyError as exc:
            return f"the reply in the answer was not posted: {exc.message}"
        except DomainError as exc:  # it left the room, or @All in a large room: the event was delivered
            log.info("reply of bot %s not posted: %s", bot.name, exc.message)
            return f"the reply in the answer was not posted: {exc.message}"
        return None

    async def gone(self, bot: Bot, response: delivery.Response) -> None:
        """Disable a bot whose endpoint answered 410 Gone."""
        reason = f"the endpoint answered 410 Gone at {iso(self._clock.now())}"
        async with self._store.transaction() as conn:
            await qb.update_bot(conn, bot.name, {"enabled": False, "disabled_reason": reason})
        log.warning("bot %s disabled: %s", bot.name, reason)

    def _reply_url(self, name: str, room_id: str, kind: str) -> str:
        assert self._endpoints is not None, "prepare() loads the key of the reply URLs"
        if kind == PERSISTENT:
            return self._endpoints.url(name, room_id)
        return self._endpoints.short_lived(name, room_id, self._clock.now())

    async def _planned(self, plan: Plan) -> None:
        """After the router committed a page: wake the worker, tell people about disabled bots."""
        if plan.deliveries:
            self.worker.wake()
        for user_id, room_id, message_id, bot in plan.refusals:
            text = f"{bot.display_name} is disabled and did not get your message"
            if bot.disabled_reason:
                text += f" ({bot.disabled_reason})"
            payload = {"room_id": room_id, "message_id": message_id, "bot": bot.name, "message": text}
            draft = EventDraft(
                notice_room(user_id), BOT_UNAVAILABLE, self._clock.now(), user_id=user_id, payload=payload
            )

            async def change(conn: AsyncConnection, d: EventDraft = draft) -> tuple[None, list[EventDraft]]:
                return None, [d]

            await self._store.writer.run(change)

    # -- replies ---------------------------------------------------------------------------------

    async def reply(self, name: str, room_id: str, token: str, expires: str | None, body: bytes) -> Reply:
        """Post a Chime-dialect body sent to a bot's reply URL; NotFound for a URL that is not valid."""
        assert self._endpoints is not None
        try:
            self._endpoints.check(name, room_id, token, expires, self._clock.now())
        except EndpointRefused as exc:
            raise NotFound(str(exc)) from None
        if wait := await self._limiter.take(f"bot:{name}:{room_id}"):
            raise RateLimited(
                f"a bot may post {self._rate:g} message(s) per second into a room; retry in {wait:.2f} s",
                retry_after=wait,
            )
        try:
            message = chime.parse_body(body, max_chars=self._max_chars)
        except chime.ChimeBodyError as exc:  # answered as Chime did: 400, or 413 for a long message
            raise (TooLarge if exc.status == 413 else Invalid)(exc.message, code=exc.code) from None
        message_id = await self.post_as(name, room_id, message.content, message.format)
        return Reply(message_id, room_id)

    async def post_as(self, name: str, room_id: str, content: str, fmt: str = "markdown") -> str:
        """Post into a room as a bot that is enabled and in it; return the message id."""
        async with self._store.read() as conn:
            bot = await qb.bot(conn, name)
            present = bot is not None and await qb.joined_at(conn, room_id, name) is not None
        if bot is None or not present:
            raise NotFound("this bot is not a member of that room (any more)")
        if not bot.enabled:
            raise Forbidden(f"the bot {bot.display_name} is disabled")
        sender = Sender("bot", bot.name, bot.display_name)
        row = await self._rooms.post(room_id, sender, content, fmt, broadcast_limit=self._broadcast_limit)  # type: ignore[arg-type]
        return row["id"]

    # -- views -----------------------------------------------------------------------------------

    def address(self, name: str) -> str:
        """A bot's address."""
        return bot_address(name, self._domain)

    async def list(self, actor: User, *, operator_account: str) -> list[dict[str, Any]]:
        """Every bot; administrators also see endpoints, problems and delivery counts (of their rooms)."""
        async with self._store.read() as conn:
            bots = await qb.all_bots(conn)
            counts = await qb.delivery_counts(conn, _scope(actor, operator_account)) if actor.is_admin else {}
        shown = []
        for bot in bots:
            item = bot.to_json(self.address(bot.name), admin=_runs_server(actor, operator_account))
            if actor.is_admin:
                item["deliveries"] = counts.get(bot.name, {})
            shown.append(item)
        return shown

    async def get(self, actor: User, name: str, *, operator_account: str) -> dict[str, Any]:
        """One bot, as ``list`` shows it, with the rooms of the actor's account it is in."""
        async with self._store.read() as conn:
            bot = await qb.bot(conn, name)
            if bot is None:
                raise NotFound(f"no bot is named {name!r}")
            counts = await qb.delivery_counts(conn, _scope(actor, operator_account)) if actor.is_admin else {}
            rooms = await qb.rooms_of_bot(conn, name)
        item = bot.to_json(self.address(name), admin=_runs_server(actor, operator_account))
        item["rooms"] = [{"id": i, "name": n} for i, account, n in rooms if account == actor.account_id]
        if actor.is_admin:
            item["deliveries"] = counts.get(name, {})
        return item

    async def deliveries(
        self,
        actor: User,
        name: str,
        *,
        operator_account: str,
        status: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of a bot's deliveries, newest first, and the id to pass as ``before`` for the next."""
        _admin(actor)
        if status is not None and status not in ("pending", "sending", "delivered", "failed"):
            raise Invalid("`status` must be one of pending, sending, delivered, failed")
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(f"`limit` must be between 1 and {MAX_PAGE}")
        async with self._store.read() as conn:
            if await qb.bot(conn, name) is None:
                raise NotFound(f"no bot is named {name!r}")
            rows = await qb.deliveries(
                conn,
                name,
                account_id=_scope(actor, operator_account),
                status=status,
                before_id=before,
                limit=limit + 1,
            )
        page = rows[:limit]
        return [_delivery_json(r) for r in page], (page[-1]["id"] if len(rows) > limit else None)

    async def replay(
        self, actor: User, name: str, ids: Sequence[int] | None, *, operator_account: str
    ) -> list[int]:
        """Queue failed deliveries again (these, or all failed ones); return the ids queued."""
        _admin(actor)
        async with self._store.transaction() as conn:
            if await qb.bot(conn, name) is None:
                raise NotFound(f"no bot is named {name!r}")
            queued = await qb.replay(
                conn, name, ids, account_id=_scope(actor, operator_account), now=self._clock.now()
            )
        if ids is not None and (missing := sorted(set(ids) - set(queued))):
            log.info("replay of bot %s: %d id(s) were not failed deliveries", name, len(missing))
        self.worker.wake()
        return queued


def _admin(actor: User) -> None:
    if not actor.is_admin:
        raise Forbidden("only an account administrator can see and replay bot deliveries")


def _runs_server(actor: User, operator_account: str) -> bool:
    """Administrators of the operator's account configure the server: they see bots' endpoints."""
    return actor.is_admin and actor.account_id == operator_account


def _scope(actor: User, operator_account: str) -> str | None:
    """The operator's administrators see every room's deliveries; other accounts' only their own."""
    return None if actor.account_id == operator_account else actor.account_id


def _delivery_json(row: Any) -> dict[str, Any]:
    """A delivery as administrators see it (the payload holds no reply URL: those are made per attempt)."""
    return {
        "id": row["id"],
        "bot": row["bot_name"],
        "room_id": row["room_id"],
        "event_type": row["event_type"],
        "event_id": row["event_id"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "last_attempt_at": iso(row["last_attempt_at"]) if row["last_attempt_at"] else None,
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "last_response": row["last_response"],
        "created_at": iso(row["created_at"]),
        "delivered_at": iso(row["delivered_at"]) if row["delivered_at"] else None,
    }
