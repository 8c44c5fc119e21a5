"""Outgoing mail: SMTP (aiosmtplib) when a server is configured, else .eml files in an outbox folder."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from chimebot.config import SmtpConfig


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


def build_mailer(config: SmtpConfig, data_dir: Path) -> Mailer:
    """The mailer a config asks for (placeholder; filled in by the mail work)."""
    raise NotImplementedError
