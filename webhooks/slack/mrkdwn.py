"""Slack's mrkdwn as Markdown, and the readers of loosely typed JSON values the Slack dialect shares."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from webhooks import markdown as md

_CONTROL = re.compile(r"<([^<>\n]*)>")
_CODE = re.compile(r"```.+?```|`[^`\n]+`", re.DOTALL)
_FENCED = re.compile(r"```[\w+#.-]*\n.*\n```", re.DOTALL)  # already a Markdown fenced block
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,31}:\S*")  # what Markdown would autolink in <…>
# A bare @channel or @here, as Mattermost senders write them (not an address's @here.example).
_BROADCAST = re.compile(r"(?<![\w@])@(channel|here)(?![\w@+-]|\.\w)")
_BOLD = re.compile(r"(?<![\w*])\*([^*\s](?:[^*\n]*[^*\s])?)\*(?![\w*])")
_STRIKE = re.compile(r"(?<![\w~])~([^~\s](?:[^~\n]*[^~\s])?)~(?![\w~])")
# Text without these characters has nothing to convert (most field values and titles): returned as is.
_MARKUP = re.compile(r"[<&@`]")
_EMPHASIS = re.compile(r"[<&@`*~]")
SPECIAL = {"channel": "@All", "everyone": "@All", "group": "@All", "all": "@All", "here": "@Present"}


def mrkdwn(text: str, *, emphasis: bool = False) -> str:
    """Slack's mrkdwn (or Mattermost's Markdown) as Markdown: links, mentions, dates and code fences.

    ``&amp; &lt; &gt;`` are unescaped once. With ``emphasis`` (text Slack alone sends), Slack's
    ``*bold*`` and ``~strike~`` become Markdown's ``**bold**`` and ``~~strike~~`` as well.
    """
    if not (_EMPHASIS if emphasis else _MARKUP).search(text):
        return text
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
    text = _BROADCAST.sub(lambda m: SPECIAL[m.group(1)], text)
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
        if command in SPECIAL:
            return SPECIAL[command]
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
        moment = unix_moment(args[0])
        text = md.stamp(moment) if moment else ""
    return md.link(text, args[2]) if len(args) > 2 and text else text


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def text_of(value: object) -> str:
    """A text field ("" when absent or not text); numbers are shown, Mattermost's field values often are."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    return ""


def items(value: object) -> list[Any]:
    """A JSON array, or an empty one when the value is not an array."""
    return value if isinstance(value, list) else []


def typed(array: object) -> Iterator[tuple[object, dict[str, Any]]]:
    """The objects of a JSON array, each with its "type"; what is not an object is skipped."""
    return ((item.get("type"), item) for item in items(array) if isinstance(item, dict))


def unix_moment(value: object) -> datetime | None:
    """A Unix timestamp (a number, or digits as text) as a moment, or None when it is none."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", value.strip()):
        value = float(value)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):  # before year 1 or after 9999
        return None
