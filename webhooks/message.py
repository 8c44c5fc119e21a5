"""What every dialect turns a webhook body into: one Markdown message, and the parts it could not show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Format = Literal["text", "markdown", "code"]


class DialectError(ValueError):
    """A body its dialect refuses, with the status and the error name that dialect's senders expect."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message a webhook body asks to post, rendered to Markdown."""

    content: str
    username: str | None = None  # the sender's name the body asks for (Slack `username`, Discord …)
    channel: str | None = None  # the room the body asks for (Slack/Mattermost `channel`)
    dropped: tuple[str, ...] = ()  # the parts that could not be rendered, named for the reader
    format: Format = "markdown"  # Chime bodies may ask for text or a code block

    def text(self) -> str:
        """The content, with a note naming what was left out when something was."""
        if not self.dropped:
            return self.content
        note = f"_(not shown: {', '.join(self.dropped)})_"
        return f"{self.content}\n\n{note}" if self.content else note


def storable(text: str) -> bool:
    """Tell whether text can be stored: no NUL, and UTF-8 encodable (JSON escapes allow lone surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
