"""Inline Markdown the dialects share: links, emphasis, safe URLs, clean text.

Every dialect turns somebody else's markup into the Markdown a room shows, so every dialect needs the
same few pieces, made the same careful way: a link only to a web or mail address, emphasis that cannot
spill over the rest of a message, a time that says its zone, and text that can be stored.
"""

from __future__ import annotations

from datetime import UTC, datetime

SAFE_SCHEMES = ("http://", "https://", "mailto:")  # the only links a message may carry


def url(value: object) -> str | None:
    """A link target safe to put in Markdown (http, https or mailto, escaped), or None for anything else."""
    if not isinstance(value, str) or not value.strip().lower().startswith(SAFE_SCHEMES):
        return None
    return value.strip().replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def link(label: str, target: object) -> str:
    """``[label](target)`` when the target is a safe URL, else the label alone (no label: the URL's own)."""
    href = url(target)
    if href is None:
        return label
    label = " ".join((label or href).split()).replace("[", "\\[").replace("]", "\\]")
    return f"[{label}]({href})"


def bold(text: str) -> str:
    """``**text**``, unless bold cannot hold it (empty, several lines, or bold already): then as written."""
    return _wrap(text, "**", forbidden=("**",))


def italic(text: str) -> str:
    """``_text_``, unless italics cannot hold it (empty, several lines, ``_`` or ``*``): then as written."""
    return _wrap(text, "_", forbidden=("_", "*"))


def strike(text: str) -> str:
    """``~~text~~``, unless a strike cannot hold it (empty, several lines, ``~~``): then as written."""
    return _wrap(text, "~~", forbidden=("~~",))


def code(text: str) -> str:
    """Inline code, its fence longer than any run of backticks inside, the spaces around it outside."""
    core = text.strip()
    if not core or "\n" in core:
        return text
    fence = "`"
    while fence in core:
        fence += "`"
    pad = " " if core.startswith("`") or core.endswith("`") else ""  # `` `a `` shows `a
    start = text.index(core)
    return f"{text[:start]}{fence}{pad}{core}{pad}{fence}{text[start + len(core) :]}"


def fact(name: str, value: str) -> str:
    """A name and its value as a list line, ``- **name**: value`` (or ``- name`` when one is missing)."""
    name = name.strip().rstrip(":")  # authors often end names with ":"; the line adds its own
    value = value.strip()
    if name and value:
        return f"- {bold(name)}: {value}"
    return f"- {name or value}" if name or value else ""


def in_utc(moment: datetime) -> datetime:
    """The moment in UTC; one without a zone is taken to be in UTC already."""
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)


def stamp(moment: datetime) -> str:
    """A moment as a reader in any zone can take it: ``2015-12-31 12:00 UTC``."""
    return f"{in_utc(moment):%Y-%m-%d %H:%M} UTC"


def clean(text: str) -> str:
    """Text that can be stored: no NUL, no unpaired surrogate (JSON escapes allow both)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _wrap(text: str, mark: str, forbidden: tuple[str, ...]) -> str:
    """Text between marks, the spaces around it kept outside (``**a **`` is not bold in Markdown)."""
    core = text.strip()
    if not core or "\n" in core or any(f in core for f in forbidden):
        return text
    start = text.index(core)
    return f"{text[:start]}{mark}{core}{mark}{text[start + len(core) :]}"
