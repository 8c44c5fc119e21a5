"""The Slack and Mattermost incoming-webhook dialect: ``POST /hooks/{token}``.

Both take ``text`` (Slack's mrkdwn, Mattermost's Markdown), ``username``, ``icon_url``/``icon_emoji``,
``channel`` and ``attachments``; Slack adds ``blocks``, Mattermost ``props`` (which may hold the
attachments). Everything becomes one Markdown message: Slack's link syntax ``<url|text>`` becomes
``[text](url)``, ``<!channel>``/``<!everyone>`` ``@All`` and ``<!here>`` ``@Present``. Emphasis is
left alone, because the same path serves Mattermost, whose ``*x*`` means what Markdown says.
Success is ``200 ok`` in text/plain, and errors are Slack's names (``invalid_payload``, ``no_text``…).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from webhooks.message import DialectError, Rendered

SUCCESS = "ok"
MAX_ATTACHMENTS = 100  # Slack refuses more with too_many_attachments
MAX_USERNAME = 64
_CONTROL = re.compile(r"<([^<>\n]*)>")
_SPECIAL = {"channel": "@All", "everyone": "@All", "group": "@All", "here": "@Present"}
_COLORS = {"good": "🟢", "warning": "🟠", "danger": "🔴"}  # Slack's named attachment colors
_TEXT_KEYS = ("text", "attachments", "blocks")


def looks_like(data: object) -> bool:
    """Tell whether a JSON value is shaped like a Slack or Mattermost webhook body."""
    if not isinstance(data, dict):
        return False
    props = data.get("props")
    return any(k in data for k in _TEXT_KEYS) or (isinstance(props, dict) and "attachments" in props)


def render(data: Any) -> Rendered:
    """Render a Slack/Mattermost body to Markdown, or raise DialectError with Slack's error name."""
    if not isinstance(data, dict):
        raise DialectError(400, "invalid_payload", 'the body must be a JSON object like {"text": "…"}')
    dropped: list[str] = []
    text = _string(data, "text")
    attachments = data.get("attachments")
    props = data.get("props")
    if attachments is None and isinstance(props, dict):
        attachments = props.get("attachments")  # Mattermost also takes them here
    parts: list[str] = []
    blocks = data.get("blocks")
    if blocks is not None:
        if not isinstance(blocks, list):
            raise DialectError(400, "invalid_blocks", "`blocks` must be an array of block objects")
        rendered = _blocks(blocks, dropped)
        # Slack shows blocks and keeps `text` for notifications; without renderable blocks, show text.
        parts.append(rendered or mrkdwn(text))
    else:
        parts.append(mrkdwn(text))
    if attachments is not None:
        if not isinstance(attachments, list):
            raise DialectError(400, "invalid_attachments", "`attachments` must be an array of objects")
        if len(attachments) > MAX_ATTACHMENTS:
            raise DialectError(
                400, "too_many_attachments", f"at most {MAX_ATTACHMENTS} attachments; got {len(attachments)}"
            )
        parts.extend(_attachment(a, dropped) for a in attachments if isinstance(a, dict))
    content = "\n\n".join(p for p in parts if p.strip()).strip()
    if not content:
        raise DialectError(400, "no_text", "nothing to post: send `text`, `attachments` or `blocks`")
    return Rendered(content, _username(data), _channel(data), tuple(dict.fromkeys(dropped)))


def mrkdwn(text: str) -> str:
    """Turn Slack's control sequences (links, mentions, dates) into Markdown; unescape &amp; &lt; &gt;."""
    return _unescape(_CONTROL.sub(_control, text)) if text else ""


def _control(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("!"):
        command = target[1:].split("^", 1)[0]
        if command in _SPECIAL:
            return _SPECIAL[command]
        return label  # <!date^…|fallback>, <!subteam^ID|@team>: the fallback text
    if target.startswith("@"):
        return "@" + (label or target[1:]).lstrip("@")
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if not target:
        return match.group(0)
    if label:
        return f"[{_unescape(label)}]({target})"
    return f"<{target}>" if "://" in target or target.startswith("mailto:") else match.group(0)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DialectError(400, "invalid_payload", f"`{key}` must be a string")
    return value


def _username(data: dict[str, Any]) -> str | None:
    name = data.get("username")
    if isinstance(name, str) and name.strip():
        return name.strip()[:MAX_USERNAME]
    return None


def _channel(data: dict[str, Any]) -> str | None:
    channel = data.get("channel")
    if isinstance(channel, str) and channel.strip():
        return channel.strip()
    return None


def _link(label: str, url: Any) -> str:
    return f"[{label}]({url})" if isinstance(url, str) and url else label


def _attachment(att: dict[str, Any], dropped: list[str]) -> str:
    """One attachment: pretext, author, title, text, fields, image, footer; or its fallback alone."""
    text = lambda key: mrkdwn(att[key]) if isinstance(att.get(key), str) else ""  # noqa: E731
    lines: list[str] = []
    if pretext := text("pretext"):
        lines.append(pretext)
    body: list[str] = []
    if author := text("author_name"):
        body.append(f"_{_link(author, att.get('author_link'))}_")
    if title := text("title"):
        mark = _COLORS.get(att.get("color", "")) if isinstance(att.get("color"), str) else None
        body.append(f"{mark + ' ' if mark else ''}**{_link(title, att.get('title_link'))}**")
    if main := text("text"):
        body.append(main)
    fields = att.get("fields")
    if isinstance(fields, list):
        for f in fields:
            if isinstance(f, dict) and (f.get("title") or f.get("value")):
                name, value = str(f.get("title") or "").strip(), mrkdwn(str(f.get("value") or ""))
                body.append(f"- **{name}**: {value}" if name else f"- {value}")
    for key, label in (("image_url", "image"), ("thumb_url", "thumbnail")):
        if isinstance(att.get(key), str) and att[key]:
            body.append(_link(label, att[key]))
    footer = text("footer")
    ts = att.get("ts")
    if isinstance(ts, int | float | str) and str(ts).replace(".", "", 1).isdigit():
        stamp = datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")
        footer = f"{footer} · {stamp}" if footer else stamp
    if footer:
        body.append(f"_{footer}_")
    if att.get("actions"):
        dropped.append("buttons")
    if not body and not lines and isinstance(att.get("fallback"), str):
        return mrkdwn(att["fallback"])
    return "\n".join(lines + body)


def _blocks(blocks: list[Any], dropped: list[str]) -> str:
    """Render Block Kit blocks: section, header, context, divider, image, rich_text; name the rest."""
    out: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "section":
            lines = [_text_object(block.get("text"))]
            for f in block.get("fields") or ():
                lines.append(_text_object(f))
            accessory = block.get("accessory")
            if isinstance(accessory, dict):
                if accessory.get("type") == "image":
                    lines.append(_link(str(accessory.get("alt_text") or "image"), accessory.get("image_url")))
                else:
                    dropped.append(str(accessory.get("type") or "accessory"))
            out.append("\n".join(line for line in lines if line))
        elif kind == "header":
            out.append(f"**{_text_object(block.get('text'))}**")
        elif kind == "context":
            texts = [
                _text_object(e) if e.get("type") != "image" else str(e.get("alt_text") or "")
                for e in block.get("elements") or ()
                if isinstance(e, dict)
            ]
            out.append("_" + " · ".join(t for t in texts if t) + "_" if any(texts) else "")
        elif kind == "divider":
            out.append("---")
        elif kind == "image":
            title = _text_object(block.get("title")) or str(block.get("alt_text") or "image")
            out.append(_link(title, block.get("image_url")))
        elif kind == "rich_text":
            out.append(_rich_text(block.get("elements") or ()))
        else:
            dropped.append(f"{kind} block" if isinstance(kind, str) else "block")
    return "\n\n".join(part for part in out if part.strip())


def _text_object(obj: Any) -> str:
    """A Block Kit text object (plain_text or mrkdwn) as Markdown."""
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return ""
    return mrkdwn(obj["text"]) if obj.get("type") == "mrkdwn" else obj["text"]


def _rich_text(elements: Any) -> str:
    """A rich_text block's sections, lists, quotes and preformatted runs."""
    out: list[str] = []
    for el in elements if isinstance(elements, list) else ():
        if not isinstance(el, dict):
            continue
        kind, inner = el.get("type"), el.get("elements") or ()
        if kind == "rich_text_section":
            out.append(_runs(inner))
        elif kind == "rich_text_list":
            ordered = el.get("style") == "ordered"
            items = [_runs(item.get("elements") or ()) for item in inner if isinstance(item, dict)]
            out.append("\n".join(f"{i}. {t}" if ordered else f"- {t}" for i, t in enumerate(items, 1)))
        elif kind == "rich_text_quote":
            out.append("\n".join(f"> {line}" for line in _runs(inner).splitlines()))
        elif kind == "rich_text_preformatted":
            out.append(f"```\n{_runs(inner)}\n```")
    return "\n".join(part for part in out if part)


def _runs(elements: Any) -> str:
    """The inline elements of a rich-text section."""
    text: list[str] = []
    for el in elements if isinstance(elements, list) else ():
        if not isinstance(el, dict):
            continue
        kind = el.get("type")
        if kind == "text":
            run, style = str(el.get("text") or ""), el.get("style") or {}
            if isinstance(style, dict) and run.strip():
                if style.get("code"):
                    run = f"`{run}`"
                if style.get("bold"):
                    run = f"**{run}**"
                if style.get("italic"):
                    run = f"_{run}_"
                if style.get("strike"):
                    run = f"~~{run}~~"
            text.append(run)
        elif kind == "link":
            text.append(_link(str(el.get("text") or el.get("url") or ""), el.get("url")))
        elif kind == "user":
            text.append(f"@{el.get('user_id', '')}")
        elif kind == "channel":
            text.append(f"#{el.get('channel_id', '')}")
        elif kind == "broadcast":
            text.append(_SPECIAL.get(str(el.get("range")), ""))
        elif kind == "emoji":
            text.append(str((el.get("unicode") and _emoji(el["unicode"])) or f":{el.get('name', '')}:"))
    return "".join(text)


def _emoji(code: str) -> str:
    """Slack's emoji code points ("1f44d" or "1f468-200d-1f4bb") as the character."""
    try:
        return "".join(chr(int(point, 16)) for point in str(code).split("-"))
    except (ValueError, OverflowError):
        return ""
