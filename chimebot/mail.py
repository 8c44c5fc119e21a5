"""Outgoing mail: SMTP (aiosmtplib) when a server is configured, else .eml files in an outbox folder."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import ssl
import tempfile
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import Protocol

import aiosmtplib

from chimebot.clock import Clock, SystemClock
from chimebot.config import SmtpConfig

_log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """A message could not be handed over; ``reason`` says why, for people (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Mailer(Protocol):
    """Sends one message or raises DeliveryFailed."""

    async def send(self, message: EmailMessage) -> None:
        """Hand the message over for delivery."""
        ...


def compose(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text UTF-8 message."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    return message


def build_mailer(config: SmtpConfig, data_dir: Path, clock: Clock | None = None) -> Mailer:
    """The mailer a config asks for: SMTP when a host is set, else the outbox folder."""
    clock = clock or SystemClock()
    if config.host:
        return SmtpMailer(config, clock)
    folder = Path(config.outbox_dir) if config.outbox_dir else data_dir / "outbox"
    return OutboxMailer(folder, config.from_address, clock)


def _complete(message: EmailMessage, from_address: str, now: datetime) -> None:
    """Fill in From, Message-ID and Date when missing (in place, so a retry keeps the same Message-ID)."""
    if message["From"] is None:
        message["From"] = from_address
    if message["Message-ID"] is None:
        # An explicit domain: make_msgid's default calls socket.getfqdn(), a DNS lookup that blocks the loop.
        message["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2] or "localhost")
    if message["Date"] is None:
        message["Date"] = format_datetime(now)


def _recipients(message: EmailMessage) -> str:
    """The addresses of To, Cc and Bcc, comma-separated, for log lines."""
    headers = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    return ", ".join(address for _, address in getaddresses(headers)) or "(no recipient)"


class OutboxMailer:
    """Writes each message as an .eml file into a folder, for development or a separate delivery agent."""

    def __init__(self, folder: Path, from_address: str, clock: Clock | None = None) -> None:
        self.folder = folder
        self.from_address = from_address
        self.clock = clock or SystemClock()

    async def send(self, message: EmailMessage) -> None:
        """Write the message atomically as ``<UTC time>-<random>.eml``; raises DeliveryFailed on OS errors."""
        now = self.clock.now()
        _complete(message, self.from_address, now)
        data = message.as_bytes()
        # Time first so that a plain sort lists messages in order; the suffix keeps same-instant names apart.
        name = f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.eml"
        try:
            path = await asyncio.to_thread(self._write, name, data)
        except OSError as e:
            raise DeliveryFailed(f"cannot write the message into the outbox folder {self.folder}: {e}") from e
        # Never the body: it holds one-time sign-in and invitation links.
        _log.info("mail to %s, subject %r, written to %s", _recipients(message), message["Subject"], path)

    def _write(self, name: str, data: bytes) -> Path:
        """Write `data` to a hidden temp file, then rename it, so readers never see half a message."""
        self.folder.mkdir(parents=True, exist_ok=True)  # each time: the folder may be cleaned away meanwhile
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the rename must not expose an empty file after a power loss
            path = self.folder / name
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


class SmtpMailer:
    """Sends through an SMTP server with aiosmtplib, one connection per message."""

    def __init__(self, config: SmtpConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        host = f"[{config.host}]" if ":" in config.host else config.host  # IPv6 literals need brackets
        self.where = f"{host}:{config.port}"

    async def send(self, message: EmailMessage) -> None:
        """Deliver the message to the server; raises DeliveryFailed with a readable reason."""
        config = self.config
        _complete(message, config.from_address, self.clock.now())
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=config.username or None,
                password=config.password if config.username else None,
                use_tls=config.security == "tls",
                # False, not None, for "none": None would upgrade whenever the server offers STARTTLS.
                start_tls=config.security == "starttls",
                timeout=config.timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError) as e:
            raise DeliveryFailed(self._hide_password(self._reason(e))) from e
        if refused:
            # The server took the message for the others; raising would invite a retry that sends it twice.
            refusals = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in refused.items())
            _log.warning("the mail server at %s refused some recipients: %s", self.where, refusals)
        _log.info("mail to %s, subject %r, sent via %s", _recipients(message), message["Subject"], self.where)

    def _reason(self, e: BaseException) -> str:
        """One sentence for people saying what went wrong with the server."""
        at, timeout = f"the mail server at {self.where}", self.config.timeout_seconds
        match e:
            case aiosmtplib.SMTPRecipientsRefused():
                refusals = ", ".join(f"{r.recipient}: {r.code} {r.message}" for r in e.recipients)
                return f"{at} refused the recipient {refusals}"
            case aiosmtplib.SMTPSenderRefused():
                return f"{at} refused the sender {e.sender}: {e.code} {e.message}"
            case aiosmtplib.SMTPAuthenticationError():
                return f"{at} refused the login of {self.config.username!r}: {e.code} {e.message}"
            case aiosmtplib.SMTPDataError():
                return f"{at} refused the message: {e.code} {e.message}"
            case aiosmtplib.SMTPConnectTimeoutError():
                return f"cannot connect to {at}: no answer within {timeout:g} seconds"
            case aiosmtplib.SMTPConnectResponseError():
                return f"{at} refused the connection: {e.code} {e.message}"
            case aiosmtplib.SMTPConnectError() if isinstance(e.__cause__, OSError):
                return self._reason(e.__cause__)  # the OS error says it better than the wrapper
            case aiosmtplib.SMTPConnectError():
                return f"cannot connect to {at}: {e.message}"
            case aiosmtplib.SMTPTimeoutError():
                return f"{at} did not answer within {timeout:g} seconds"
            case aiosmtplib.SMTPServerDisconnected():
                return f"{at} closed the connection: {e.message}"
            case aiosmtplib.SMTPResponseException():
                return f"{at} answered {e.code} {e.message}"
            # aiosmtplib raises a bare SMTPException when STARTTLS is missing, so only its text tells.
            case aiosmtplib.SMTPException() if "STARTTLS" in e.message and self.config.security == "starttls":
                return f'{at} does not offer STARTTLS (smtp.security is "starttls"; "tls" fits port 465)'
            case aiosmtplib.SMTPException():
                return f"{at} cannot take the message: {e.message}"
            case ssl.SSLCertVerificationError():
                return f"the TLS certificate of {at} is not trusted: {e.verify_message}"
            case ssl.SSLError() if e.reason == "WRONG_VERSION_NUMBER" and self.config.security == "tls":
                # The usual mix-up: "tls" against a port that starts in plain text (25, 587).
                return f'{at} does not start with TLS (smtp.security is "tls"; port 587 wants "starttls")'
            case ssl.SSLError():
                return f"TLS with {at} failed: {e.reason or e}"
            case socket.gaierror():
                return f"cannot find the mail server {self.config.host!r}: {e.strerror or e}"
            case OSError():
                # asyncio's strerror is "Connect call failed (addr)"; the errno's own text is the useful part.
                detail = os.strerror(e.errno) if isinstance(e.errno, int) and e.errno > 0 else e.strerror
                return f"cannot connect to {at}: {detail or e}"
        return f"{at} failed: {e}"

    def _hide_password(self, text: str) -> str:
        """The text without the password, should a server ever echo it back."""
        return text.replace(self.config.password, "***") if self.config.password else text
