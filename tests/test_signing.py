"""webhooks.signing against verifiers written here from the specifications, and against published vectors.

The signers are checked with the independent verifiers below, never with the module's own verify
functions: a round trip through our own code would pass just as well with both sides equally wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from webhooks.signing import (
    SignatureError,
    chime_headers,
    chime_signature,
    chime_timestamp,
    standard_headers,
    standard_key,
    standard_signature,
    verify_chime,
    verify_standard,
)

NOW = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
CHIME_SECRET = "bot-security-token-from-CreateBot"
BODY = '{"EventType": "Mention", "Message": "@bot héllo ✓"}'.encode()

# The vector the Standard Webhooks reference libraries test against (e.g. svix-webhooks' PHP and
# JavaScript suites: testSignFunctionWorks).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
VECTOR_NOW = datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC)
# The spec's example of an asymmetric (ed25519) entry, which a v1 verifier must skip.
ASYMMETRIC = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
STD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


# --- Independent verifiers, from the specifications ------------------------------------------------


def aws_chime_valid(security_token: str, headers: Mapping[str, str], body_text: str) -> bool:
    """AWS's five steps (Amazon Chime admin guide, "Authenticate chatbot requests"), as its Java sample."""
    signature = headers["Chime-Signature"]  # 1. the Chime-Signature header
    data = headers["Chime-Request-Timestamp"] + "|" + body_text  # 2. timestamp | body
    raw = hmac.new(security_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha256).digest()  # 3.
    computed = base64.b64encode(raw).decode("ascii")  # 4. Base64
    return computed == signature  # 5. compare


def spec_standard_valid(secret: str, headers: Mapping[str, str], body: bytes, now: int) -> str | None:
    """The Standard Webhooks 1.0 symmetric scheme, receiver side; the webhook-id when valid, else None."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if not timestamp.isascii() or not timestamp.isdigit() or abs(now - int(timestamp)) > 300:
        return None
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for entry in headers["webhook-signature"].split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return msg_id
    return None


def resign(headers: dict[str, str], **changes: str) -> dict[str, str]:
    """A copy of some headers with values replaced."""
    return {**headers, **changes}


# --- Amazon Chime ---------------------------------------------------------------------------------


def test_chime_timestamp_is_iso_8601_utc_with_milliseconds_like_the_aws_example() -> None:
    assert chime_timestamp(NOW) == "2026-11-26T10:00:00.123Z"
    # AWS's own example has this shape: 2019-04-04T21:30:43.181Z
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", chime_timestamp(NOW))
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert chime_timestamp(paris) == "2026-11-26T10:00:00.123Z"
    assert chime_timestamp(NOW.replace(microsecond=0)) == "2026-11-26T10:00:00.000Z"


def test_chime_timestamp_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        chime_timestamp(datetime(2026, 11, 26, 10, 0, 0))


def test_chime_headers_verify_with_the_aws_procedure() -> None:
    headers = chime_headers(CHIME_SECRET, BODY, NOW)
    assert set(headers) == {"Chime-Signature", "Chime-Request-Timestamp"}
    assert headers["Chime-Request-Timestamp"] == "2026-11-26T10:00:00.123Z"
    assert aws_chime_valid(CHIME_SECRET, headers, BODY.decode())
    assert not aws_chime_valid("another-token", headers, BODY.decode())
    assert not aws_chime_valid(CHIME_SECRET, headers, BODY.decode().replace("héllo", "hello"))


def test_chime_signature_is_base64_of_a_sha256_hmac() -> None:
    signature = chime_signature(CHIME_SECRET, "2019-04-04T21:30:43.181Z", b"{}")
    assert len(base64.b64decode(signature, validate=True)) == 32
    digest = hmac.new(CHIME_SECRET.encode(), b"2019-04-04T21:30:43.181Z|{}", hashlib.sha256).digest()
    assert signature == base64.b64encode(digest).decode()
    with pytest.raises(ValueError, match="empty"):
        chime_signature("", "2019-04-04T21:30:43.181Z", b"{}")


def test_verify_chime_accepts_a_signed_request_with_headers_in_any_case() -> None:
    headers = chime_headers(CHIME_SECRET, BODY, NOW)
    verify_chime(CHIME_SECRET, headers, BODY)
    verify_chime(CHIME_SECRET, {k.lower(): v for k, v in headers.items()}, BODY)
    verify_chime(CHIME_SECRET, {k.upper(): v for k, v in headers.items()}, BODY)
    verify_chime(CHIME_SECRET, CIMultiDictProxy(CIMultiDict(headers)), BODY)
    verify_chime(CHIME_SECRET, headers, BODY, now=NOW + timedelta(seconds=2))


@pytest.mark.parametrize(
    ("secret", "body", "change", "message"),
    [
        ("wrong-token", BODY, {}, "does not match"),
        (CHIME_SECRET, BODY + b" ", {}, "does not match"),
        (CHIME_SECRET, BODY, {"Chime-Request-Timestamp": "2026-11-26T10:00:01.123Z"}, "does not match"),
        (CHIME_SECRET, BODY, {"Chime-Signature": "bm90IGl0"}, "does not match"),
        (CHIME_SECRET, BODY, {"Chime-Signature": "sïgnature"}, "does not match"),
        (CHIME_SECRET, BODY, {"Chime-Signature": ""}, "Chime-Signature header is missing"),
        (CHIME_SECRET, BODY, {"Chime-Request-Timestamp": " "}, "Chime-Request-Timestamp header is missing"),
    ],
)
def test_verify_chime_refuses_what_does_not_match(
    secret: str, body: bytes, change: dict[str, str], message: str
) -> None:
    headers = resign(chime_headers(CHIME_SECRET, BODY, NOW), **change)
    with pytest.raises(SignatureError, match=message) as caught:
        verify_chime(secret, headers, body)
    assert CHIME_SECRET not in str(caught.value)
    assert chime_headers(CHIME_SECRET, BODY, NOW)["Chime-Signature"] not in str(caught.value)


@pytest.mark.parametrize("missing", ["Chime-Signature", "Chime-Request-Timestamp"])
def test_verify_chime_refuses_a_missing_header(missing: str) -> None:
    headers = chime_headers(CHIME_SECRET, BODY, NOW)
    del headers[missing]
    with pytest.raises(SignatureError, match=f"the {missing} header is missing"):
        verify_chime(CHIME_SECRET, headers, BODY)


def test_verify_chime_with_now_refuses_stale_future_and_unreadable_timestamps() -> None:
    headers = chime_headers(CHIME_SECRET, BODY, NOW)
    with pytest.raises(SignatureError, match=r"is 301 s old; the limit is 300 s"):
        verify_chime(CHIME_SECRET, headers, BODY, now=NOW + timedelta(seconds=301))
    with pytest.raises(SignatureError, match=r"is 301 s in the future"):
        verify_chime(CHIME_SECRET, headers, BODY, now=NOW - timedelta(seconds=301))
    verify_chime(CHIME_SECRET, headers, BODY, now=NOW + timedelta(seconds=299))
    verify_chime(CHIME_SECRET, headers, BODY, now=NOW + timedelta(hours=1), tolerance=timedelta(hours=2))
    odd = {"Chime-Request-Timestamp": "yesterday"}
    odd["Chime-Signature"] = chime_signature(CHIME_SECRET, "yesterday", BODY)
    verify_chime(CHIME_SECRET, odd, BODY)  # AWS's steps do not read the timestamp
    with pytest.raises(SignatureError, match="not an ISO 8601 time"):
        verify_chime(CHIME_SECRET, odd, BODY, now=NOW)


def test_verify_chime_refuses_a_header_sent_twice_with_different_values() -> None:
    headers = CIMultiDict(chime_headers(CHIME_SECRET, BODY, NOW))
    headers.add("chime-signature", "bm90IGl0")
    with pytest.raises(SignatureError, match="more than once"):
        verify_chime(CHIME_SECRET, CIMultiDictProxy(headers), BODY)


# --- Standard Webhooks ----------------------------------------------------------------------------


def test_standard_signature_reproduces_the_published_vector() -> None:
    signature = standard_signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert signature == VECTOR_SIGNATURE


def test_the_independent_verifier_accepts_the_published_vector() -> None:
    # Checks the checker: without this, a wrong verifier could bless a wrong signer.
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP)}
    headers["webhook-signature"] = VECTOR_SIGNATURE
    assert spec_standard_valid(VECTOR_SECRET, headers, VECTOR_BODY, VECTOR_TIMESTAMP) == VECTOR_ID
    assert spec_standard_valid(VECTOR_SECRET, headers, VECTOR_BODY + b" ", VECTOR_TIMESTAMP) is None


def test_standard_headers_verify_with_the_spec_procedure() -> None:
    headers = standard_headers(STD_SECRET, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", BODY, NOW)
    assert headers["webhook-id"] == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp())) == "1795687200"
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])
    now = int(NOW.timestamp())
    assert spec_standard_valid(STD_SECRET, headers, BODY, now) == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    assert spec_standard_valid(STD_SECRET, headers, BODY + b"x", now) is None
    other = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()
    assert spec_standard_valid(other, headers, BODY, now) is None


def test_standard_key_decodes_whsec_secrets_and_takes_others_as_utf8() -> None:
    assert standard_key(VECTOR_SECRET) == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert standard_key("pässword") == "pässword".encode()
    with pytest.raises(ValueError, match="Base64 after the prefix") as caught:
        standard_key("whsec_not base64!")
    assert "not base64" not in str(caught.value)  # the secret stays out of messages
    for empty in ("", "whsec_"):
        with pytest.raises(ValueError, match=r"empty|nothing after"):
            standard_key(empty)


def test_a_plain_secret_signs_with_its_utf8_bytes() -> None:
    signature = standard_signature("plain secret", "msg_1", 1614265330, b"{}")
    key = b"plain secret"
    expected = base64.b64encode(hmac.new(key, b"msg_1.1614265330.{}", hashlib.sha256).digest()).decode()
    assert signature == "v1," + expected


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "msg\n1"])
def test_standard_signature_refuses_ids_that_would_blur_the_signed_string(msg_id: str) -> None:
    with pytest.raises(ValueError, match="webhook id"):
        standard_signature(STD_SECRET, msg_id, 1614265330, b"{}")


def test_verify_standard_accepts_the_vector_and_returns_the_id() -> None:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert verify_standard(VECTOR_SECRET, headers, VECTOR_BODY, VECTOR_NOW) == VECTOR_ID


def test_verify_standard_accepts_headers_in_any_case_and_in_a_multidict() -> None:
    headers = standard_headers(STD_SECRET, "msg_1", BODY, NOW)
    titled = {"Webhook-Id": headers["webhook-id"], "WEBHOOK-TIMESTAMP": headers["webhook-timestamp"]}
    titled["Webhook-Signature"] = headers["webhook-signature"]
    assert verify_standard(STD_SECRET, titled, BODY, NOW) == "msg_1"
    assert verify_standard(STD_SECRET, CIMultiDictProxy(CIMultiDict(titled)), BODY, NOW) == "msg_1"


def test_verify_standard_accepts_any_matching_v1_among_several() -> None:
    headers = standard_headers(STD_SECRET, "msg_1", BODY, NOW)
    good = headers["webhook-signature"]
    old_key = standard_signature("whsec_" + base64.b64encode(b"old key " * 4).decode(), "msg_1", 0, BODY)
    for listed in (f"{old_key} {good}", f"{good} {old_key}", f"{ASYMMETRIC} {good}", f"v2,{good[3:]} {good}"):
        rotated = resign(headers, **{"webhook-signature": listed})
        assert verify_standard(STD_SECRET, rotated, BODY, NOW) == "msg_1"
    wrong_only = resign(headers, **{"webhook-signature": f"{old_key} {ASYMMETRIC}"})
    with pytest.raises(SignatureError, match="no v1 signature in the webhook-signature header matches"):
        verify_standard(STD_SECRET, wrong_only, BODY, NOW)


def test_verify_standard_refuses_a_tampered_body_and_a_wrong_secret() -> None:
    headers = standard_headers(STD_SECRET, "msg_1", BODY, NOW)
    for secret, body in ((STD_SECRET, BODY.replace(b"Mention", b"Mentioned")), (VECTOR_SECRET, BODY)):
        with pytest.raises(SignatureError, match="matches") as caught:
            verify_standard(secret, headers, body, NOW)
        text = str(caught.value)
        assert STD_SECRET.removeprefix("whsec_") not in text
        assert headers["webhook-signature"].removeprefix("v1,") not in text


def test_verify_standard_refuses_a_changed_id_or_timestamp() -> None:
    headers = standard_headers(STD_SECRET, "msg_1", BODY, NOW)
    with pytest.raises(SignatureError, match="matches"):
        verify_standard(STD_SECRET, resign(headers, **{"webhook-id": "msg_2"}), BODY, NOW)
    later = str(int(headers["webhook-timestamp"]) + 1)
    with pytest.raises(SignatureError, match="matches"):
        verify_standard(STD_SECRET, resign(headers, **{"webhook-timestamp": later}), BODY, NOW)


def test_verify_standard_refuses_stale_and_future_timestamps() -> None:
    headers = standard_headers(STD_SECRET, "msg_1", BODY, NOW)
    sent = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    assert verify_standard(STD_SECRET, headers, BODY, sent + timedelta(minutes=5)) == "msg_1"
    assert verify_standard(STD_SECRET, headers, BODY, sent - timedelta(minutes=5)) == "msg_1"
    with pytest.raises(SignatureError, match=r"webhook-timestamp header is 301 s old; the limit is 300 s"):
        verify_standard(STD_SECRET, headers, BODY, sent + timedelta(seconds=301))
    with pytest.raises(SignatureError, match=r"webhook-timestamp header is 301 s in the future"):
        verify_standard(STD_SECRET, headers, BODY, sent - timedelta(seconds=301))
    relaxed = timedelta(hours=1)
    assert verify_standard(STD_SECRET, headers, BODY, sent + timedelta(minutes=59), relaxed) == "msg_1"
    with pytest.raises(SignatureError, match="old"):
        verify_standard(STD_SECRET, headers, BODY, sent + timedelta(seconds=11), timedelta(seconds=10))


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_standard_refuses_a_missing_header(missing: str) -> None:
    headers = standard_headers(STD_SECRET, "msg_1", BODY, NOW)
    del headers[missing]
    with pytest.raises(SignatureError, match=f"the {missing} header is missing"):
        verify_standard(STD_SECRET, headers, BODY, NOW)


@pytest.mark.parametrize("timestamp", ["soon", "1795687200.0", "+1795687200", "-1", "1_795_687_200", "١٢٣"])
def test_verify_standard_refuses_a_malformed_timestamp(timestamp: str) -> None:
    headers = resign(standard_headers(STD_SECRET, "msg_1", BODY, NOW), **{"webhook-timestamp": timestamp})
    with pytest.raises(SignatureError, match="must be Unix seconds, digits only"):
        verify_standard(STD_SECRET, headers, BODY, NOW)


@pytest.mark.parametrize(
    "signature",
    [
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",  # no version
        "v1,",  # no value
        "v1",
        "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",  # unknown version only
        ASYMMETRIC,
    ],
)
def test_verify_standard_refuses_a_signature_header_without_a_v1_entry(signature: str) -> None:
    headers = resign(standard_headers(STD_SECRET, "msg_1", BODY, NOW), **{"webhook-signature": signature})
    with pytest.raises(SignatureError, match="holds no v1 signature"):
        verify_standard(STD_SECRET, headers, BODY, NOW)


def test_verify_standard_refuses_a_non_ascii_or_undecodable_signature_without_crashing() -> None:
    headers = standard_headers(STD_SECRET, "msg_1", BODY, NOW)
    for odd in ("v1,ñññ", "v1,\udcff\udcfe"):
        with pytest.raises(SignatureError, match="matches"):
            verify_standard(STD_SECRET, resign(headers, **{"webhook-signature": odd}), BODY, NOW)
    with pytest.raises(SignatureError, match="not valid UTF-8"):
        verify_standard(STD_SECRET, resign(headers, **{"webhook-id": "msg_\ud800"}), BODY, NOW)


def test_verify_standard_refuses_a_naive_now() -> None:
    headers = standard_headers(STD_SECRET, "msg_1", BODY, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_standard(STD_SECRET, headers, BODY, NOW.replace(tzinfo=None))
