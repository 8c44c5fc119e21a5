"""Slack's Block Kit as Markdown: section, header, context, divider, image, rich_text, actions."""

from __future__ import annotations

from typing import Any

from webhooks import markdown as md
from webhooks.slack.mrkdwn import SPECIAL, items, mrkdwn, text_of, typed, unix_moment


def blocks(listed: list[Any], dropped: list[str]) -> str:
    """Render Block Kit blocks: section, header, context, divider, image, rich_text; name the rest."""
    out: list[str] = []
    for kind, block in typed(listed):
        if kind == "section":
            lines = [_text_object(block.get("text"))]
            lines += [_text_object(f) for f in items(block.get("fields"))]
            lines.append(_element(block.get("accessory"), dropped))
            out.append("\n".join(line for line in lines if line))
        elif kind == "header":
            out.append(md.bold(_text_object(block.get("text")).strip()))
        elif kind == "context":  # its images are 16-pixel icons beside the text: decoration, left out
            texts = (_text_object(e).strip() for e in items(block.get("elements")))
            out.append(md.italic(" · ".join(t for t in texts if t)))
        elif kind == "divider":
            out.append("---")
        elif kind == "image":
            title = _text_object(block.get("title")) or text_of(block.get("alt_text")) or "image"
            out.append(md.link(title, block.get("image_url")) if md.url(block.get("image_url")) else "")
        elif kind == "rich_text":
            out.append(_rich_text(block.get("elements")))
        elif kind == "markdown":  # Slack's own block of standard Markdown
            out.append(text_of(block.get("text")))
        elif kind == "actions":
            links = [_element(e, []) for e in items(block.get("elements"))]
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
        return md.link(text_of(element.get("alt_text")) or "image", element["image_url"])
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
    for kind, el in typed(elements):
        inner = items(el.get("elements"))
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


def _rich_list(el: dict[str, Any], entries: list[Any]) -> str:
    """A rich_text_list: bullets or numbers, nested by its indent (four spaces fit under any marker)."""
    indent = el.get("indent") if isinstance(el.get("indent"), int) else 0
    offset = el.get("offset") if isinstance(el.get("offset"), int) else 0
    pad = "    " * max(0, min(indent, 8))
    texts = [_runs(items(item.get("elements"))).strip("\n") for item in entries if isinstance(item, dict)]
    if el.get("style") == "ordered":
        return "\n".join(f"{pad}{n}. {t}" for n, t in enumerate(texts, max(0, offset) + 1))
    return "\n".join(f"{pad}- {t}" for t in texts)


def _runs(elements: list[Any], *, styled: bool = True) -> str:
    """The inline elements of a rich-text section."""
    text: list[str] = []
    for kind, el in typed(elements):
        if kind == "text":
            run = text_of(el.get("text"))
        elif kind == "link":
            run = md.link(text_of(el.get("text")), el.get("url")) or text_of(el.get("url"))
        elif kind == "user":
            run = f"@{text_of(el.get('user_id'))}"
        elif kind == "usergroup":
            run = f"@{text_of(el.get('usergroup_id'))}"
        elif kind == "channel":
            run = f"#{text_of(el.get('channel_id'))}"
        elif kind == "broadcast":
            run = SPECIAL.get(text_of(el.get("range")), "")
        elif kind == "emoji":
            run = _emoji(el.get("unicode")) or f":{text_of(el.get('name'))}:"
        elif kind == "date":
            moment = unix_moment(el.get("timestamp"))
            run = md.link(text_of(el.get("fallback")) or (md.stamp(moment) if moment else ""), el.get("url"))
        elif kind == "color":
            run = text_of(el.get("value"))
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
