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

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from webhooks import markdown as md
from webhooks.message import DialectError, Rendered

SUCCESS = "ok"
MAX_ATTACHMENTS = 100  # Slack refuses more with too_many_attachments
MAX_USERNAME = 64
_CONTROL = re.compile(r"<([^<>\n]*)>")
_CODE = re.compile(r"```.+?```|`[^`\n]+`", re.DOTALL)
_FENCED = re.compile(r"```[\w+#.-]*\n.*\n```", re.DOTALL)  # already a Markdown fenced block
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,31}:\S*")  # what Markdown would autolink in <…>
# A bare @channel or @here, as Mattermost senders write them (not an address's @here.example).
_BROADCAST = re.compile(r"(?<![\w@])@(channel|here)(?![\w@+-]|\.\w)")
_BOLD = re.compile(r"(?<![\w*])\*([^*\s](?:[^*\n]*[^*\s])?)\*(?![\w*])")
_STRIKE = re.compile(r"(?<![\w~])~([^~\s](?:[^~\n]*[^~\s])?)~(?![\w~])")
_SPECIAL = {"channel": "@All", "everyone": "@All", "group": "@All", "all": "@All", "here": "@Present"}
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
    content = md.clean("\n\n".join(p.strip("\n") for p in parts if p.strip())).strip()
    dropped = list(dict.fromkeys(dropped))
    if not content:
        held = f" (it holds only: {', '.join(dropped)})" if dropped else ""
        raise DialectError(400, "no_text", f"nothing to post: send `text`, `attachments` or `blocks`{held}")
    return Rendered(content, username=_username(data), channel=_channel(data), dropped=tuple(dropped))


def mrkdwn(text: str, *, emphasis: bool = False) -> str:
    """Slack's mrkdwn (or Mattermost's Markdown) as Markdown: links, mentions, dates and code fences.

    ``&amp; &lt; &gt;`` are unescaped once. With ``emphasis`` (text Slack alone sends), Slack's
    ``*bold*`` and ``~strike~`` become Markdown's ``**bold**`` and ``~~strike~~`` as well.
    """
    if not text:
        return ""
    out: list[str] = []
    last = 0
    for match in _CODE.finditer(text):
        out.append(_prose(text[last : match.start()], emphasis))
        span = _unescape(match.group(0))
        if span.startswith("```") and not _FENCED.fullmatch(span):
            # Slack's ```code``` may share its lines with text; a Markdown fence needs lines of its own.
            before = "\n" if match.start() and text[match.start() - 1] != "\n" else ""
            after = "\n" if match.end() < len(text) and text[match.end()] != "\n" else ""
            span = f"{before}```\n{span[3:-3].strip(chr(10))}\n```{after}"
        out.append(span)
        last = match.end()
    out.append(_prose(text[last:], emphasis))
    return "".join(out)


def _prose(text: str, emphasis: bool) -> str:
    """Text outside code: broadcasts, emphasis, then control sequences, each piece unescaped once."""
    text = _BROADCAST.sub(lambda m: _SPECIAL[m.group(1)], text)
    if emphasis:
        text = _STRIKE.sub(r"~~\1~~", _BOLD.sub(r"**\1**", text))
    out: list[str] = []
    last = 0
    for match in _CONTROL.finditer(text):
        out.append(_unescape(text[last : match.start()]))
        out.append(_control(match.group(1), match.group(0)))
        last = match.end()
    out.append(_unescape(text[last:]))
    return "".join(out)


def _control(inner: str, whole: str) -> str:
    """One ``<…>`` control sequence: a link, a mention, a broadcast or a date."""
    target, _, label = inner.partition("|")
    label = _unescape(label)
    if target.startswith("!"):
        command, *args = target[1:].split("^")
        if command in _SPECIAL:
            return _SPECIAL[command]
        if command == "date":  # <!date^1392734382^{date_num}^optional_link|fallback>
            return _date(args, label)
        if command == "subteam" and not label and args and args[0]:
            return f"@{args[0]}"  # <!subteam^ID>: the group's name is Slack's to know
        return label
    if target.startswith("@"):
        return "@" + (label or target[1:]).lstrip("@")
    if target.startswith("#"):
        return "#" + (label or target[1:]).lstrip("#")
    target = _unescape(target)
    href = md.url(target)
    if href and label:
        return md.link(label, href)
    if href:
        return f"<{href}>"
    if label:
        return label  # <example.com|Fred>, <javascript:…|x>: no safe link, so the words alone
    # `<javascript:x>` would be an autolink in Markdown: keep the words, not the brackets.
    return target if _SCHEME.fullmatch(target) else _unescape(whole)


def _date(args: list[str], fallback: str) -> str:
    """``<!date^…>``: its fallback text (which the sender wrote for readers anywhere), linked if asked."""
    text = fallback
    if not text and args:
        moment = _moment(args[0])
        text = md.stamp(moment) if moment else ""
    return md.link(text, args[2]) if len(args) > 2 and text else text


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DialectError(400, "invalid_payload", f"`{key}` must be a string")
    return value


def _text(value: object) -> str:
    """A text field ("" when absent or not text); numbers are shown, Mattermost's field values often are."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    return ""


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _typed(items: object) -> Iterator[tuple[object, dict[str, Any]]]:
    """The objects of a JSON array, each with its "type"; what is not an object is skipped."""
    return ((item.get("type"), item) for item in _list(items) if isinstance(item, dict))


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


def _moment(value: object) -> datetime | None:
    """A Unix timestamp (a number, or digits as text) as a moment, or None when it is none."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", value.strip()):
        value = float(value)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):  # before year 1 or after 9999
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
    for f in _list(att.get("fields")):
        if isinstance(f, dict):  # the title "cannot contain markup"; the value is mrkdwn
            body.append(md.fact(_text(f.get("title")), mrkdwn(_text(f.get("value")))))
    body.append(_blocks(_list(att.get("blocks")), dropped))
    for key, label in (("image_url", "image"), ("thumb_url", "thumbnail")):
        if md.url(att.get(key)):
            body.append(md.link(label, att[key]))
    footer = text("footer")
    if moment := _moment(att.get("ts")):
        footer = f"{footer} · {md.stamp(moment)}" if footer else md.stamp(moment)
    if footer:
        body.append(md.italic(footer))
    body.append(_buttons(_list(att.get("actions")), dropped))
    body = [line for line in body if line]
    if not body and not lines and isinstance(att.get("fallback"), str):
        return mrkdwn(att["fallback"])
    return "\n".join(lines + body)


def _buttons(actions: list[Any], dropped: list[str]) -> str:
    """An attachment's buttons: those that open a web page as links, the others named in dropped."""
    links = []
    for action in actions:
        label = _text(action.get("text") or action.get("name")) if isinstance(action, dict) else ""
        if isinstance(action, dict) and md.url(action.get("url")):
            links.append(md.link(label, action["url"]))
        else:
            dropped.append("buttons")
    return " · ".join(links)


def _blocks(blocks: list[Any], dropped: list[str]) -> str:
    """Render Block Kit blocks: section, header, context, divider, image, rich_text; name the rest."""
    out: list[str] = []
    for kind, block in _typed(blocks):
        if kind == "section":
            lines = [_text_object(block.get("text"))]
            lines += [_text_object(f) for f in _list(block.get("fields"))]
            lines.append(_element(block.get("accessory"), dropped))
            out.append("\n".join(line for line in lines if line))
        elif kind == "header":
            out.append(md.bold(_text_object(block.get("text")).strip()))
        elif kind == "context":  # its images are 16-pixel icons beside the text: decoration, left out
            texts = (_text_object(e).strip() for e in _list(block.get("elements")))
            out.append(md.italic(" · ".join(t for t in texts if t)))
        elif kind == "divider":
            out.append("---")
        elif kind == "image":
            title = _text_object(block.get("title")) or _text(block.get("alt_text")) or "image"
            out.append(md.link(title, block.get("image_url")) if md.url(block.get("image_url")) else "")
        elif kind == "rich_text":
            out.append(_rich_text(block.get("elements")))
        elif kind == "markdown":  # Slack's own block of standard Markdown
            out.append(_text(block.get("text")))
        elif kind == "actions":
            links = [_element(e, []) for e in _list(block.get("elements"))]
            if not all(links):
                dropped.append("actions block")  # menus, pickers, buttons that call the sender back
            out.append(" · ".join(link for link in links if link))
        else:
            dropped.append(f"{kind} block" if isinstance(kind, str) and kind else "block")
    return _between_dividers(out)


def _between_dividers(parts: list[str]) -> str:
    """Join blocks; a divider shows only between two blocks that show something."""
    kept: list[str] = []
    for part in (p.strip("\n") for p in parts if p.strip()):
        if part == "---" and (not kept or kept[-1] == "---"):
            continue
        kept.append(part)
    while kept and kept[-1] == "---":
        kept.pop()
    return "\n\n".join(kept)


def _element(element: object, dropped: list[str]) -> str:
    """A block element beside text (an accessory, or in an actions block): images and link buttons show."""
    if not isinstance(element, dict):
        return ""
    kind = element.get("type")
    if kind == "image" and md.url(element.get("image_url")):
        return md.link(_text(element.get("alt_text")) or "image", element["image_url"])
    if kind == "button" and md.url(element.get("url")):
        return md.link(_text_object(element.get("text")), element["url"])
    dropped.append(kind if isinstance(kind, str) and kind else "accessory")
    return ""


def _text_object(obj: Any) -> str:
    """A Block Kit text object (plain_text or mrkdwn) as Markdown."""
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return ""
    return mrkdwn(obj["text"], emphasis=True) if obj.get("type") == "mrkdwn" else obj["text"]


def _rich_text(elements: object) -> str:
    """A rich_text block's sections, lists, quotes and preformatted runs."""
    out: list[tuple[object, str]] = []
    for kind, el in _typed(elements):
        inner = _list(el.get("elements"))
        if kind == "rich_text_section":
            out.append((kind, _runs(inner)))
        elif kind == "rich_text_list":
            out.append((kind, _rich_list(el, inner)))
        elif kind == "rich_text_quote":
            out.append((kind, "\n".join(f"> {line}" for line in _runs(inner).strip("\n").splitlines())))
        elif kind == "rich_text_preformatted":
            text = _runs(inner, styled=False).strip("\n")
            fence = "````" if "```" in text else "```"
            out.append((kind, f"{fence}\n{text}\n{fence}"))
    text = ""
    for i, (kind, part) in enumerate(out):
        if part.strip():
            # Lists that follow each other are one list (a nested one has an indent); else a new paragraph.
            same_list = i and kind == out[i - 1][0] == "rich_text_list"
            text += ("\n" if same_list else "\n\n") if text else ""
            text += part.strip("\n")
    return text


def _rich_list(el: dict[str, Any], items: list[Any]) -> str:
    """A rich_text_list: bullets or numbers, nested by its indent (four spaces fit under any marker)."""
    indent = el.get("indent") if isinstance(el.get("indent"), int) else 0
    offset = el.get("offset") if isinstance(el.get("offset"), int) else 0
    pad = "    " * max(0, min(indent, 8))
    texts = [_runs(_list(item.get("elements"))).strip("\n") for item in items if isinstance(item, dict)]
    if el.get("style") == "ordered":
        return "\n".join(f"{pad}{n}. {t}" for n, t in enumerate(texts, max(0, offset) + 1))
    return "\n".join(f"{pad}- {t}" for t in texts)


def _runs(elements: list[Any], *, styled: bool = True) -> str:
    """The inline elements of a rich-text section."""
    text: list[str] = []
    for kind, el in _typed(elements):
        if kind == "text":
            run = _text(el.get("text"))
        elif kind == "link":
            run = md.link(_text(el.get("text")), el.get("url")) or _text(el.get("url"))
        elif kind == "user":
            run = f"@{_text(el.get('user_id'))}"
        elif kind == "usergroup":
            run = f"@{_text(el.get('usergroup_id'))}"
        elif kind == "channel":
            run = f"#{_text(el.get('channel_id'))}"
        elif kind == "broadcast":
            run = _SPECIAL.get(_text(el.get("range")), "")
        elif kind == "emoji":
            run = _emoji(el.get("unicode")) or f":{_text(el.get('name'))}:"
        elif kind == "date":
            moment = _moment(el.get("timestamp"))
            run = md.link(_text(el.get("fallback")) or (md.stamp(moment) if moment else ""), el.get("url"))
        elif kind == "color":
            run = _text(el.get("value"))
        else:
            continue
        style = el.get("style")
        text.append(_styled(run, style) if styled and isinstance(style, dict) else run)
    return "".join(text)


def _styled(run: str, style: dict[str, Any]) -> str:
    """A run with its rich-text style: code, italic, bold, strike (inside out, so each one nests)."""
    if style.get("code"):
        run = md.code(run)
    if style.get("italic"):
        run = md.italic(run)
    if style.get("bold"):
        run = md.bold(run)
    if style.get("strike"):
        run = md.strike(run)
    return run


def _emoji(code: object) -> str:
    """Slack's emoji code points ("1f44d" or "1f468-200d-1f4bb") as the character."""
    if not isinstance(code, str) or not code:
        return ""
    try:
        return "".join(chr(int(point, 16)) for point in code.split("-"))
    except (ValueError, OverflowError):
        return ""
