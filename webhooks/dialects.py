"""Which dialect a webhook body speaks, told by its shape, and its rendering as one message."""

from __future__ import annotations

from typing import Any, Literal

from webhooks import chime, discord, slack, teams
from webhooks.message import DialectError, Rendered, storable

Dialect = Literal["chime", "slack", "teams", "discord"]
DIALECTS: tuple[Dialect, ...] = ("chime", "slack", "teams", "discord")


def detect(data: Any) -> Dialect | None:
    """The dialect a parsed body is shaped like, or None when it is none of them.

    The order matters: a Teams card and a Discord body never carry Slack's keys, but a Slack body
    may carry a stray `content`; Chime's `Content` is unambiguous.
    """
    if not isinstance(data, dict):
        return None
    if "Content" in data:
        return "chime"
    if teams.is_teams(data):
        return "teams"
    if slack.looks_like(data):
        return "slack"
    if discord.is_discord(data):
        return "discord"
    return None


def render(dialect: Dialect, data: Any, *, max_chars: int) -> Rendered:
    """Render a parsed body in its dialect; DialectError (status, code, message) when it is refused."""
    if dialect == "chime":
        message = chime.from_json(data, max_chars=max_chars)
        return Rendered(message.content, format=message.format)
    if not isinstance(data, dict):
        raise DialectError(400, "invalid_payload", "the body must be a JSON object")
    rendered = {"slack": slack.render, "teams": teams.render, "discord": discord.render}[dialect](data)
    text = rendered.text()
    if len(text) > max_chars:
        raise DialectError(
            413, "msg_too_long", f"the message has {len(text)} characters; the limit is {max_chars}"
        )
    if not storable(text):
        raise DialectError(400, "invalid_payload", "the message holds a NUL or an unpaired surrogate")
    return rendered
