"""The URLs bots answer through: ``/bots/inbound/<bot>/<room>?token=…`` (and ``&expires=…``).

Chime handed a bot a persistent URL with each ``Invite`` and a short-lived one (2 minutes) with
each ``Mention``. Here both are signed rather than stored: the token is an HMAC, under a key the
server keeps in its database, of the bot, the room and the expiry. Nothing is written per event,
every node can check any URL, and a persistent URL stops working when the bot leaves the room
(checked when it is used).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

SHORT_LIVED_FOR = timedelta(minutes=2)


class EndpointRefused(Exception):
    """A reply URL that is not one the server gave out, or has expired."""


@dataclass(frozen=True, slots=True)
class InboundEndpoints:
    """Makes and checks the reply URLs of bots."""

    key: bytes
    base_url: str

    def url(self, bot: str, room_id: str, *, expires: datetime | None = None) -> str:
        """The reply URL for a bot in a room: persistent, or valid until ``expires``."""
        until = int(expires.timestamp()) if expires is not None else None
        query = {"token": self._token(bot, room_id, until)}
        if until is not None:
            query["expires"] = str(until)
        return f"{self.base_url}/bots/inbound/{quote(bot)}/{quote(room_id)}?{urlencode(query)}"

    def short_lived(self, bot: str, room_id: str, now: datetime) -> str:
        """A reply URL valid for two minutes from now."""
        return self.url(bot, room_id, expires=now + SHORT_LIVED_FOR)

    def check(self, bot: str, room_id: str, token: str, expires: str | None, now: datetime) -> None:
        """Raise EndpointRefused unless the token was made for this bot and room and is still valid."""
        until: int | None = None
        if expires is not None:
            if not expires.isdigit() or len(expires) > 12:
                raise EndpointRefused("this reply URL is not one the server gave out")
            until = int(expires)
        if not hmac.compare_digest(
            token.encode("utf-8", "replace"), self._token(bot, room_id, until).encode()
        ):
            raise EndpointRefused("this reply URL is not one the server gave out")
        if until is not None and now.timestamp() > until:
            raise EndpointRefused("this reply URL has expired (short-lived URLs last 2 minutes)")

    def _token(self, bot: str, room_id: str, until: int | None) -> str:
        message = f"{bot}|{room_id}|{'' if until is None else until}".encode()
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
