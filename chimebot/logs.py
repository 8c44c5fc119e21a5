"""Logging set-up, with a filter that keeps credentials out of every line."""

from __future__ import annotations

import logging
import re

# Webhook URLs carry their token in the query; sign-in and invitation links in the path (access log);
# aiohttp logs the start of a malformed request line.
_SECRETS = re.compile(
    r"(token=)[^&\s'\"]+|(Bearer\s+)\S+|(/(?:signin|invitations)/)(?!accept\b)[A-Za-z0-9_-]+", re.IGNORECASE
)


def redact(text: str) -> str:
    """Replace tokens, bearer credentials, sign-in and invitation links in text with ``<redacted>``."""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "<redacted>", text)


class RedactSecrets(logging.Filter):
    """Rewrites each record's message without the secrets it may quote."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the formatted message (and the traceback text) in place."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``, through the redacting filter."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step is noise
    # One line per alarm set (thousands after each sync) and per SMTP command: chimebot logs what matters.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
