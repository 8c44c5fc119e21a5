"""The SMTP listener that takes invitations mailed to the meeting addresses (iMIP, RFC 6047).

Mail to anything but `meet@<domain>` or `pin+<id>@<domain>` is refused at RCPT TO; a message is
answered 250 only once what it says is committed, and 550 with the reason when it cannot be taken
(no calendar in it, not a REQUEST or CANCEL, or sent by someone other than the event's organizer).
The sending mail server turns a 550 into a bounce, which is how the organizer is told.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from calendars.invites import InvalidCalendar
from chimebot.config import ImipConfig
from chimebot.watch import Calendars, InvitationRefused

log = logging.getLogger(__name__)
_REPLY_MAX = 400  # an SMTP reply line is at most 512 octets


def _reply(code: str, text: str) -> str:
    """One SMTP reply line with `text` made safe: a single line, not too long."""
    flat = " ".join(text.split())
    return f"{code} {flat[:_REPLY_MAX]}"


class _Handler:
    """aiosmtpd's handler: check recipients, hand each message to the calendars service."""

    def __init__(self, calendars: Calendars) -> None:
        self._calendars = calendars

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        """Accept only the meeting addresses."""
        matched, _ = self._calendars.addresses.match(address)
        if not matched:
            domain = self._calendars.addresses.domain
            return _reply(
                "550 5.1.1", f"<{address}> is not a meeting address (meet@{domain} or pin+<id>@{domain})"
            )
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Take the invitation; answer 250 once it is committed, 550 with the reason if refused."""
        data = envelope.original_content or envelope.content
        message = data if isinstance(data, bytes) else str(data).encode()
        try:
            outcome = await self._calendars.receive_imip(message)
        except InvalidCalendar as exc:
            log.info("iMIP from %s refused: %s", envelope.mail_from, exc.reason)
            return _reply("550 5.6.0", f"not a usable invitation: {exc.reason}")
        except InvitationRefused as exc:
            log.info("iMIP from %s refused: %s", envelope.mail_from, exc)
            return _reply("550 5.7.1", str(exc))
        except Exception:
            log.exception("iMIP from %s failed", envelope.mail_from)
            return "451 4.3.0 the invitation could not be stored; try again later"
        return _reply("250", f"OK: {outcome}")


class ImipListener:
    """Listens on `[imip] listen` (when set) while the server runs."""

    def __init__(self, config: ImipConfig, calendars: Calendars) -> None:
        self._config = config
        self._calendars = calendars
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int | None:
        """The port it listens on (useful when configured as port 0), or None when not listening."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Start listening, if configured."""
        if not self._config.listen or self._server is not None:
            return
        host, _, port = self._config.listen.rpartition(":")
        handler = _Handler(self._calendars)
        size = self._config.max_message_bytes

        def protocol() -> Any:
            return SMTP(handler, data_size_limit=size, hostname=self._calendars.addresses.domain)

        self._server = await asyncio.get_running_loop().create_server(protocol, host.strip("[]"), int(port))
        log.info("iMIP: listening for invitations on %s", self._config.listen)

    async def stop(self) -> None:
        """Stop listening."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
