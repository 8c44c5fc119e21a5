"""Finding mentions in message text: ``@All``, ``@Present``, ``@alias`` and ``@alias@domain``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from chimebot.models import Member

# An @ that does not follow a word character or another @, so addresses inside text are not mentions.
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9._+-]+(?:@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)?)")


@dataclass(frozen=True, slots=True)
class Mentions:
    """Who a message mentions."""

    all: bool = False
    present: bool = False
    user_ids: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.all or self.present or bool(self.user_ids)

    def to_json(self) -> dict[str, object]:
        """The mentions as stored and shown."""
        return {"all": self.all, "present": self.present, "user_ids": list(self.user_ids)}


NOBODY = Mentions()


def mention_tokens(text: str) -> list[str]:
    """Return the raw names after each ``@`` that could be a mention, lower-cased."""
    return [m.group(1).rstrip(".").lower() for m in _MENTION.finditer(text)] if "@" in text else []


def broadcasts(tokens: Iterable[str]) -> tuple[bool, bool]:
    """Tell whether the tokens contain ``@All`` and ``@Present``."""
    names = set(tokens)
    return "all" in names, "present" in names


def resolve(tokens: list[str], members: Iterable[Member]) -> Mentions:
    """Match mention tokens against a room's members by address or by the address's local part."""
    mention_all, mention_present = broadcasts(tokens)
    wanted = set(tokens) - {"all", "present"}
    ids = []
    for m in members:
        local = m.email.split("@", 1)[0]
        if m.email in wanted or local in wanted:
            ids.append(m.user_id)
    return Mentions(mention_all, mention_present, tuple(ids))
