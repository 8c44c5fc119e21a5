"""Built-in bots: Python classes found through the entry-point group ``chimebot.bots``.

A built-in bot gets the same events as an HTTP bot, from the same durable queue, but as method
calls in the server's process. Write one by subclassing ``BuiltinBot`` and registering it::

    [project.entry-points."chimebot.bots"]
    echo = "chimebot.bots.echo:EchoBot"

then declare it with ``[[bots]] name = "echo"  builtin = "echo"``. ``chimebot/bots/echo.py`` is a
complete example to copy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "chimebot.bots"

# Posts into a room as the bot: (room id, Markdown content) -> the new message's id.
Poster = Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class BotEvent:
    """One event for a bot, with the fields of its Chime JSON (kept whole in ``payload``)."""

    type: str  # Invite | Mention | Message | Remove | MeetingStarted
    room_id: str
    sender: str  # the address of whoever caused it
    timestamp: str  # ISO 8601 with milliseconds
    message: str | None  # the message text, for Mention and Message
    message_id: str | None
    payload: Mapping[str, Any]

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> BotEvent:
        """Read an event from its Chime JSON."""
        return cls(
            type=payload["EventType"],
            room_id=payload["Discussion"]["DiscussionId"],
            sender=payload["Sender"]["SenderId"],
            timestamp=payload["EventTimestamp"],
            message=payload.get("Message"),
            message_id=payload.get("MessageId"),
            payload=payload,
        )


class BuiltinBot:
    """Base class of built-in bots: override the ``on_*`` methods you need.

    ``on_mention`` and ``on_message`` may return text, which is posted into the room as the
    bot's reply (like an HTTP bot's ``{"Content": …}`` answer). An exception counts as a failed
    delivery and the event is retried, as for an endpoint that answered 500.
    """

    def __init__(self, name: str, display_name: str, post: Poster) -> None:
        self.name = name
        self.display_name = display_name
        self._post = post

    async def post(self, room_id: str, content: str) -> str:
        """Post Markdown into a room the bot is in; return the message id."""
        return await self._post(room_id, content)

    async def on_invite(self, event: BotEvent) -> None:
        """The bot was added to a room."""

    async def on_remove(self, event: BotEvent) -> None:
        """The bot was removed from a room."""

    async def on_mention(self, event: BotEvent) -> str | None:
        """Someone @mentioned the bot; return a reply, or None."""
        return None

    async def on_message(self, event: BotEvent) -> str | None:
        """A message was posted in one of the bot's rooms (if it subscribed to ``Message``)."""
        return None

    async def on_meeting_started(self, event: BotEvent) -> None:
        """A calendar meeting started in one of the bot's rooms (if it subscribed to ``MeetingStarted``)."""

    async def handle(self, event: BotEvent) -> str | None:
        """Call the method for the event's type; return the reply, if any."""
        if event.type == "Mention":
            return await self.on_mention(event)
        if event.type == "Message":
            return await self.on_message(event)
        if event.type == "Invite":
            await self.on_invite(event)
        elif event.type == "Remove":
            await self.on_remove(event)
        elif event.type == "MeetingStarted":
            await self.on_meeting_started(event)
        return None


class UnknownBot(LookupError):
    """No class is registered under this name, or it cannot be loaded."""


def installed() -> list[str]:
    """The names registered under the entry-point group."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load(name: str) -> type[BuiltinBot]:
    """The class registered as ``name``; UnknownBot says which names exist or why loading failed."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        names = ", ".join(installed()) or "none"
        raise UnknownBot(
            f"no bot class is registered as {name!r} in {ENTRY_POINT_GROUP} (installed: {names})"
        )
    try:
        cls = found[0].load()
    except Exception as exc:  # an import error in a plugin must not stop the server
        raise UnknownBot(f"the bot class {found[0].value} cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, BuiltinBot)):
        raise UnknownBot(f"{found[0].value} is not a subclass of chimebot.bots.builtin.BuiltinBot")
    return cls
