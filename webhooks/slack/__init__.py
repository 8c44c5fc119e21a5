"""The Slack and Mattermost incoming-webhook dialect: ``POST /hooks/{token}``.

Both take ``text`` (Slack's mrkdwn, Mattermost's Markdown), ``username``, ``icon_url``/``icon_emoji``,
``channel`` and ``attachments``; Slack adds ``blocks``, Mattermost ``props`` (which may hold the
attachments). Everything becomes one Markdown message: Slack's link syntax ``<url|text>`` becomes
``[text](url)`` (web and mail links only), ``<!channel>``/``<!everyone>``/``<!all>`` and a bare
``@channel`` become ``@All``, ``<!here>`` and ``@here`` ``@Present``, and Slack's one-line code blocks
get fences of their own. Emphasis in ``text`` and attachments is left alone, because the same path
serves Mattermost, whose ``*x*`` means what Markdown says; in Block Kit, which only Slack sends,
``*bold*`` and ``~strike~`` are Slack's and become Markdown's. Link buttons become links; the rest
(menus, date pickers, inputs) is named in ``Rendered.dropped``.
Success is ``200 ok`` in text/plain, and errors are Slack's names (``invalid_payload``, ``no_text``…).
"""

from __future__ import annotations

from typing import Any

from webhooks import markdown as md
from webhooks.message import DialectError, Rendered
from webhooks.slack.blocks import blocks
from webhooks.slack.mrkdwn import items, mrkdwn, text_of, unix_moment

SUCCESS = "ok"
MAX_ATTACHMENTS = 100  # Slack refuses more with too_many_attachments
MAX_USERNAME = 64
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
    listed = data.get("blocks")
    if listed is not None:
        if not isinstance(listed, list):
            raise DialectError(400, "invalid_blocks", "`blocks` must be an array of block objects")
        rendered = blocks(listed, dropped)
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
    content = md.clean("\n\n".join(p.strip("\n") for p in parts if p.strip())).strip()
    dropped = list(dict.fromkeys(dropped))
    if not content:
        held = f" (it holds only: {', '.join(dropped)})" if dropped else ""
        raise DialectError(400, "no_text", f"nothing to post: send `text`, `attachments` or `blocks`{held}")
    return Rendered(content, username=_username(data), channel=_channel(data), dropped=tuple(dropped))


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DialectError(400, "invalid_payload", f"`{key}` must be a string")
    return value


def _username(data: dict[str, Any]) -> str | None:
    name = data.get("username")
    if isinstance(name, str) and (name := md.clean(name).strip()):
        return name[:MAX_USERNAME]
    return None


def _channel(data: dict[str, Any]) -> str | None:
    channel = data.get("channel")
    if isinstance(channel, str) and (channel := md.clean(channel).strip()):
        return channel
    return None


def _attachment(att: dict[str, Any], dropped: list[str]) -> str:
    """One attachment: pretext, author, title, text, fields, blocks, image, footer; or its fallback alone."""
    text = lambda key: mrkdwn(att[key]).strip() if isinstance(att.get(key), str) else ""  # noqa: E731
    lines: list[str] = []
    if pretext := text("pretext"):
        lines.append(pretext)
    body: list[str] = []
    if author := text("author_name"):
        body.append(md.italic(md.link(author, att.get("author_link"))))
    if title := text("title"):
        mark = _COLORS.get(att["color"]) if isinstance(att.get("color"), str) else None
        body.append(f"{mark + ' ' if mark else ''}{md.bold(md.link(title, att.get('title_link')))}")
    if main := text("text"):
        body.append(main)
    for f in items(att.get("fields")):
        if isinstance(f, dict):  # the title "cannot contain markup"; the value is mrkdwn
            body.append(md.fact(text_of(f.get("title")), mrkdwn(text_of(f.get("value")))))
    body.append(blocks(items(att.get("blocks")), dropped))
    for key, label in (("image_url", "image"), ("thumb_url", "thumbnail")):
        if md.url(att.get(key)):
            body.append(md.link(label, att[key]))
    footer = text("footer")
    if moment := unix_moment(att.get("ts")):
        footer = f"{footer} · {md.stamp(moment)}" if footer else md.stamp(moment)
    if footer:
        body.append(md.italic(footer))
    body.append(_buttons(items(att.get("actions")), dropped))
    body = [line for line in body if line]
    if not body and not lines and isinstance(att.get("fallback"), str):
        return mrkdwn(att["fallback"])
    return "\n".join(lines + body)


def _buttons(actions: list[Any], dropped: list[str]) -> str:
    """An attachment's buttons: those that open a web page as links, the others named in dropped."""
    links = []
    for action in actions:
        label = text_of(action.get("text") or action.get("name")) if isinstance(action, dict) else ""
        if isinstance(action, dict) and md.url(action.get("url")):
            links.append(md.link(label, action["url"]))
        else:
            dropped.append("buttons")
    return " · ".join(links)


__all__ = ["MAX_ATTACHMENTS", "MAX_USERNAME", "SUCCESS", "looks_like", "mrkdwn", "render"]
