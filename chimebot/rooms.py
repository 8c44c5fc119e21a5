"""Rooms: membership, room administrators, posting and history."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot import mentions
from chimebot.bus import MEMBER_JOINED, MEMBER_LEFT, MEMBER_UPDATED, MESSAGE_CREATED
from chimebot.clock import Clock
from chimebot.errors import Conflict, Forbidden, Invalid, NotFound
from chimebot.ids import new_id
from chimebot.models import (
    BOT_ID_PREFIX,
    Bot,
    Member,
    MessageFormat,
    Room,
    Sender,
    User,
    bot_address,
    bot_name_of,
    message_json,
)
from chimebot.store import Store
from chimebot.store import accounts as qa
from chimebot.store import bots as qb
from chimebot.store import messages as qm
from chimebot.store import rooms as q
from chimebot.store.batches import GuardFailed
from chimebot.store.log import EventDraft

MAX_MESSAGE_CHARS = 16_384  # what people may post through the API; webhooks have their own limit
MAX_PAGE = 200


def encode_cursor(seq: int) -> str:
    """Make an opaque pagination cursor from a message's sequence number."""
    return base64.urlsafe_b64encode(f"m{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Read a cursor made by ``encode_cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw.startswith("m") and raw[1:].isdigit() and len(raw) <= 19:  # fits a 64-bit integer
            return int(raw[1:])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise Invalid("this cursor is not one the API gave out; pass `next_cursor` from a previous page")


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
        raise Invalid("a room name must be a string of 1 to 100 characters")
    return name.strip()


class Rooms:
    """Room membership rules and messages."""

    def __init__(self, store: Store, clock: Clock, bot_domain: str = "localhost") -> None:
        self._store = store
        self._clock = clock
        self._bot_domain = bot_domain  # bots are members with the address <name>-chimebot@<domain>

    # -- rooms -----------------------------------------------------------------------------------

    async def create(self, actor: User, name: str) -> Room:
        """Create a room; its creator becomes a member and its administrator."""
        room = Room(new_id(), actor.account_id, _check_name(name), self._clock.now())

        async def change(conn: AsyncConnection) -> tuple[Room, list[EventDraft]]:
            if await q.room_by_name(conn, actor.account_id, room.name):
                raise Conflict(f"a room named {room.name!r} already exists")
            await q.insert_room(conn, room)
            return room, [await self._join(conn, room.id, actor, is_admin=True)]

        return await self._write(change)

    async def ensure(self, owner: User, name: str) -> Room:
        """Return the room of this name, creating it (owned by ``owner``) if it is missing."""
        async with self._store.read() as conn:
            room = await q.room_by_name(conn, owner.account_id, name)
        if room is not None:
            return room
        try:
            return await self.create(owner, name)
        except Conflict:  # created by someone else meanwhile
            return await self.resolve(owner, name)

    async def resolve(self, actor: User, ref: str) -> Room:
        """Find a room of the actor's account by id or by exact name."""
        async with self._store.read() as conn:
            room = await q.room_by_id(conn, ref)
            if room is None or room.account_id != actor.account_id:
                room = await q.room_by_name(conn, actor.account_id, ref)
        if room is None:
            raise NotFound(f"no room has the id or name {ref!r}")
        return room

    async def rooms_of(self, user: User) -> list[Room]:
        """List the rooms a user is in."""
        async with self._store.read() as conn:
            return await q.rooms_of(conn, user.id)

    async def get(self, actor: User, room_id: str) -> Room:
        """Return a room the actor is a member of."""
        async with self._store.read() as conn:
            room, _ = await self._access(conn, actor, room_id)
        return room

    async def require_admin(self, actor: User, room_id: str) -> Room:
        """Return the room if the actor administers it (or the account), else refuse."""
        async with self._store.read() as conn:
            room, _ = await self._access(conn, actor, room_id, admin=True)
        return room

    # -- members ---------------------------------------------------------------------------------

    async def members(self, actor: User, room_id: str) -> list[Member]:
        """List a room's members."""
        async with self._store.read() as conn:
            await self._access(conn, actor, room_id)
            return await self._everyone(conn, room_id)

    async def add_member(self, actor: User, room_id: str, email: str, *, is_admin: bool = False) -> Member:
        """Add a user of the same account, or a bot by its address, to a room (room administrators only)."""
        bot_name = bot_name_of(email, self._bot_domain)

        async def change(conn: AsyncConnection) -> tuple[Member, list[EventDraft]]:
            await self._access(conn, actor, room_id, admin=True, lock=True)
            if bot_name is not None:
                return await self._add_bot(conn, actor, room_id, bot_name, is_admin)
            user = await qa.user_by_email(conn, email)
            if user is None or user.account_id != actor.account_id:
                raise NotFound(f"no user of this account has the address {email!r}")
            if await q.member(conn, room_id, user.id):
                raise Conflict(f"{user.email} is already a member of this room")
            event = await self._join(conn, room_id, user, is_admin=is_admin)
            member = await q.member(conn, room_id, user.id)
            assert member is not None
            return member, [event]

        return await self._write(change)

    async def set_admin(self, actor: User, room_id: str, user_id: str, is_admin: bool) -> Member:
        """Make a member a room administrator or not; the last administrator stays one."""

        async def change(conn: AsyncConnection) -> tuple[Member, list[EventDraft]]:
            await self._access(conn, actor, room_id, admin=True, lock=True)
            if user_id.startswith(BOT_ID_PREFIX):
                raise Invalid("a bot cannot be a room administrator")
            member = await self._member(conn, room_id, user_id)
            if member.is_admin and not is_admin and await q.count_admins(conn, room_id) == 1:
                raise Conflict(
                    "the last administrator of a room cannot step down; make another member one first"
                )
            await q.set_member_admin(conn, room_id, user_id, is_admin)
            updated = await self._member(conn, room_id, user_id)
            return updated, [self._event(room_id, MEMBER_UPDATED, user_id, updated.to_json())]

        return await self._write(change)

    async def remove_member(self, actor: User, room_id: str, user_id: str) -> None:
        """Leave a room, or remove someone from it (room administrators); the last administrator stays."""

        async def change(conn: AsyncConnection) -> tuple[None, list[EventDraft]]:
            await self._access(conn, actor, room_id, admin=user_id != actor.id, lock=True)
            if user_id.startswith(BOT_ID_PREFIX):
                return None, [await self.remove_bot(conn, room_id, user_id[len(BOT_ID_PREFIX) :], actor.id)]
            member = await self._member(conn, room_id, user_id)
            if member.is_admin and await q.count_admins(conn, room_id) == 1:
                raise Conflict("the last administrator cannot leave the room; make another member one first")
            await q.delete_member(conn, room_id, user_id)
            payload = {"room_id": room_id, "user_id": user_id, "removed_by": actor.id}
            return None, [self._event(room_id, MEMBER_LEFT, user_id, payload)]

        await self._write(change)

    async def leave_account(self, conn: AsyncConnection, user_id: str, account_id: str) -> list[EventDraft]:
        """Inside a caller's change: remove a user leaving an account from that account's rooms."""
        payload = {"user_id": user_id, "removed_by": user_id, "reason": "left the account"}
        events = []
        for room_id in await q.room_ids_in_account(conn, user_id, account_id):
            await q.delete_member(conn, room_id, user_id)
            events.append(self._event(room_id, MEMBER_LEFT, user_id, {"room_id": room_id} | payload))
        return events

    async def room_with(
        self, conn: AsyncConnection, owner: User, name: str, members: Iterable[User]
    ) -> tuple[Room, list[EventDraft]]:
        """Inside a caller's change: the room of this name in the owner's account (created, owned by
        ``owner``, if missing), with these users of that account added as members."""
        room = await q.room_by_name(conn, owner.account_id, name)
        events = []
        if room is None:
            room = Room(new_id(), owner.account_id, name, self._clock.now())
            await q.insert_room(conn, room)
            events.append(await self._join(conn, room.id, owner, is_admin=True))
        for user in members:
            if user.account_id == room.account_id and await q.member(conn, room.id, user.id) is None:
                events.append(await self._join(conn, room.id, user, is_admin=False))
        return room, events

    # -- messages --------------------------------------------------------------------------------

    async def post_as_user(
        self, actor: User, room_id: str, content: Any, fmt: Any = "markdown"
    ) -> dict[str, Any]:
        """Post a message as a member of the room."""
        if not isinstance(content, str) or not content.strip():
            raise Invalid("`content` must be a non-empty string")
        if len(content) > MAX_MESSAGE_CHARS:
            raise Invalid(f"a message can have at most {MAX_MESSAGE_CHARS} characters")
        if fmt not in ("text", "markdown", "code"):
            raise Invalid("`format` must be one of text, markdown, code")
        async with self._store.read() as conn:
            await self._access(conn, actor, room_id)
        return await self.post(room_id, Sender("user", actor.id, actor.display_name), content, fmt)

    async def post(
        self,
        room_id: str,
        sender: Sender,
        content: str,
        fmt: MessageFormat,
        *,
        broadcast_limit: int | None = None,
        guard: tuple[str, str] | None = None,
        receipt: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Store a message durably and publish it; refuse @All/@Present over ``broadcast_limit`` members.

        ``guard`` (webhook id, token hash) must still hold when the message is committed;
        ``receipt`` (webhook id, idempotency key) is recorded with it, or raises ``Repeated``.
        """
        tokens = mentions.mention_tokens(content)
        found = mentions.NOBODY
        if tokens:
            async with self._store.read() as conn:
                members = await self._everyone(conn, room_id)
            found = mentions.resolve(tokens, members)
            if (
                broadcast_limit is not None
                and (found.all or found.present)
                and len(members) > broadcast_limit
            ):
                raise Invalid(
                    f"@All and @Present cannot be used in a room of more than {broadcast_limit} members"
                )
        now = self._clock.now()
        row = {
            "id": new_id(),
            "room_id": room_id,
            "sender_kind": sender.kind,
            "sender_id": sender.id,
            "sender_name": sender.name,
            "content": content,
            "format": fmt,
            "mentions": json.dumps(found.to_json()) if found else None,
            "created_at": now,
        }
        event = EventDraft(room_id, MESSAGE_CREATED, now, message=row)
        try:
            await self._store.writer.post_message(row, event, guard=guard, receipt=receipt)
        except GuardFailed:
            if guard is not None:
                raise  # the caller knows what its guard meant
            raise NotFound(f"no room with id {room_id!r}") from None
        return row

    async def history(
        self, actor: User, room_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Return a page of messages, newest first, and the cursor of the next (older) page."""
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(f"`limit` must be between 1 and {MAX_PAGE}")
        before = decode_cursor(cursor) if cursor else None
        async with self._store.read() as conn:
            await self._access(conn, actor, room_id)
            rows = await qm.history(conn, room_id, limit=limit + 1, before_seq=before)
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1]["seq"]) if len(rows) > limit else None
        return [message_json(r) for r in page], next_cursor

    # -- bots ------------------------------------------------------------------------------------

    def bot_member(self, bot: Bot, room_id: str, joined_at: datetime) -> Member:
        """A bot as a member of a room."""
        address = bot_address(bot.name, self._bot_domain)
        return Member(room_id, bot.member_id, address, bot.display_name, False, joined_at, kind="bot")

    async def join_bot(
        self, conn: AsyncConnection, room_id: str, bot: Bot, added_by: str | None
    ) -> EventDraft | None:
        """Inside a caller's change: put a bot in a room (None if it is there already)."""
        if await qb.joined_at(conn, room_id, bot.name) is not None:
            return None
        now = self._clock.now()
        await qb.add_to_room(conn, room_id, bot.name, added_by, now)
        payload = self.bot_member(bot, room_id, now).to_json() | {"added_by": added_by}
        return EventDraft(room_id, MEMBER_JOINED, now, payload=payload)

    async def remove_bot(self, conn: AsyncConnection, room_id: str, name: str, removed_by: str) -> EventDraft:
        """Inside a caller's change: take a bot out of a room."""
        if not await qb.remove_from_room(conn, room_id, name):
            raise NotFound(f"the bot {name!r} is not a member of this room")
        payload = {
            "room_id": room_id,
            "user_id": BOT_ID_PREFIX + name,
            "removed_by": removed_by,
            "kind": "bot",
        }
        return EventDraft(room_id, MEMBER_LEFT, self._clock.now(), payload=payload)

    async def _add_bot(
        self, conn: AsyncConnection, actor: User, room_id: str, name: str, is_admin: bool
    ) -> tuple[Member, list[EventDraft]]:
        if is_admin:
            raise Invalid("a bot cannot be a room administrator")
        bot = await qb.bot(conn, name)
        if bot is None:
            raise NotFound(f"no bot is named {name!r}; GET /api/v1/bots lists them")
        if not bot.enabled:
            raise Conflict(
                f"the bot {bot.display_name} is disabled: {bot.disabled_reason or 'by the config'}"
            )
        event = await self.join_bot(conn, room_id, bot, actor.id)
        if event is None:
            raise Conflict(f"{bot_address(name, self._bot_domain)} is already a member of this room")
        return self.bot_member(bot, room_id, event.created_at), [event]

    async def _everyone(self, conn: AsyncConnection, room_id: str) -> list[Member]:
        """A room's people, then its bots."""
        people = await q.members(conn, room_id)
        return people + [self.bot_member(b, room_id, at) for b, at in await qb.bots_in_room(conn, room_id)]

    # -- internals -------------------------------------------------------------------------------

    async def _write(self, change: Any) -> Any:
        try:
            return await self._store.writer.run(change)
        except IntegrityError as exc:  # a concurrent request won the race for the same name or member
            raise Conflict(
                "this conflicts with a change made at the same time; reload and try again"
            ) from exc

    async def _access(
        self, conn: AsyncConnection, actor: User, room_id: str, *, admin: bool = False, lock: bool = False
    ) -> tuple[Room, Member | None]:
        """Check that the actor may see (or administer) a room; rooms of other accounts do not exist."""
        room = await q.room_by_id(conn, room_id, lock=lock)
        if room is None or room.account_id != actor.account_id:
            raise NotFound(f"no room with id {room_id!r}")
        member = await q.member(conn, room_id, actor.id)
        if admin:
            if not (actor.is_admin or (member and member.is_admin)):
                raise Forbidden("only a room administrator can do this")
        elif member is None:
            raise NotFound(f"no room with id {room_id!r} that you are a member of")
        return room, member

    async def _member(self, conn: AsyncConnection, room_id: str, user_id: str) -> Member:
        member = await q.member(conn, room_id, user_id)
        if member is None:
            raise NotFound(f"user {user_id!r} is not a member of this room")
        return member

    async def _join(self, conn: AsyncConnection, room_id: str, user: User, *, is_admin: bool) -> EventDraft:
        now = self._clock.now()
        await q.insert_member(conn, room_id, user.id, is_admin, now)
        member = Member(room_id, user.id, user.email, user.display_name, is_admin, now)
        return self._event(room_id, MEMBER_JOINED, user.id, member.to_json())

    def _event(self, room_id: str, kind: str, user_id: str, payload: dict[str, Any]) -> EventDraft:
        return EventDraft(room_id, kind, self._clock.now(), user_id=user_id, payload=payload)
