"""The Amazon Chime incoming-webhook dialect: ``POST /incomingwebhooks/{id}?token=…``.

Chime took ``{"Content": "…"}``; a ``/md `` prefix made the rest Markdown and ``/code `` a code
block. Its answers are kept exactly: 400 for a body that is not JSON or has no ``Content``, 413
for content over the limit (4096 characters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from webhooks.message import DialectError, Format, storable

MAX_CONTENT_CHARS = 4096
_PREFIXES: tuple[tuple[str, Format], ...] = (("/md ", "markdown"), ("/code ", "code"))


class ChimeBodyError(DialectError):
    """A body Chime would refuse, with the status it answered and a message for the sender."""


@dataclass(frozen=True, slots=True)
class ChimeMessage:
    """What a Chime webhook body asks to post."""

    content: str
    format: Format


def parse_body(body: bytes, *, max_chars: int = MAX_CONTENT_CHARS) -> ChimeMessage:
    """Read a Chime webhook body, or raise ChimeBodyError with Chime's status for it."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        raise ChimeBodyError(
            400, "invalid_json", 'the body is not JSON; send {"Content": "your message"}'
        ) from None
    return from_json(data, max_chars=max_chars)


def from_json(data: Any, *, max_chars: int = MAX_CONTENT_CHARS) -> ChimeMessage:
    """Read an already-parsed Chime body, or raise ChimeBodyError with Chime's status for it."""
    if not isinstance(data, dict) or "Content" not in data:
        raise ChimeBodyError(400, "missing_content", 'the JSON body has no "Content"; send {"Content": "…"}')
    content = data["Content"]
    if not isinstance(content, str):
        raise ChimeBodyError(400, "invalid_content", '"Content" must be a string')
    if not storable(content):
        raise ChimeBodyError(
            400, "invalid_content", '"Content" holds a NUL or an unpaired surrogate (\\ud800)'
        )
    fmt: Format = "text"
    for prefix, kind in _PREFIXES:
        if content.startswith(prefix):
            content, fmt = content[len(prefix) :], kind
            break
    if not content.strip():
        raise ChimeBodyError(400, "empty_content", '"Content" is empty; there is nothing to post')
    if len(content) > max_chars:
        raise ChimeBodyError(
            413, "content_too_long", f'"Content" has {len(content)} characters; the limit is {max_chars}'
        )
    return ChimeMessage(content, fmt)


def success_body(message_id: str, room_id: str) -> dict[str, str]:
    """The 200 answer Chime gave for a posted message."""
    return {"MessageId": message_id, "RoomId": room_id}
