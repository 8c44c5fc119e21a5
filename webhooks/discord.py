"""Discord incoming-webhook bodies: ``content``, ``username`` and up to 10 ``embeds``.

Discord's execute-webhook body becomes one Markdown message (Discord's Markdown is close enough to
show as is). Errors keep Discord's shape and codes, which its client libraries read: 50006 for a body
with nothing to post, 50035 "Invalid Form Body" for a field of the wrong type.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from webhooks import markdown as md
from webhooks.message import DialectError, Rendered

MAX_EMBEDS = 10
EMPTY_MESSAGE = "50006"
INVALID_FORM_BODY = "50035"
# allowed_mentions, tts, avatar_url, flags and thread_name are accepted and change nothing here: the
# room has its own mentions, no speech, and the webhook's own name and picture.
_UNSHOWN = ("components", "poll", "attachments", "files")  # named in Rendered.dropped


def is_discord(data: object) -> bool:
    """Tell whether a JSON body is a Discord execute-webhook body (and not Slack's nor Chime's)."""
    if not isinstance(data, dict) or "text" in data or "Content" in data:
        return False
    return "content" in data or isinstance(data.get("embeds"), list)


def render(data: dict[str, Any]) -> Rendered:
    """Render a Discord webhook body to one Markdown message, or raise DialectError with Discord's code."""
    if not isinstance(data, dict):
        raise _invalid("body", "Must be a JSON object.")
    content = _string(data, "content", "")
    username = _string(data, "username", "")
    embeds = data.get("embeds")
    if embeds is not None and not isinstance(embeds, list):
        raise _invalid("embeds", "Must be an array.")
    if embeds and len(embeds) > MAX_EMBEDS:
        raise _invalid("embeds", f"Must be {MAX_EMBEDS} or fewer in length.")
    blocks = [content.strip()] + [_embed(embed, f"embeds.{i}") for i, embed in enumerate(embeds or [])]
    dropped = tuple(key for key in _UNSHOWN if data.get(key))
    text = md.clean("\n\n".join(block for block in blocks if block))
    if not text and not dropped:  # a poll or components alone still post something in Discord
        raise DialectError(400, EMPTY_MESSAGE, "Cannot send an empty message")
    return Rendered(text, username=md.clean(username.strip()) or None, dropped=dropped)


def error_body(code: str, message: str) -> dict[str, Any]:
    """Discord's JSON error answer, ``{"message": …, "code": 50035}``."""
    return {"message": message, "code": int(code) if code.isdigit() else 0}


def message_object(
    message_id: str,
    channel_id: str,
    webhook_id: str,
    username: str,
    content: str,
    timestamp: datetime,
) -> dict[str, Any]:
    """The message object Discord answers ``?wait=true`` with; a webhook is its author, as a bot."""
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return {
        "id": message_id,
        "type": 0,
        "content": content,
        "channel_id": channel_id,
        "author": {
            "id": webhook_id,
            "username": username,
            "avatar": None,
            "discriminator": "0000",
            "bot": True,
        },
        "attachments": [],
        "embeds": [],
        "mentions": [],
        "mention_roles": [],
        "pinned": False,
        "mention_everyone": False,
        "tts": False,
        # Discord writes microseconds and "+00:00": 2017-07-11T17:27:07.299000+00:00
        "timestamp": timestamp.astimezone(UTC).isoformat(timespec="microseconds"),
        "edited_timestamp": None,
        "flags": 0,
        "components": [],
        "webhook_id": webhook_id,
    }


def _embed(embed: object, path: str) -> str:
    """One embed as Markdown lines: author, title, description, fields, images, footer · time."""
    if not isinstance(embed, dict):
        raise _invalid(path, "Must be an object.")
    author = _object(embed, "author", path)
    name = _string(author, "name", f"{path}.author").strip()
    author_url = _string(author, "url", f"{path}.author")
    title = _string(embed, "title", path).strip()
    title_url = _string(embed, "url", path)
    lines = [
        md.link(name, author_url) if name else "",
        md.bold(md.link(title, title_url)) if title else "",
        _string(embed, "description", path).strip(),
    ]
    fields = embed.get("fields")
    if fields is not None and not isinstance(fields, list):
        raise _invalid(f"{path}.fields", "Must be an array.")
    for i, field in enumerate(fields or []):
        lines.append(_field(field, f"{path}.fields.{i}"))
    for key in ("image", "thumbnail"):
        if url := md.url(_string(_object(embed, key, path), "url", f"{path}.{key}")):
            lines.append(md.link(key, url))
    footer = _string(_object(embed, "footer", path), "text", f"{path}.footer").strip()
    lines.append(" · ".join(part for part in (footer, _timestamp(embed, path)) if part))
    return "\n".join(line for line in lines if line)


def _field(field: object, path: str) -> str:
    if not isinstance(field, dict):
        raise _invalid(path, "Must be an object.")
    for key in ("name", "value"):
        if field.get(key) is None:
            raise _invalid(f"{path}.{key}", "This field is required")
    name, value = _string(field, "name", path).strip(), _string(field, "value", path).strip()
    # Inline or not, a chat message has one column: each field gets its own line.
    return f"{md.bold(name)}: {value}" if name and value else md.bold(name) or value


def _timestamp(embed: dict[str, Any], path: str) -> str:
    raw = _string(embed, "timestamp", path).strip()
    if not raw:
        return ""
    try:
        moment = md.in_utc(datetime.fromisoformat(raw))
    except (ValueError, OverflowError):
        raise _invalid(f"{path}.timestamp", f"Could not parse {raw[:40]}. Should be ISO8601.") from None
    # Discord shows it in each reader's zone; a chat message cannot, so it says which zone it is in.
    return md.stamp(moment)


def _string(obj: dict[str, Any], key: str, path: str) -> str:
    """A text field, "" when absent; numbers are taken as text, anything else is a form error."""
    value = obj.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _invalid(f"{path}.{key}" if path else key, "Must be a string.")


def _object(obj: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"{path}.{key}", "Must be an object.")
    return value


def _invalid(path: str, problem: str) -> DialectError:
    return DialectError(400, INVALID_FORM_BODY, f"Invalid Form Body: {path}: {problem}")
