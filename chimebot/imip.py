"""Invitations mailed to the meeting addresses (iMIP, RFC 6047): the inbox and its SMTP listener.

Mail to anything but `meet@<domain>` or `pin+<id>@<domain>` is refused at RCPT TO; a message is
answered 250 only once what it says is committed, and 550 with the reason when it cannot be taken
(no calendar in it, not a REQUEST or CANCEL, or sent by someone other than the event's organizer).
The sending mail server turns a 550 into a bounce, which is how the organizer is told.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
from collections.abc import Sequence
from datetime import datetime
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from calendars.invites import InvalidCalendar, MeetingOccurrence, interpret, read_imip
from chimebot.clock import Clock
from chimebot.config import IMIP_SOURCE, Config
from chimebot.scheduler import Scheduler
from chimebot.store import Store
from chimebot.store import calendars as qc
from chimebot.store import occurrences as qo
from chimebot.watch import REWINDOW, Calendars, unreadable

log = logging.getLogger(__name__)
_REPLY_MAX = 400  # an SMTP reply line is at most 512 octets


def _reply(code: str, text: str) -> str:
    """One SMTP reply line with `text` made safe: a single line, not too long."""
    flat = " ".join(text.split())
    return f"{code} {flat[:_REPLY_MAX]}"


def _from_header(message: bytes) -> str | None:
    """The address in a message's From header, if it has one."""
    value = BytesHeaderParser(policy=email.policy.default).parsebytes(message).get("From")
    address = parseaddr(str(value))[1] if value else ""
    return address or None


class InvitationRefused(Exception):
    """An iMIP message that is not taken, with the reason to give its sender."""


class ImipInbox:
    """Mailed invitations → occurrences of the source ``imip``; the whole event is kept, so that a
    mailed series is read further ahead as time passes (``refresh``)."""

    def __init__(
        self, config: Config, store: Store, scheduler: Scheduler, clock: Clock, calendars: Calendars
    ) -> None:
        self._config = config
        self._store = store
        self._scheduler = scheduler
        self._clock = clock
        self._calendars = calendars
        self._lock = asyncio.Lock()  # one mail at a time: the organizer check reads what the last one wrote

    async def receive(self, message: bytes, mail_from: str | None = None) -> str:
        """Take an iMIP REQUEST or CANCEL mailed to a meeting address; return what was done.

        Raises InvitationRefused (or InvalidCalendar) with the reason for the sender.
        """
        start, end = self._calendars.window()
        try:  # parsing and expanding a series is CPU work: in a thread, requests keep being served
            invite = await asyncio.to_thread(
                read_imip,
                message,
                self._calendars.addresses,
                start=start,
                end=end,
                default_zone=self._config.imip.time_zone,
            )
        except InvalidCalendar:
            raise
        except Exception as exc:  # a malformed calendar gets an answer, not a 451 retried for days
            raise InvalidCalendar(unreadable(exc)) from None
        # Only the organizer's own mail is taken (the header From or the envelope sender): an attendee
        # holds the UID and the ORGANIZER line too. A mail server in front checks SPF/DKIM/DMARC.
        senders = {address.lower() for address in (_from_header(message), mail_from) if address}
        if invite.organizer is None or invite.organizer not in senders:
            raise InvitationRefused(
                f"the invitation is organized by {invite.organizer or 'nobody (no ORGANIZER)'} but was sent "
                f"by {', '.join(sorted(senders)) or 'an unknown sender'}; only the organizer's mail is taken"
            )
        async with self._lock:
            async with self._store.read() as conn:
                known = await qo.of_uid(conn, invite.uid)
            organizer = next((occ.organizer for occ in known if occ.organizer), None)
            if organizer is not None and invite.organizer != organizer:
                # Anyone can send mail; only the organizer of a meeting may move or cancel it.
                raise InvitationRefused(
                    f"event {invite.uid} is organized by {organizer}; an invitation from "
                    f"{invite.organizer or 'no organizer'} cannot change or cancel it"
                )
            found = invite.interpretation
            if invite.method == "CANCEL" and invite.complete:
                cancelled = await self._scheduler.deleted(
                    None, [invite.uid], reason="cancelled by the organizer (iMIP CANCEL)"
                )
                async with self._store.transaction() as conn:
                    await qc.forget(conn, IMIP_SOURCE, [invite.uid])
                outcome = f"cancelled {len(cancelled)} occurrence(s) of {invite.uid}"
            else:
                if (
                    invite.method == "REQUEST"
                    and not found.occurrences
                    and not known
                    and not self._calendars.mentions_domain(invite.data.encode())
                ):
                    raise InvitationRefused(
                        f"the invitation does not invite meet@{self._calendars.addresses.domain} or "
                        f"pin+<meeting id>@{self._calendars.addresses.domain}"
                    )
                result = await self._scheduler.apply(
                    IMIP_SOURCE,
                    found.occurrences,
                    complete=invite.complete and invite.method == "REQUEST",
                    window=(start, end),
                    uids=[invite.uid],
                )
                if invite.complete and invite.method == "REQUEST":
                    async with self._store.transaction() as conn:
                        await qc.keep(
                            conn, IMIP_SOURCE, [(invite.uid, [invite.uid], invite.data)], self._clock.now()
                        )
                await self._calendars.vet_keys([*result.inserted, *result.updated])
                outcome = (
                    f"{invite.method} for {invite.uid}: {len(result.inserted)} new, "
                    f"{len(result.updated)} changed, {len(result.cancelled)} cancelled occurrence(s)"
                )
            await self._save_imip_state(found.problems)
        log.info("iMIP: %s", outcome)
        return outcome

    async def refresh(self) -> int:
        """Read the mailed series again for the window that moved on; return how many instances were new.

        Only instances not seen before are added: a mail may have changed one instance only (a
        REQUEST or CANCEL with a RECURRENCE-ID), and the kept master must not undo that.
        """
        start, end = self._calendars.window()
        async with self._store.read() as conn:
            texts = await qc.objects_of(conn, IMIP_SOURCE)
        found = await asyncio.to_thread(self._read, texts, start, end)
        async with self._store.read() as conn:
            known = await qo.by_keys(conn, [occ.key for occ in found])
        new = [occ for occ in found if occ.key not in known]
        if new:
            result = await self._scheduler.apply(IMIP_SOURCE, new, complete=False)
            await self._calendars.vet_keys(result.inserted)
        return len(new)

    def _read(
        self, texts: Sequence[tuple[str, str]], start: datetime, end: datetime
    ) -> list[MeetingOccurrence]:
        """The occurrences of the kept invitations in the window (CPU work: run in a thread)."""
        found: list[MeetingOccurrence] = []
        for href, text in texts:
            try:
                result = interpret(
                    text.encode(),
                    self._calendars.addresses,
                    start=start,
                    end=end,
                    default_zone=self._config.imip.time_zone,
                )
            except Exception as exc:  # it was readable when it came; a library change might not be
                log.warning("iMIP: the kept invitation %s cannot be read again: %s", href, unreadable(exc))
                continue
            found.extend(result.occurrences)
        return found

    async def _save_imip_state(self, problems: Sequence[str]) -> None:
        """Record that a mailed invitation was taken."""
        now = self._clock.now()
        async with self._store.transaction() as conn:
            objects = len(await qc.uids_of(conn, IMIP_SOURCE))
            row = qc.SourceRow(IMIP_SOURCE, IMIP_SOURCE, None, now, None, objects, 0, tuple(problems), now)
            await qc.save_source(conn, row)

    async def refresh_hourly(self) -> None:
        """Extend the mailed series as time passes."""
        while True:
            await asyncio.sleep(REWINDOW.total_seconds())
            try:
                await self.refresh()
            except Exception:
                log.exception("iMIP: reading the kept invitations again failed")


class _Handler:
    """aiosmtpd's handler: check recipients, hand each message to the calendars service."""

    def __init__(self, inbox: ImipInbox, calendars: Calendars) -> None:
        self._inbox = inbox
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
            outcome = await self._inbox.receive(message, envelope.mail_from)
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

    def __init__(self, config: Config, inbox: ImipInbox, calendars: Calendars) -> None:
        self._config = config.imip
        self._inbox = inbox
        self._calendars = calendars
        self._server: asyncio.Server | None = None
        self._refresh: asyncio.Task[None] | None = None

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
        handler = _Handler(self._inbox, self._calendars)
        size = self._config.max_message_bytes

        def protocol() -> Any:
            return SMTP(handler, data_size_limit=size, hostname=self._calendars.addresses.domain)

        self._server = await asyncio.get_running_loop().create_server(protocol, host.strip("[]"), int(port))
        log.info("iMIP: listening for invitations on %s", self._config.listen)
        self._refresh = asyncio.create_task(self._inbox.refresh_hourly(), name="imip refresh")

    async def stop(self) -> None:
        """Stop listening."""
        server, self._server = self._server, None
        refresh, self._refresh = self._refresh, None
        if refresh is not None:
            refresh.cancel()
            await asyncio.gather(refresh, return_exceptions=True)
        if server is not None:
            server.close()
            await server.wait_closed()
