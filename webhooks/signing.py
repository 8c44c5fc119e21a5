"""Signing outgoing webhook requests and verifying incoming ones: Amazon Chime bots and Standard Webhooks.

Chime (https://docs.aws.amazon.com/chime/latest/ag/auth-bots.html): ``Chime-Signature`` is
Base64(HMAC-SHA256(bot's SecurityToken, ``<Chime-Request-Timestamp>|<body>``)). AWS's steps do not
state the timestamp's format; the same page shows one, ``2019-04-04T21:30:43.181Z`` (ISO 8601, UTC,
milliseconds), and that is what we send. AWS does not ask receivers to check its age (each retry gets
a new one); ``verify_chime`` does when given ``now``.

Standard Webhooks (https://www.standardwebhooks.com, spec 1.0.0): ``webhook-signature`` is
``v1,`` + Base64(HMAC-SHA256(key, ``{webhook-id}.{webhook-timestamp}.{body}``)), several separated by
spaces during a key rotation; ``webhook-timestamp`` is integer Unix seconds.

Headers are looked up without regard to case, in any ``Mapping[str, str]``. Error messages go back to
the sender, so they say what to fix and never hold the secret or the signature we expected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

CHIME_SIGNATURE = "Chime-Signature"
CHIME_TIMESTAMP = "Chime-Request-Timestamp"
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
WHSEC_PREFIX = "whsec_"
DEFAULT_TOLERANCE = timedelta(minutes=5)

# ASCII digits only: int() would also take "+1", " 1", "1_0" and non-ASCII digits, none of which a
# sender means, and a lenient parse lets two headers stand for one signed string.
_UNIX_SECONDS = re.compile(r"[0-9]{1,11}")


class SignatureError(ValueError):
    """A request whose signature does not verify; str() says why, for the sender."""


def _aware(now: datetime) -> datetime:
    """Refuse a naive datetime: it would silently be taken as the host's local time."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (for example datetime.now(UTC))")
    return now


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of a header whatever the case of its name; None when absent.

    Scans every item rather than calling get(): a plain dict is case-sensitive, and a multidict may
    hold the header twice, which must not let a second value hide behind the first.
    """
    wanted = name.lower()
    values = {value for key, value in headers.items() if key.lower() == wanted}
    if len(values) > 1:
        raise SignatureError(f"the {name} header is sent more than once with different values; send it once")
    return values.pop() if values else None


def _required(headers: Mapping[str, str], name: str) -> str:
    """A header that must be present and not blank."""
    value = _header(headers, name)
    if value is None or not value.strip():
        raise SignatureError(f"the {name} header is missing")
    return value.strip()


def _hmac_b64(key: bytes, message: bytes) -> str:
    """Base64 of HMAC-SHA256(key, message), with padding (what both schemes send)."""
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def _same(received: str, expected: str) -> bool:
    """Compare two Base64 signatures in constant time; a non-ASCII one matches nothing."""
    try:
        candidate = received.encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(candidate, expected.encode("ascii"))


def _age_check(name: str, sent: float, now: datetime, tolerance: timedelta) -> None:
    """Refuse a Unix time further than ``tolerance`` from now, either way (replays, skewed clocks)."""
    skew = _aware(now).timestamp() - sent
    limit = tolerance.total_seconds()
    if skew > limit:
        raise SignatureError(
            f"the {name} header is {skew:.0f} s old; the limit is {limit:.0f} s "
            "(sign each attempt afresh, and check the sender's clock)"
        )
    if -skew > limit:
        raise SignatureError(
            f"the {name} header is {-skew:.0f} s in the future; the limit is {limit:.0f} s "
            "(check the sender's clock)"
        )


def _wire_bytes(name: str, value: str) -> bytes:
    """A received header value as the bytes that were signed (aiohttp decodes UTF-8 with surrogateescape)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise SignatureError(f"the {name} header is not valid UTF-8 text") from None


# --- Amazon Chime ---------------------------------------------------------------------------------


def chime_timestamp(now: datetime) -> str:
    """``now`` as Chime writes Chime-Request-Timestamp: ISO 8601, UTC, milliseconds (``…T10:00:00.123Z``)."""
    utc = _aware(now).astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def chime_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The Chime-Signature of a body sent at ``timestamp`` (the Chime-Request-Timestamp text)."""
    if not secret:
        raise ValueError("the Chime signing secret is empty")
    # AWS's sample hashes (timestamp + "|" + body) as UTF-8; the body's own bytes are that for UTF-8
    # JSON, and stay exact for anything else.
    return _hmac_b64(secret.encode("utf-8"), timestamp.encode("utf-8") + b"|" + body)


def chime_headers(secret: str, body: bytes, now: datetime) -> dict[str, str]:
    """Chime-Request-Timestamp and Chime-Signature for one attempt (sign every retry afresh)."""
    timestamp = chime_timestamp(now)
    return {CHIME_TIMESTAMP: timestamp, CHIME_SIGNATURE: chime_signature(secret, timestamp, body)}


def verify_chime(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Check a Chime-signed request, or raise SignatureError; with ``now``, also refuse a stale timestamp."""
    timestamp = _required(headers, CHIME_TIMESTAMP)
    signature = _required(headers, CHIME_SIGNATURE)
    if now is not None:
        try:
            sent = datetime.fromisoformat(timestamp)
        except ValueError:
            raise SignatureError(
                f"the {CHIME_TIMESTAMP} header is not an ISO 8601 time like 2019-04-04T21:30:43.181Z"
            ) from None
        if sent.tzinfo is None:
            raise SignatureError(f"the {CHIME_TIMESTAMP} header has no time zone; end it with Z")
        _age_check(CHIME_TIMESTAMP, sent.timestamp(), now, tolerance)
    if not secret:
        raise ValueError("the Chime signing secret is empty")
    signed = _wire_bytes(CHIME_TIMESTAMP, timestamp) + b"|" + body
    if not _same(signature, _hmac_b64(secret.encode("utf-8"), signed)):
        raise SignatureError(
            f"the {CHIME_SIGNATURE} header does not match the body; sign "
            f"'<{CHIME_TIMESTAMP}>|<raw body>' with the bot's secret (HMAC-SHA256, Base64)"
        )


# --- Standard Webhooks ----------------------------------------------------------------------------


def standard_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decoded, any other secret as its UTF-8 bytes.

    The reference libraries Base64-decode an unprefixed secret as well; we take it as text instead so
    that a password-like secret chosen by an admin works. A receiver using those libraries can only
    verify a ``whsec_`` secret, so generate secrets in that form for them.
    """
    if not secret:
        raise ValueError("the webhook signing secret is empty")
    if not secret.startswith(WHSEC_PREFIX):
        return secret.encode("utf-8")
    try:
        key = base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a secret starting with {WHSEC_PREFIX} must be Base64 after the prefix") from None
    if not key:
        raise ValueError(f"the secret has nothing after {WHSEC_PREFIX}")
    return key


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one attempt at sending a message."""
    # The spec asks that ids hold no "." (nor, being a header, spaces or line breaks): a dot would let
    # a signed string be split into a different id, timestamp and body.
    if not msg_id or any(ch in msg_id for ch in ". \t\r\n"):
        raise ValueError("a webhook id must be non-empty and hold no '.', spaces or line breaks")
    if timestamp < 0:
        raise ValueError("a webhook timestamp is Unix seconds and cannot be negative")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + _hmac_b64(standard_key(secret), signed)


def standard_headers(secret: str, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature for one attempt (the id stays; the rest is new)."""
    timestamp = int(_aware(now).timestamp())
    return {
        WEBHOOK_ID: msg_id,
        WEBHOOK_TIMESTAMP: str(timestamp),
        WEBHOOK_SIGNATURE: standard_signature(secret, msg_id, timestamp, body),
    }


def verify_standard(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> str:
    """Check a Standard Webhooks request and return its webhook-id, or raise SignatureError."""
    msg_id = _required(headers, WEBHOOK_ID)
    raw_timestamp = _required(headers, WEBHOOK_TIMESTAMP)
    raw_signatures = _required(headers, WEBHOOK_SIGNATURE)
    if not _UNIX_SECONDS.fullmatch(raw_timestamp):
        raise SignatureError(f"the {WEBHOOK_TIMESTAMP} header must be Unix seconds, digits only")
    _age_check(WEBHOOK_TIMESTAMP, int(raw_timestamp), now, tolerance)

    candidates = []
    for entry in raw_signatures.split():
        version, comma, value = entry.partition(",")
        if comma and version == "v1" and value:
            candidates.append(value)
    if not candidates:
        raise SignatureError(
            f"the {WEBHOOK_SIGNATURE} header holds no v1 signature; "
            "send 'v1,<base64>' entries separated by spaces"
        )
    # Signed over the header's own text: the timestamp digits as received, not as re-printed.
    signed = _wire_bytes(WEBHOOK_ID, msg_id) + f".{raw_timestamp}.".encode() + body
    expected = _hmac_b64(standard_key(secret), signed)
    # Check every candidate, so the time taken does not tell which one matched.
    matched = False
    for candidate in candidates:
        matched |= _same(candidate, expected)
    if not matched:
        raise SignatureError(
            f"no v1 signature in the {WEBHOOK_SIGNATURE} header matches; sign "
            f"'<{WEBHOOK_ID}>.<{WEBHOOK_TIMESTAMP}>.<raw body>' with the endpoint's secret "
            "(HMAC-SHA256, Base64)"
        )
    return msg_id
