"""Microsoft Teams incoming-webhook bodies: Office 365 connector MessageCards and Adaptive Cards.

Teams took a MessageCard (``"@type": "MessageCard"``) on its connector URLs, and an Adaptive Card
wrapped as ``{"type": "message", "attachments": [{"contentType": …adaptive, "content": card}]}`` on
them and on Power Automate workflow URLs. Both become one Markdown message; buttons that open a link
become links, the rest (forms, posts back to the sender) is named in ``Rendered.dropped``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from webhooks import markdown as md
from webhooks.message import DialectError, Rendered

SUCCESS_TEXT = "1"  # the body Teams answered a connector post with; pymsteams checks for it
ADAPTIVE_TYPE = "application/vnd.microsoft.card.adaptive"
CONNECTOR_TYPE = "application/vnd.microsoft.teams.card.o365connector"
_MAX_DEPTH = 32  # containers nest; a hostile body must not reach Python's recursion limit
# The fields a MessageCard may have; a body without "@type" counts as one only if it has no others.
_CARD_KEYS = frozenset(
    {"@type", "@context", "summary", "themeColor", "title", "text", "sections", "potentialAction"}
    | {"correlationId", "expectedActors", "originator", "hideOriginalBody"}
)
_CARD_ONLY_KEYS = ("sections", "potentialAction", "themeColor", "summary")  # never in a Slack body
_DATE_FUNCTION = re.compile(
    r"\{\{(DATE|TIME)\(\s*([^,)\s]+)\s*(?:,\s*(?:SHORT|LONG|COMPACT)\s*)?\)\}\}", re.IGNORECASE
)
_MENTION = re.compile(r"<at>(.*?)</at>", re.DOTALL)


def is_teams(data: object) -> bool:
    """Tell whether a JSON body is a Teams MessageCard or Adaptive Card (bare or wrapped)."""
    if not isinstance(data, dict):
        return False
    return data.get("type") == "AdaptiveCard" or bool(_card_attachments(data)) or _is_message_card(data)


def render(data: dict[str, Any]) -> Rendered:
    """Render a Teams card to one Markdown message, or raise DialectError (400 invalid_payload)."""
    if not isinstance(data, dict):
        raise DialectError(400, "invalid_payload", "a Teams card must be a JSON object")
    dropped: list[str] = []
    if data.get("type") == "AdaptiveCard":
        blocks = _adaptive(data, dropped, 0)
    elif attachments := _card_attachments(data):
        blocks = []
        for attachment in attachments:
            blocks += _attachment(attachment, dropped)
    else:
        blocks = _message_card(data, dropped)
    content = md.clean("\n\n".join(block for block in blocks if block))
    if not content.strip():
        found = f" (it holds only: {', '.join(dict.fromkeys(dropped))})" if dropped else ""
        hint = '; give a MessageCard a "text", "title" or "sections", or an Adaptive Card a TextBlock'
        raise DialectError(
            400, "invalid_payload", f"Summary or Text is required: the card has nothing to show{found}{hint}"
        )
    return Rendered(content, dropped=tuple(dict.fromkeys(dropped)))


def _is_message_card(data: dict[str, Any]) -> bool:
    kind, context = data.get("@type"), data.get("@context")
    if isinstance(kind, str) and kind.lower() == "messagecard":
        return True
    if isinstance(context, str) and "schema.org/extensions" in context:
        return True
    # pymsteams and other older senders leave "@type" out; Slack's {"text": …} must stay Slack's.
    return data.keys() <= _CARD_KEYS and any(key in data for key in _CARD_ONLY_KEYS)


def _card_attachments(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The attachments of a Bot Framework style message, when one of them is a card."""
    attachments = data.get("attachments")
    if data.get("type", "message") != "message" or not isinstance(attachments, list):
        return []
    cards = [a for a in attachments if isinstance(a, dict)]
    if any(a.get("contentType") in (ADAPTIVE_TYPE, CONNECTOR_TYPE) for a in cards):
        return cards
    return []  # Slack attachments never carry a contentType


def _attachment(attachment: dict[str, Any], dropped: list[str]) -> list[str]:
    kind, content = attachment.get("contentType"), attachment.get("content")
    if kind == ADAPTIVE_TYPE and isinstance(content, dict):
        return _adaptive(content, dropped, 0)
    if kind == CONNECTOR_TYPE and isinstance(content, dict):
        return _message_card(content, dropped)
    # e.g. application/vnd.microsoft.card.hero → "hero card"
    dropped.append(f"{kind.rsplit('.', 1)[-1]} card" if isinstance(kind, str) else "attachment")
    return []


def _message_card(card: dict[str, Any], dropped: list[str]) -> list[str]:
    blocks = [md.bold(_text(card.get("title"))), _text(card.get("text"))]
    for section in _list(card.get("sections")):
        if isinstance(section, dict):
            blocks += _section(section, dropped)
    blocks.append(_actions(card.get("potentialAction"), dropped))
    if not any(blocks):  # the summary is what Outlook lists; show it only when there is nothing else
        blocks.append(_text(card.get("summary")))
    return blocks


def _section(section: dict[str, Any], dropped: list[str]) -> list[str]:
    activity = [
        md.bold(_text(section.get("activityTitle"))),
        md.italic(_text(section.get("activitySubtitle"))),
        _text(section.get("activityText")),
    ]  # activityImage is the actor's avatar: decoration, left out on purpose
    images = [
        md.link(_text(image.get("title")) or "image", url)
        for image in [section.get("heroImage"), *_list(section.get("images"))]
        if isinstance(image, dict) and (url := md.url(image.get("image")))
    ]
    return [
        md.bold(_text(section.get("title"))),
        _lines(activity),
        _text(section.get("text")),
        _facts(section.get("facts"), "name", "value"),
        _lines(images),
        _actions(section.get("potentialAction"), dropped),
    ]


def _actions(actions: object, dropped: list[str]) -> str:
    """The buttons that open a link, as links on one line; the others are named in dropped."""
    links = []
    for action in _list(actions):
        if not isinstance(action, dict):
            continue
        kind = action.get("@type", action.get("type"))  # MessageCard: "@type"; Adaptive Card: "type"
        label = _adaptive_text(action.get("name", action.get("title")))
        if kind == "OpenUri":
            targets = sorted(
                (t for t in _list(action.get("targets")) if isinstance(t, dict)),
                key=lambda t: t.get("os") != "default",  # the browser's link first
            )
            url = next((u for t in targets if (u := md.url(t.get("uri")))), None)
        elif kind == "ViewAction":  # the legacy OpenUri (pymsteams' link buttons): "target": [url]
            url = md.url(next(iter(_list(action.get("target"))), None))
        elif kind == "Action.OpenUrl":
            url = md.url(action.get("url"))
        else:  # forms, posts back to the sender, ShowCard: they need the card, not a message
            dropped.append(kind if isinstance(kind, str) and kind else "action")
            continue
        if url or label:
            links.append(md.link(label, url))
    return " · ".join(links)


def _adaptive(card: dict[str, Any], dropped: list[str], depth: int) -> list[str]:
    blocks: list[str] = []
    for element in _list(card.get("body")):
        _element(element, blocks, dropped, depth + 1)
    blocks.append(_actions(card.get("actions"), dropped))
    return blocks


def _element(element: object, blocks: list[str], dropped: list[str], depth: int) -> None:
    """Append the Markdown of one Adaptive Card element (and of what it contains) to blocks."""
    if not isinstance(element, dict) or element.get("isVisible") is False:
        return  # hidden until a ToggleVisibility button shows it, which a chat message has not
    if depth > _MAX_DEPTH:
        dropped.append("deeply nested elements")
        return
    kind = element.get("type")
    if kind == "TextBlock":
        text = _adaptive_text(element.get("text"))
        if str(element.get("size", "")).lower() in ("large", "extralarge") and text and "\n" not in text:
            blocks.append(f"### {text}")
        else:
            blocks.append(md.bold(text) if str(element.get("weight", "")).lower() == "bolder" else text)
    elif kind == "RichTextBlock":
        blocks.append("".join(_text_run(run) for run in _list(element.get("inlines"))))
    elif kind == "FactSet":
        blocks.append(_facts(element.get("facts"), "title", "value"))
    elif kind in ("Container", "Column", "ColumnSet", "ImageSet"):
        for child in _list(element.get({"ColumnSet": "columns", "ImageSet": "images"}.get(kind, "items"))):
            if kind == "ColumnSet" and isinstance(child, dict) and "type" not in child:
                child = {**child, "type": "Column"}  # columns often leave their type out
            _element(child, blocks, dropped, depth + 1)
    elif kind == "Image":
        if url := md.url(element.get("url")):
            blocks.append(md.link(_adaptive_text(element.get("altText")) or "image", url))
    elif kind == "ActionSet":
        blocks.append(_actions(element.get("actions"), dropped))
    elif isinstance(element.get("fallback"), dict):  # what the card asks to show where kind is unknown
        _element(element["fallback"], blocks, dropped, depth + 1)
    elif element.get("fallback") != "drop":
        dropped.append(kind if isinstance(kind, str) and kind else "unknown element")


def _text_run(run: object) -> str:
    if not isinstance(run, dict):
        return run if isinstance(run, str) else ""
    text = _adaptive_text(run.get("text"))
    text = md.bold(text) if str(run.get("weight", "")).lower() == "bolder" else text
    text = md.italic(text) if run.get("italic") is True else text
    text = md.strike(text) if run.get("strikethrough") is True else text
    action = run.get("selectAction")
    url = (
        md.url(action.get("url"))
        if isinstance(action, dict) and action.get("type") == "Action.OpenUrl"
        else None
    )
    return md.link(text, url)


def _adaptive_text(value: object) -> str:
    """Text of an Adaptive Card, with what only Teams understands turned into plain words."""
    text = _MENTION.sub(r"@\1", _text(value))
    return _DATE_FUNCTION.sub(_date_function, text) if "{{" in text else text


def _date_function(match: re.Match[str]) -> str:
    """{{DATE(2017-02-14T06:08:39Z, SHORT)}} → 2017-02-14; {{TIME(…)}} → 06:08 UTC."""
    try:
        moment = datetime.fromisoformat(match.group(2))
        moment = md.in_utc(moment)
    except (ValueError, OverflowError):  # not a date, or one that leaves the calendar in UTC
        return match.group(0)
    return f"{moment:%Y-%m-%d}" if match.group(1).upper() == "DATE" else f"{moment:%H:%M} UTC"


def _text(value: object) -> str:
    """A text field, or "" when it is absent or not text (numbers are shown, fact values often are)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _lines(lines: Iterable[str]) -> str:
    return "\n".join(line for line in lines if line)


def _facts(facts: object, name_key: str, value_key: str) -> str:
    """Facts as "- **name**: value" lines."""
    return _lines(
        md.fact(_adaptive_text(fact.get(name_key)), _adaptive_text(fact.get(value_key)))
        for fact in _list(facts)
        if isinstance(fact, dict)
    )
