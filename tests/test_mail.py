"""Outgoing mail against a real SMTP server (aiosmtpd on loopback) and into a real outbox folder."""

from __future__ import annotations

import email
import logging
import socket
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from chimebot.config import SmtpConfig, parse_config
from chimebot.mail import DeliveryFailed, OutboxMailer, SmtpMailer, build_mailer, compose

PASSWORD = "correct horse battery"
BODY = "Sign in: https://chime.example/signin/one-time-secret"


def smtp_config(env: dict[str, str] | None = None, **smtp: Any) -> SmtpConfig:
    """A validated [smtp] section."""
    return parse_config({"smtp": smtp}, source="<test>", env=env or {}).smtp


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def message(to: str = "bob@example.com") -> EmailMessage:
    """A sign-in message without From, so the mailer must add it."""
    msg = compose("unused@example.com", to, "Your sign-in link", BODY)
    del msg["From"]
    return msg


class Inbox:
    """An aiosmtpd handler keeping what it receives; refuses recipients whose local part is "nobody"."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept the address unless it is a "nobody"."""
        if address.startswith("nobody@"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the envelope."""
        self.envelopes.append(envelope)
        return "250 OK"


def check_password(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
) -> AuthResult:
    """An aiosmtpd authenticator accepting only user "chime" with PASSWORD."""
    ok = isinstance(data, LoginPassword) and data == (b"chime", PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start aiosmtpd servers on loopback: serve(**smtp_parameters) -> (inbox, port); stopped after."""
    controllers: list[Controller] = []

    def start(**params: Any) -> tuple[Inbox, int]:
        inbox, port = Inbox(), free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **params)
        controller.start()
        controllers.append(controller)
        return inbox, port

    yield start
    for controller in controllers:
        controller.stop()


async def test_smtp_delivers_with_from_message_id_and_date(serve: Any) -> None:
    inbox, port = serve()
    mailer = build_mailer(smtp_config(host="127.0.0.1", port=port, security="none"), Path("/unused"))
    assert isinstance(mailer, SmtpMailer)
    await mailer.send(message())
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "chimebot@localhost"
    assert envelope.rcpt_tos == ["bob@example.com"]
    received = email.message_from_bytes(envelope.original_content or b"", policy=policy.default)
    assert received["From"] == "chimebot@localhost"
    assert received["Subject"] == "Your sign-in link"
    assert received["Message-ID"].endswith("@localhost>")
    assert received["Date"]
    assert received.get_content().strip() == BODY


async def test_refused_recipient_names_it_and_the_code(serve: Any) -> None:
    _, port = serve()
    mailer = build_mailer(smtp_config(host="127.0.0.1", port=port, security="none"), Path("/unused"))
    with pytest.raises(DeliveryFailed) as failed:
        await mailer.send(message(to="nobody@example.com"))
    assert "refused the recipient nobody@example.com: 550 no such user" in failed.value.reason


async def test_closed_port_names_host_and_port() -> None:
    port = free_port()
    mailer = build_mailer(smtp_config(host="127.0.0.1", port=port, security="none"), Path("/unused"))
    with pytest.raises(DeliveryFailed) as failed:
        await mailer.send(message())
    assert failed.value.reason == f"cannot connect to the mail server at 127.0.0.1:{port}: Connection refused"


async def test_starttls_required_but_not_offered(serve: Any) -> None:
    inbox, port = serve()
    mailer = build_mailer(smtp_config(host="127.0.0.1", port=port, security="starttls"), Path("/unused"))
    with pytest.raises(DeliveryFailed) as failed:
        await mailer.send(message())
    assert failed.value.reason.startswith(f"the mail server at 127.0.0.1:{port} does not offer STARTTLS")
    assert inbox.envelopes == []  # nothing went out in the clear


async def test_tls_against_a_plain_server(serve: Any) -> None:
    _, port = serve()
    mailer = build_mailer(smtp_config(host="127.0.0.1", port=port, security="tls"), Path("/unused"))
    with pytest.raises(DeliveryFailed) as failed:
        await mailer.send(message())
    assert failed.value.reason.startswith(f"the mail server at 127.0.0.1:{port} does not start with TLS")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_login_and_a_wrong_password_that_never_shows(serve: Any) -> None:
    inbox, port = serve(authenticator=check_password, auth_require_tls=False)
    settings = {"host": "127.0.0.1", "port": port, "security": "none", "username": "chime"}
    right = smtp_config({"SMTP_PW": PASSWORD}, password_env="SMTP_PW", **settings)
    assert PASSWORD not in repr(right)
    await build_mailer(right, Path("/unused")).send(message())
    assert len(inbox.envelopes) == 1

    wrong_password = "hunter2-wrong"
    wrong = smtp_config({"SMTP_PW": wrong_password}, password_env="SMTP_PW", **settings)
    with pytest.raises(DeliveryFailed) as failed:
        await build_mailer(wrong, Path("/unused")).send(message())
    reason = failed.value.reason
    assert reason.startswith(f"the mail server at 127.0.0.1:{port} refused the login of 'chime': 535")
    assert wrong_password not in reason and wrong_password not in str(failed.value.__cause__)
    assert len(inbox.envelopes) == 1


@pytest.mark.parametrize("configured", [False, True])
async def test_outbox_writes_an_eml_and_logs_no_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, configured: bool
) -> None:
    folder = tmp_path / "mail" / "out" if configured else tmp_path / "outbox"
    config = smtp_config(outbox_dir=str(folder)) if configured else smtp_config()
    mailer = build_mailer(config, tmp_path)
    assert isinstance(mailer, OutboxMailer)
    with caplog.at_level(logging.INFO, logger="chimebot.mail"):
        await mailer.send(message())
        await mailer.send(message(to="carol@example.com"))
    first, second = sorted(folder.iterdir())  # no temp file left behind; names sort by time
    received = email.message_from_bytes(first.read_bytes(), policy=policy.default)
    assert (received["From"], received["To"]) == ("chimebot@localhost", "bob@example.com")
    assert received["Subject"] == "Your sign-in link" and received["Message-ID"] and received["Date"]
    assert received.get_content().strip() == BODY
    assert email.message_from_bytes(second.read_bytes())["To"] == "carol@example.com"
    assert first.suffix == ".eml"
    line = caplog.records[0].getMessage()
    assert "bob@example.com" in line and "Your sign-in link" in line and str(first) in line
    assert "one-time-secret" not in caplog.text


async def test_outbox_failure_is_delivery_failed(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the folder should be")
    mailer = build_mailer(smtp_config(outbox_dir=str(tmp_path / "taken")), tmp_path)
    with pytest.raises(DeliveryFailed, match="cannot write the message into the outbox folder"):
        await mailer.send(message())
