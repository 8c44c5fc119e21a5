"""Property-based fuzzing of the public HTTP surface: no request gets a 500 or a dropped connection.

How Hypothesis meets asyncio here: the app and its HTTP client live on the test's event loop, while
``@given`` wants a plain function it can call again and again (and again while shrinking). So the async test
runs the ``@given`` function in a worker thread (``asyncio.to_thread``), and that function hands each
generated request to the event loop with ``asyncio.run_coroutine_threadsafe`` and checks the answer. The
loop stays free to serve the app meanwhile, and Hypothesis keeps all of its machinery: every example is a
real request checked on the spot, a failure is shrunk to a minimal request, and distinct server bugs are
reported separately. (Generating a list of requests first and sending them afterwards would lose shrinking;
``.example()`` is not meant for tests.)

Each generated request is a well-formed request for one documented operation with up to three of its parts
(method, path, query, authorization, other headers, body) made wild, so that a request wrong in one way gets
past the other checks and reaches deeper code; even well-formed parts carry absurd values. Requests hold
placeholders such as ``{room_id}`` or ``{admin_token}``, replaced at send time by real ids from a ``World``
that is rebuilt whenever a request deletes or regenerates something, so that every example, also while
shrinking, can reach the handlers behind the id checks. ``SEEDS`` are explicit examples of shapes that broke
the server once; they run first, every time.

The webhook URLs (``/hooks/{key}``, Discord's ``/api/webhooks/{id}/{token}``, Chime's
``/incomingwebhooks/{id}``) get a test of their own: Slack/Mattermost, Teams, Discord, Chime and template
bodies built from their senders' documented shapes, as JSON, Slack's ``payload=`` form and Discord's
multipart form, to webhooks of every ``auth`` (a token in the path, a Bearer header, a Standard Webhooks
signature made at send time). Their answers come in the senders' dialects (Slack's error names in
text/plain, Discord's JSON), so a request of the documented method, path and headers is judged by the
OpenAPI document instead: its status must be documented and its body must match the documented schema.

By default the run is derandomized (the same examples every time, as CI needs) and sends a few hundred
requests; set ``CHIMEBOT_FUZZ_EXAMPLES=5000`` to explore that many fresh random examples instead.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import json
import logging
import os
import re
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from chimebot import secrets
from chimebot.errors import DomainError
from chimebot.http.pages import OPENAPI
from chimebot.models import User
from chimebot.store import accounts as qa
from tests.conftest import Harness, declare_bot
from webhooks import discord, signing, slack

try:  # optional, as in test_openapi: with it, the webhook URLs' answers are checked against their schemas
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None

T = TypeVar("T")

EXPLORE = int(os.environ.get("CHIMEBOT_FUZZ_EXAMPLES", "0") or 0)
# The deterministic CI run: 600 HTTP requests and 200 WebSocket handshakes, about 10 s on 2 cores.
HTTP_EXAMPLES = EXPLORE or 600
# The webhook URLs again, alone: they read the most kinds of body (and of credentials) of any route.
WEBHOOK_EXAMPLES = EXPLORE or 500
WS_EXAMPLES = max(EXPLORE // 4, 200) if EXPLORE else 200


def fuzz_settings(examples: int) -> settings:
    """Deterministic for CI unless CHIMEBOT_FUZZ_EXAMPLES asks for an exploring run."""
    return settings(
        max_examples=examples,
        deadline=None,  # a request's time depends on the machine; a slow one is not a bug here
        derandomize=not EXPLORE,
        database=None,  # replaying saved examples would make CI depend on the state of a local directory
        print_blob=bool(EXPLORE),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# -- what can be requested -------------------------------------------------------------------------------

DOC = json.loads(OPENAPI.read_text(encoding="utf-8"))
VERBS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
OPERATIONS = [(m.upper(), path) for path, item in DOC["paths"].items() for m in item if m in VERBS]
ODD_METHODS = [
    "GET",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "HEAD",
    "OPTIONS",
    "TRACE",
    "PROPFIND",
    "MKCOL",
    "X-FOO",
]

# Which real ids a path parameter of that name is normally given.
REAL_FOR_PARAM = {
    "room_id": ["room_id", "room_id", "other_room_id"],
    "user_id": ["user_id", "admin_id"],
    "webhook_id": ["webhook_id"],
    "token_id": ["token_id"],
    "token": ["signin_token", "invitation_token"],
    "account_id": ["account_id"],
    "meeting_id": ["meeting_id"],
    "domain": ["domain"],
    "name": ["bot_name"],
    # /hooks/{key}: a token, or the id of a webhook whose token comes in a header or that is signed.
    "key": [
        "webhook_token",
        "webhook_token",
        "template_webhook_token",
        "bearer_webhook_id",
        "signed_webhook_id",
        "webhook_id",
    ],
}
# Where one route gives a parameter other ids than its name usually stands for.
REAL_FOR_ROUTE_PARAM = {
    ("/incomingwebhooks/{webhook_id}", "webhook_id"): [
        "webhook_id",
        "webhook_id",
        "bearer_webhook_id",
        "signed_webhook_id",
    ],
    # Discord's URL: the plain webhook with its own token; the signed one, whose path token is not read.
    ("/api/webhooks/{webhook_id}/{token}", "webhook_id"): ["webhook_id", "webhook_id", "signed_webhook_id"],
    ("/api/webhooks/{webhook_id}/{token}", "token"): ["webhook_token"],
}
HOOKS = "/hooks/{key}"
DISCORD = "/api/webhooks/{webhook_id}/{token}"
CHIME = "/incomingwebhooks/{webhook_id}"
WEBHOOK_URLS = (HOOKS, DISCORD, CHIME)


def real_for(template: str, param: str) -> list[str]:
    """The world keys a path parameter of a route is normally given."""
    return REAL_FOR_ROUTE_PARAM.get((template, param), REAL_FOR_PARAM[param])


WORLD_KEYS = [
    "room_id",
    "other_room_id",
    "user_id",
    "admin_id",
    "webhook_id",
    "webhook_token",
    "template_webhook_token",
    "bearer_webhook_id",
    "bearer_webhook_token",
    "signed_webhook_id",
    "token_id",
    "signin_token",
    "invitation_token",
    "account_id",
    "meeting_id",
    "domain",
    "bot_name",
    "admin_token",
    "member_token",
    "cursor",
]
PLACEHOLDER = re.compile(r"\{(\w+)\}")
BODY_PLACEHOLDER = re.compile(rb"\{(\w+)\}")
# Header values that stand for a Standard Webhooks signature of the body as sent, made at send time.
SIGNATURE, TIMESTAMP = "{signature}", "{timestamp}"
# aiohttp refuses request and header lines over 8190 bytes; a little margin keeps the judgement exact enough.
LONG_LINE = 8000
MEMBER_EMAIL = "fuzz-member@example.com"

# Already percent-encoded path/query pieces that decoders trip over.
RAW_PIECES = [
    "..",
    ".",
    "%2e%2e",
    "%2E",
    "%2F",
    "%2f..%2f",
    "%00",
    "%ff",
    "%ED%A0%80",
    "%C0%AF",
    "%zz",
    "%",
    "%%",
    "%25",
    "~",
    "%20",
    ";x=1",
    "a;b",
    "@",
    ":",
    "+",
    "*",
    "'",
    "%0d%0a",
    "%7B%7D",
    "%F0%9F%98%80",
]


def encoded(text: str) -> str:
    """Percent-encode every character that is not unreserved, as a careful client would."""
    return quote(text, safe="", errors="surrogatepass")


# Header values travel as UTF-8; control characters (and surrogates) cannot be put on the wire at all.
header_text = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40)
junk_text = st.text(max_size=40)
# Strings as JSON can carry them: lone surrogates, NUL, bidi overrides, BOMs.
NASTY_CHARS = ["\ud800", "\udfff", "\ud83d", "\x00", "\u202e", "\ufeff", "😀"]
nasty_mix = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(NASTY_CHARS)), min_size=1, max_size=5)
nasty_text = st.one_of(st.text(max_size=60), nasty_mix.map("".join), nasty_mix.map("".join))


def long_piece(n: int, char: str) -> str:
    """An encoded segment of about ``n`` characters."""
    return encoded(char * n)[:n] if char.isascii() else encoded(char * (n // 6 + 1))


long_pieces = st.builds(
    long_piece, st.sampled_from([64, 255, 256, 1024, 4000, 8200, 9000]), st.sampled_from(["a", "A", "é", "%"])
)


def placeholders(names: list[str]) -> st.SearchStrategy[str]:
    """``{name}`` placeholders, resolved to real ids or secrets when the request is sent."""
    return st.sampled_from([f"{{{n}}}" for n in names])


def rarely(draw: st.DrawFn, tenths: int) -> bool:
    """True ``tenths`` times in ten; False is the simpler choice, so shrinking drops the unusual."""
    return draw(st.integers(0, 9)) >= 10 - tenths


def path_segment(template: str, param: str) -> st.SearchStrategy[str]:
    """A wild value for one path parameter: another kind of id, junk, broken encodings, very long."""
    junk = st.one_of(junk_text.map(encoded), st.sampled_from(RAW_PIECES), long_pieces)
    real = placeholders(real_for(template, param))
    return st.one_of(
        real,
        placeholders(WORLD_KEYS),
        junk,
        st.lists(st.one_of(real, junk), min_size=2, max_size=3).map("".join),
    )


@st.composite
def paths(draw: st.DrawFn, template: str, wild: bool) -> str:
    """A path for a documented template with real ids, or (``wild``) with anything in them; "" is no route."""
    if not template:
        pieces = draw(st.lists(st.one_of(junk_text.map(encoded), st.sampled_from(RAW_PIECES)), max_size=4))
        start = draw(
            st.sampled_from(["/", "/api/v1/", "/incomingwebhooks/", "/signin/", "/hooks/", "/api/webhooks/"])
        )
        return start + "/".join(pieces)
    if not wild:
        return PLACEHOLDER.sub(lambda m: draw(placeholders(real_for(template, m.group(1)))), template)
    path = PLACEHOLDER.sub(lambda m: draw(path_segment(template, m.group(1))), template)
    if draw(st.booleans()):
        path = draw(st.sampled_from(["/", "/api/v1/..", "/api/v1/%2e%2e"])) + path
    if draw(st.booleans()):
        path += draw(st.sampled_from(["/", "//", "/..", "/.", "/x", "%2F", ";x"]))
    return path


def b64(raw: bytes) -> str:
    """URL-safe base64 without padding, as cursors are made."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


numbers = st.one_of(
    st.sampled_from(["9" * 19, "1" * 4300, "1" * 4301, "1" * 6000]),  # past int64, past int()'s 4300 digits
    st.integers(-5, 300).map(str),
    st.integers(0, 10**40).map(str),
    st.sampled_from(
        [
            "",
            "-1",
            "+1",
            "0",
            "00",
            "1e3",
            "0x10",
            " 1",
            "1 ",
            "1.5",
            "\u0661\u0662",
            "\uff11\uff12",
            "\u00b2",
            "NaN",
            "9" * 18,
        ]
    ),
)
cursors = st.one_of(
    st.just("{cursor}"),
    st.integers(0, 10**40).map(lambda n: b64(f"m{n}".encode())),
    st.binary(max_size=24).map(b64),
    st.sampled_from(["m1", "bTE", "====", "m", "bQ", "bS0x", "bTE5OTk5OTk5OTk5OTk5OTk5OTk5"]),
    junk_text,
)
secrets_ = st.one_of(
    placeholders(["webhook_token", "bearer_webhook_token", "admin_token", "member_token", "signin_token"]),
    junk_text,
)
QUERY_VALUES: dict[str, st.SearchStrategy[str]] = {
    "since": numbers,
    "limit": numbers,
    "cursor": cursors,
    "token": secrets_,
    "wait": st.one_of(st.sampled_from(["true", "true", "TRUE", "false", "1", ""]), junk_text),
}


def query_value(value: str) -> str:
    """Encode a query value, leaving placeholders to be resolved."""
    return value if PLACEHOLDER.fullmatch(value) else encoded(value)


# The query parameters each route reads.
QUERY_KEYS_FOR = {
    "/api/v1/rooms/{room_id}/messages": ["limit", "cursor"],
    "/api/v1/stream": ["since"],
    HOOKS: ["wait"],
    DISCORD: ["wait"],
}


@st.composite
def queries(draw: st.DrawFn, template: str, wild: bool) -> str:
    """The parameters a route reads, with values from valid to absurd; ``wild`` adds junk of any kind."""
    parts = []
    # The webhook's own token, so that its body is read; a wild query may drop it.
    if template == CHIME and not (wild and draw(st.booleans())):
        parts.append("token={webhook_token}")
    for key in QUERY_KEYS_FOR.get(template, []):
        if draw(st.booleans()):
            parts.append(f"{key}={draw(QUERY_VALUES[key].map(query_value))}")
    for _ in range(draw(st.integers(1, 3)) if wild else 0):
        key = draw(st.sampled_from([*QUERY_VALUES, "junk"]))
        if key == "junk":
            parts.append(draw(st.one_of(junk_text.map(encoded), st.sampled_from(RAW_PIECES))))
            continue
        value = draw(st.one_of(QUERY_VALUES[key].map(query_value), st.sampled_from(RAW_PIECES)))
        parts.append(f"{key}={value}")
    return "&".join(parts)


odd_authorizations = st.one_of(
    st.sampled_from(
        [
            None,
            "bearer {admin_token}",
            "BEARER   {admin_token}  ",
            "Bearer",
            "Bearer ",
            "Bearer {webhook_token}",
            "Bearer {bearer_webhook_token}",
            "Basic YWRtaW46YWRtaW4=",
            "Token {admin_token}",
            "Bearer {admin_token} junk",
            "Bearer " + "x" * 9000,
        ]
    ),
    header_text.map(lambda s: "Bearer " + s),
    header_text,
)
content_types = st.sampled_from(
    [
        None,
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "text/plain",
        "text/html",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "application/octet-stream",
        "*/*",
        "",
        ";;;",
    ]
)
accepts = st.sampled_from([None, None, "application/json", "text/html", "*/*", "application/json;q=0"])
extras = st.one_of(
    st.sampled_from(
        [
            ("Content-Encoding", "gzip"),
            ("Content-Encoding", "deflate"),
            ("Content-Encoding", "identity"),
            ("Content-Encoding", "br"),
            ("Content-Encoding", "junk"),
            ("Content-Encoding", "gzip+valid"),
            ("Expect", "100-continue"),
            ("Expect", "junk"),
            ("Origin", "null"),
        ]
    ),
    st.tuples(
        st.sampled_from(
            [
                "X-Forwarded-For",
                "Idempotency-Key",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "X-GitHub-Event",
                "X-" + "a" * 50,
            ]
        ),
        header_text,
    ),
)

FIELDS = ["name", "content", "format", "email", "is_admin", "Content", "token"]
FIELDS += [
    "emails",
    "license",
    "type",
    "start_at",
    "password",
    "full_name",
    "domain",
    "time_zone",
    "settings",
]
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        nasty_text,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), junk_text), inner, max_size=3),
    ),
    max_leaves=8,
)
# Objects close to what each route expects, so that validation is passed and deeper code is reached.
names = st.fixed_dictionaries({"name": nasty_text})
contents = st.fixed_dictionaries(
    {"content": nasty_text},
    optional={"format": st.sampled_from(["text", "markdown", "code", "html", ""])},
)
memberships = st.fixed_dictionaries(
    {
        "email": st.one_of(
            st.sampled_from([MEMBER_EMAIL, "admin@localhost", "nobody@example.com"]), nasty_text
        )
    },
    optional={"is_admin": st.one_of(st.booleans(), json_values)},
)
roles = st.fixed_dictionaries({"is_admin": st.one_of(st.booleans(), json_values)})
addresses = st.one_of(
    st.sampled_from([MEMBER_EMAIL, "admin@localhost", "new@fuzz.example", "Bad Address", ""]), nasty_text
)
passwords = st.one_of(st.sampled_from(["correct horse battery", "short", ""]), nasty_text)
sessions = st.fixed_dictionaries({"email": addresses, "password": passwords})
signups = st.fixed_dictionaries({"email": addresses})
acceptances = st.fixed_dictionaries(
    {"token": st.one_of(st.just("{invitation_token}"), nasty_text)},
    optional={"full_name": nasty_text, "display_name": nasty_text, "password": passwords},
)
invitations = st.fixed_dictionaries({"emails": st.one_of(st.lists(addresses, max_size=3), json_values)})
user_changes = st.fixed_dictionaries(
    {},
    optional={
        "license": st.one_of(st.sampled_from(["basic", "pro", "gold"]), json_values),
        "is_admin": st.one_of(st.booleans(), json_values),
        "full_name": nasty_text,
        "display_name": nasty_text,
    },
)
own_changes = st.fixed_dictionaries(
    {}, optional={"display_name": nasty_text, "password": passwords, "current_password": passwords}
)
account_changes = st.fixed_dictionaries(
    {},
    optional={
        "name": nasty_text,
        "type": st.one_of(st.sampled_from(["team", "enterprise", "club"]), json_values),
        "time_zone": st.one_of(
            st.sampled_from(["UTC", "Europe/Berlin", "Mars/Olympus", "../etc"]), nasty_text
        ),
        "settings": st.one_of(
            st.fixed_dictionaries({}, optional={"remote_control": json_values, "dial_out": st.booleans()}),
            json_values,
        ),
    },
)
domains = st.fixed_dictionaries(
    {"domain": st.one_of(st.sampled_from(["fuzz.example", "example.com", "-bad-.x", ""]), nasty_text)}
)
meetings = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(["instant", "scheduled", "webinar"]), json_values),
        "topic": nasty_text,
        "start_at": st.one_of(
            st.sampled_from(
                [
                    "2026-03-01T09:00:00Z",
                    "2026-03-01T09:00:00",
                    "yesterday",
                    "9999-12-31T23:59:59-14:00",
                    "0001-01-01T00:00:00+01:00",
                ]
            ),
            nasty_text,
            json_values,
        ),
    },
)
chime_contents = st.builds(
    lambda prefix, text: {"Content": prefix + text},
    st.sampled_from(
        ["", "/md ", "/code ", "@All ", "@Present ", "@fuzz-member ", f"@{MEMBER_EMAIL} ", "/md"]
    ),
    nasty_text,
)
any_objects = st.dictionaries(st.one_of(st.sampled_from(FIELDS), junk_text), json_values, max_size=5)
plausible_objects = st.one_of(names, contents, memberships, roles, chime_contents, any_objects)


def near_limit(key: str, prefix: str, char: str, n: int) -> dict[str, str]:
    """An object whose one string is around one of the size limits (4096 or 16384 characters, 65536 bytes)."""
    return {key: prefix + char * n}


def big_objects(*keys: str) -> st.SearchStrategy[dict[str, str]]:
    """Objects with one string around a size limit, under one of ``keys``."""
    return st.builds(
        near_limit,
        st.sampled_from(keys),
        st.sampled_from(["", "/md ", "/code "]),
        st.sampled_from(["a", "é", "😀", " ", "@"]),
        st.sampled_from([4095, 4096, 4097, 16383, 16384, 16385, 21844, 65000, 65536]),
    )


def dump(obj: Any, ascii_only: bool) -> bytes:
    """JSON bytes; without ``ensure_ascii`` a lone surrogate becomes bytes that are not UTF-8."""
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.none(),
    st.just(b""),
    st.builds(dump, plausible_objects, st.booleans()),
    st.builds(dump, plausible_objects, st.booleans()),
    st.builds(dump, json_values, st.booleans()),
    st.builds(dump, big_objects("Content", "content", "name"), st.booleans()),
    st.binary(max_size=200),
    st.sampled_from(
        [
            b'{"Content": "\xff\xfe"}',
            b'{"name": "\xc3"}',
            b"\xef\xbb\xbf{}",
            b"{",
            b"[]",
            b"null",
            b"1",
            b'"s"',
            b"NaN",
            b"1" * 5000,
            b"1e999999",
            b'{"name": 1e999999}',
            b"name=x",
            b"--xyz\r\n\r\n--xyz--",
        ]
    ),
    st.sampled_from([100, 1000, 100_000]).map(lambda n: b"[" * n),
    st.sampled_from([100, 1000, 50_000]).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.builds(
        lambda n, filler: filler * n,
        st.sampled_from([65535, 65536, 65537, 262143, 262144, 262145, 300000]),
        st.sampled_from([b"a", b" "]),
    ),
)


def route_bodies(objects: st.SearchStrategy[Any], big_key: str) -> st.SearchStrategy[bytes]:
    """JSON bodies of the shape a route reads, now and then with a string near a size limit."""
    return st.builds(dump, st.one_of(objects, objects, objects, big_objects(big_key)), st.booleans())


ROUTE_BODIES = {
    ("POST", "/api/v1/rooms"): route_bodies(names, "name"),
    ("POST", "/api/v1/tokens"): route_bodies(names, "name"),
    ("POST", "/api/v1/rooms/{room_id}/webhooks"): route_bodies(names, "name"),
    ("POST", "/api/v1/rooms/{room_id}/members"): route_bodies(memberships, "email"),
    ("PATCH", "/api/v1/rooms/{room_id}/members/{user_id}"): route_bodies(roles, "is_admin"),
    ("POST", "/api/v1/rooms/{room_id}/messages"): route_bodies(contents, "content"),
    ("POST", "/incomingwebhooks/{webhook_id}"): route_bodies(chime_contents, "Content"),
    ("POST", "/api/v1/sessions"): route_bodies(sessions, "password"),
    ("POST", "/api/v1/signup"): route_bodies(signups, "email"),
    ("POST", "/api/v1/invitations/accept"): route_bodies(acceptances, "full_name"),
    ("POST", "/api/v1/accounts/{account_id}/invitations"): route_bodies(invitations, "emails"),
    ("PATCH", "/api/v1/users/{user_id}"): route_bodies(user_changes, "full_name"),
    ("PATCH", "/api/v1/me"): route_bodies(own_changes, "display_name"),
    ("PATCH", "/api/v1/accounts/{account_id}"): route_bodies(account_changes, "name"),
    ("POST", "/api/v1/accounts/{account_id}/domains"): route_bodies(domains, "domain"),
    ("POST", "/api/v1/meetings"): route_bodies(meetings, "topic"),
}


# -- the webhook URLs: bodies as Slack/Mattermost, Teams, Discord and Chime senders send them -----------

URLS = st.sampled_from(
    [
        "https://ci.example.com/42",
        "http://x",
        "mailto:ops@example.com",
        "javascript:alert(1)",
        "ftp://old.example",
        "//evil.example",
        "",
        "example.com",
        "https://a.example/" + "a" * 3000,
        "https://a.example/(x)[y]<z>",
    ]
)
# Pieces of Slack mrkdwn (or Mattermost Markdown) that the renderer translates, to mix with junk.
MRKDWN = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!all>",
    "@channel",
    "@here",
    "<https://ci.example.com/42|build 42>",
    "<https://ci.example.com>",
    "<mailto:a@example.com|mail>",
    "<javascript:alert(1)|x>",
    "<javascript:x>",
    "<@U123|alice>",
    "<@U123>",
    "<#C123|general>",
    "<!subteam^S123>",
    "<!subteam^S123|@ops>",
    "<!date^1392734382^{date_num} {time}|Feb 18>",
    "<!date^99999999999999999999^{date}|far>",
    "<!date^-99999999999^{date_long}^https://x|x>",
    "<!date^x>",
    "```code```",
    "```\nfenced\n```",
    "`x`",
    "*bold*",
    "~strike~",
    "_it_",
    "&amp; &lt; &gt;",
    "<",
    ">",
    "|",
    "\n",
    "> quote",
    "[md](https://x)",
    "@All",
    "@fuzz-member",
    f"@{MEMBER_EMAIL}",
    "<at>alice</at>",
    "{{DATE(2026-01-05T09:00:00Z, SHORT)}}",
]
mrkdwn = st.one_of(
    nasty_text, st.lists(st.one_of(st.sampled_from(MRKDWN), nasty_text), min_size=1, max_size=6).map("".join)
)
texts = st.one_of(mrkdwn, mrkdwn, mrkdwn, json_values)  # now and then a value of the wrong type


def some(**optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with any of these keys."""
    return st.fixed_dictionaries({}, optional=optional)


def typed(kind: str | list[str], **required: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A Slack block or Adaptive Card element: ``type`` and the keys it needs."""
    kinds = st.just(kind) if isinstance(kind, str) else st.sampled_from(kind)
    return st.fixed_dictionaries({"type": kinds, **required})


slack_text_objects = st.fixed_dictionaries(
    {"type": st.sampled_from(["mrkdwn", "plain_text", "junk"]), "text": texts},
    optional={"emoji": st.booleans()},
)
slack_elements = st.one_of(
    typed("button", text=slack_text_objects, url=URLS),
    typed("button", text=slack_text_objects),
    typed(["static_select", "datepicker", "overflow", "users_select"], placeholder=slack_text_objects),
    typed("image", image_url=URLS, alt_text=texts),
    slack_text_objects,
    json_values,
)
slack_blocks = st.one_of(
    typed("section", text=slack_text_objects),
    typed("section", fields=st.lists(slack_text_objects, max_size=3), accessory=slack_elements),
    typed("header", text=slack_text_objects),
    typed("divider"),
    typed(["context", "actions"], elements=st.one_of(st.lists(slack_elements, max_size=3), json_values)),
    typed("image", image_url=URLS, alt_text=texts),
    typed(["input", "rich_text", "video", "file", "junk"], elements=json_values),
    json_values,
)
slack_attachments = some(
    fallback=texts,
    color=st.one_of(st.sampled_from(["good", "warning", "danger", "#36a64f", "#zzz", ""]), texts),
    pretext=texts,
    author_name=texts,
    author_link=URLS,
    title=texts,
    title_link=URLS,
    text=texts,
    fields=st.one_of(st.lists(some(title=texts, value=texts, short=st.booleans()), max_size=3), json_values),
    image_url=URLS,
    footer=texts,
    ts=st.one_of(numbers, st.integers(-(10**20), 10**20), st.floats()),
    actions=st.lists(some(type=st.sampled_from(["button", "select"]), text=texts, url=URLS), max_size=2),
    blocks=st.lists(slack_blocks, max_size=2),
)
slack_lists = st.one_of(
    st.lists(slack_attachments, max_size=3),
    st.just([{"text": "a"}] * (slack.MAX_ATTACHMENTS + 1)),
    json_values,
)
SLACK_EXTRAS: dict[str, st.SearchStrategy[Any]] = {
    "username": texts,
    "icon_emoji": st.just(":ghost:"),
    "icon_url": URLS,
    # Rooms by id or name, resolved at send time; honoured by the unlocked (bearer) webhook only.
    "channel": st.one_of(
        st.sampled_from(
            ["{other_room_id}", "#{other_room_id}", "{room_id}", "#general", "nowhere", "@alice", ""]
        ),
        texts,
    ),
    "attachments": slack_lists,
    "blocks": st.one_of(st.lists(slack_blocks, max_size=4), json_values),
}


def without(keys: dict[str, T], key: str) -> dict[str, T]:
    """The optional keys of an object whose ``key`` is required."""
    return {k: v for k, v in keys.items() if k != key}


slack_bodies = st.one_of(
    st.fixed_dictionaries({"text": texts}, optional=SLACK_EXTRAS),
    st.fixed_dictionaries({"attachments": slack_lists}, optional=without(SLACK_EXTRAS, "attachments")),
    st.fixed_dictionaries(
        {"blocks": st.lists(slack_blocks, max_size=4)}, optional=without(SLACK_EXTRAS, "blocks")
    ),
    st.fixed_dictionaries(  # Mattermost
        {"props": some(attachments=slack_lists, card=texts)}, optional={"text": texts, "username": texts}
    ),
)

message_cards = st.fixed_dictionaries(
    {
        "@type": st.sampled_from(["MessageCard", "messagecard"]),
        "@context": st.just("https://schema.org/extensions"),
    },
    optional={
        "summary": texts,
        "title": texts,
        "text": texts,
        "themeColor": st.sampled_from(["0076D7", "red", ""]),
        "sections": st.one_of(
            st.lists(
                some(
                    activityTitle=texts,
                    activitySubtitle=texts,
                    activityImage=URLS,
                    activityText=texts,
                    title=texts,
                    text=texts,
                    markdown=st.booleans(),
                    facts=st.one_of(st.lists(some(name=texts, value=texts), max_size=3), json_values),
                    images=st.lists(some(image=URLS, title=texts), max_size=2),
                    potentialAction=json_values,
                ),
                max_size=3,
            ),
            json_values,
        ),
        "potentialAction": st.one_of(
            st.lists(
                st.one_of(
                    st.fixed_dictionaries(
                        {
                            "@type": st.just("OpenUri"),
                            "name": texts,
                            "targets": st.lists(some(os=st.just("default"), uri=URLS), max_size=2),
                        }
                    ),
                    st.fixed_dictionaries(
                        {"@type": st.sampled_from(["HttpPOST", "ActionCard", "ViewAction"]), "name": texts},
                        optional={"target": st.lists(URLS, max_size=1)},
                    ),
                    json_values,
                ),
                max_size=3,
            ),
            json_values,
        ),
    },
)
adaptive_actions = st.lists(
    st.one_of(
        typed("Action.OpenUrl", title=texts, url=URLS),
        typed(["Action.Submit", "Action.ShowCard", "Action.Execute", "Action.Junk"], title=texts),
        json_values,
    ),
    max_size=3,
)
text_runs = st.one_of(
    texts,
    st.fixed_dictionaries(
        {"type": st.just("TextRun"), "text": texts},
        optional={
            "weight": st.sampled_from(["Bolder", "Default"]),
            "italic": st.booleans(),
            "strikethrough": st.booleans(),
            "selectAction": typed("Action.OpenUrl", url=URLS),
        },
    ),
)
adaptive_leaves = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("TextBlock"), "text": texts},
        optional={
            "weight": st.sampled_from(["Bolder", "Default"]),
            "size": st.sampled_from(["Large", "Small"]),
        },
    ),
    typed("FactSet", facts=st.one_of(st.lists(some(title=texts, value=texts), max_size=3), json_values)),
    typed("Image", url=URLS),
    typed("RichTextBlock", inlines=st.lists(text_runs, max_size=3)),
    typed("ActionSet", actions=adaptive_actions),
    typed(["Input.Text", "Input.ChoiceSet", "Media", "Table", "Junk"]),
    json_values,
)
adaptive_elements = st.recursive(
    adaptive_leaves,
    lambda inner: st.one_of(
        typed("Container", items=st.lists(inner, max_size=3)),
        typed("ColumnSet", columns=st.lists(typed("Column", items=st.lists(inner, max_size=2)), max_size=3)),
    ),
    max_leaves=8,
)
adaptive_cards = st.fixed_dictionaries(
    {"type": st.just("AdaptiveCard"), "body": st.lists(adaptive_elements, max_size=4)},
    optional={
        "version": st.sampled_from(["1.4", "1.5", "9"]),
        "$schema": st.just("http://adaptivecards.io/schemas/adaptive-card.json"),
        "actions": adaptive_actions,
        "msteams": st.just({"entities": [{"type": "mention", "text": "<at>alice</at>", "mentioned": {}}]}),
    },
)


def nested_card(depth: int) -> dict[str, Any]:
    """An Adaptive Card with containers nested ``depth`` deep (cards nest; a hostile one nests a lot)."""
    element: dict[str, Any] = {"type": "TextBlock", "text": f"depth {depth}"}
    for _ in range(depth):
        element = {"type": "Container", "items": [element]}
    return {"type": "AdaptiveCard", "body": [element]}


teams_bodies = st.one_of(
    message_cards,
    adaptive_cards,
    st.builds(
        lambda cards, kind: {
            "type": "message",
            "attachments": [{"contentType": kind, "contentUrl": None, "content": card} for card in cards],
        },
        st.lists(st.one_of(adaptive_cards, message_cards), min_size=1, max_size=2),
        st.sampled_from(
            [
                "application/vnd.microsoft.card.adaptive",
                "application/vnd.microsoft.teams.card.o365connector",
                "application/vnd.microsoft.card.hero",
            ]
        ),
    ),
    st.sampled_from([20, 33, 200, 300]).map(nested_card),
)

discord_embeds = some(
    title=texts,
    description=texts,
    url=URLS,
    color=st.one_of(st.integers(-1, 2**24), json_values),
    timestamp=st.one_of(
        st.sampled_from(
            [
                "2026-01-05T09:00:00.000Z",
                "2026-01-05T09:00:00+01:00",
                "2026-13-45T99:00:00Z",
                "9999-12-31T23:59:59.999999-14:00",
                "yesterday",
                "",
            ]
        ),
        json_values,
    ),
    author=st.one_of(some(name=texts, url=URLS, icon_url=URLS), json_values),
    footer=st.one_of(some(text=texts, icon_url=URLS), json_values),
    fields=st.one_of(
        st.lists(
            st.fixed_dictionaries({"name": texts, "value": texts}, optional={"inline": st.booleans()}),
            max_size=3,
        ),
        json_values,
    ),
    image=some(url=URLS),
    thumbnail=some(url=URLS),
)
DISCORD_EXTRAS: dict[str, st.SearchStrategy[Any]] = {
    "username": texts,
    "avatar_url": URLS,
    "tts": st.booleans(),
    "allowed_mentions": some(parse=st.lists(st.sampled_from(["everyone", "users", "roles"]), max_size=3)),
    "components": json_values,
    "poll": json_values,
    "attachments": json_values,
    "flags": st.integers(0, 1 << 16),
    "thread_name": texts,
}
discord_bodies = st.one_of(
    st.fixed_dictionaries(
        {"content": texts}, optional=DISCORD_EXTRAS | {"embeds": st.lists(discord_embeds, max_size=2)}
    ),
    st.fixed_dictionaries(
        {"embeds": st.one_of(st.lists(discord_embeds, max_size=discord.MAX_EMBEDS + 1), json_values)},
        optional=DISCORD_EXTRAS | {"content": texts},
    ),
)
# What a template webhook gets: any JSON, often with the fields the generic template looks for.
template_bodies = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from(["text", "message", "title", "summary", "content", "alerts", "status"]),
        texts,
        max_size=4,
    ),
)
hook_objects = st.one_of(slack_bodies, teams_bodies, discord_bodies, chime_contents, template_bodies)
discord_objects = st.one_of(discord_bodies, discord_bodies, discord_bodies, hook_objects)

BOUNDARY = "fuzz-boundary-7d1"
FORM = "application/x-www-form-urlencoded"


def as_json(obj: Any, ascii_only: bool) -> tuple[str, bytes]:
    """A JSON body."""
    return "application/json", dump(obj, ascii_only)


def as_form(field_: str, obj: Any, ascii_only: bool) -> tuple[str, bytes]:
    """Slack's form: the JSON in ``payload`` (or Discord's ``payload_json``), percent-encoded."""
    return FORM, f"{field_}=".encode() + quote(dump(obj, ascii_only), safe="").encode()


def as_fields(fields: dict[str, str]) -> tuple[str, bytes]:
    """A form of plain fields, as Discord's clients may send ``content=``."""
    pairs = (f"{encoded(name)}={encoded(value)}" for name, value in fields.items())
    return FORM, "&".join(pairs).encode()


def as_multipart(
    field_: str, obj: Any, ascii_only: bool, files: list[tuple[str, bytes, str]]
) -> tuple[str, bytes]:
    """Discord's multipart form: the JSON in ``payload_json`` (or ``payload``) and file parts."""
    parts = [(field_, dump(obj, ascii_only), None), *files]
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = b"Content-Type: application/octet-stream\r\n" if filename else b""
        out += (
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
            + kind
            + b"\r\n"
            + value
            + b"\r\n"
        )
    return f"multipart/form-data; boundary={BOUNDARY}", out + f"--{BOUNDARY}--\r\n".encode()


def webhook_bodies(objects: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, bytes]]:
    """(Content-Type, body) as senders post: JSON mostly, Slack's form, Discord's multipart, plain fields."""
    json_field = st.sampled_from(["payload", "payload_json"])
    files = st.lists(
        st.tuples(
            st.sampled_from(["files[0]", "file", "attachment"]),
            st.binary(max_size=40),
            st.sampled_from(["build.log", "a.png", "ü.txt"]),
        ),
        max_size=2,
    )
    return st.one_of(
        st.builds(as_json, objects, st.booleans()),
        st.builds(as_json, objects, st.booleans()),
        st.builds(as_json, objects, st.booleans()),
        st.builds(as_json, big_objects("text", "content", "Content"), st.booleans()),
        st.builds(as_form, json_field, objects, st.booleans()),
        st.builds(
            as_fields,
            st.dictionaries(st.sampled_from(["content", "username", "text", "payload"]), nasty_text),
        ),
        st.builds(as_multipart, json_field, objects, st.booleans(), files),
    )


webhook_settings: dict[str, st.SearchStrategy[Any]] = {
    "dialect": st.one_of(st.sampled_from(["auto", "chime", "slack", "teams", "discord", "irc"]), json_values),
    "locked": st.one_of(st.booleans(), json_values),
    "template": st.one_of(
        st.sampled_from(["generic", "github", "alertmanager", None, "nope", "../x"]), json_values
    ),
    "auth": st.one_of(st.sampled_from(["token", "bearer", "standard-webhooks", "basic"]), json_values),
    "signing_secret": st.one_of(
        st.sampled_from(
            [
                "generate",
                None,
                "whsec_" + base64.b64encode(b"k" * 32).decode(),
                "whsec_" + base64.b64encode(b"k" * 23).decode(),
                "whsec_!!!",
                "plain",
            ]
        ),
        json_values,
    ),
}
new_webhooks = st.fixed_dictionaries({"name": nasty_text}, optional=webhook_settings)
webhook_changes = st.fixed_dictionaries({}, optional=webhook_settings | {"name": nasty_text})

# (Content-Type, body) for each route that reads one.
ROUTE_PAYLOADS = {
    key: bodies_.map(lambda b: ("application/json", b)) for key, bodies_ in ROUTE_BODIES.items()
}
ROUTE_PAYLOADS |= {
    ("POST", "/api/v1/rooms/{room_id}/webhooks"): route_bodies(new_webhooks, "name").map(
        lambda b: ("application/json", b)
    ),
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): route_bodies(webhook_changes, "template").map(
        lambda b: ("application/json", b)
    ),
    ("POST", HOOKS): webhook_bodies(hook_objects),
    ("POST", DISCORD): webhook_bodies(discord_objects),
}
message_ids = st.one_of(st.sampled_from(["msg_1", "msg_1", "msg_2", "m" * 256]), header_text)
idempotency_keys = st.one_of(
    st.none(), st.none(), st.sampled_from(["deploy-1", "deploy-2", "k" * 255, "k" * 256]), header_text
)


@st.composite
def webhook_headers(draw: st.DrawFn, path: str) -> list[tuple[str, str]]:
    """A signature where the path names the signed webhook, and now and then an Idempotency-Key."""
    headers = []
    if "{signed_webhook_id}" in path:
        # The timestamp and signature are made when the request is sent, over the body as sent.
        headers += [
            ("webhook-id", draw(message_ids)),
            ("webhook-timestamp", TIMESTAMP),
            ("webhook-signature", SIGNATURE),
        ]
    key = draw(idempotency_keys)
    if key is not None:
        headers.append(("Idempotency-Key", key))
    return headers


def short(value: object, limit: int = 160) -> str:
    """A repr that stays readable for a 256 KiB body."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...<{len(text)} chars>"


@dataclass(frozen=True)
class Req:
    """One generated HTTP request, with placeholders for real ids and secrets."""

    method: str
    template: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    advance_clock: bool
    exact: bool = False  # the documented method and path, and the route's headers: judged by the document

    def __repr__(self) -> str:
        fields_ = ", ".join(
            f"{name}={short(getattr(self, name))}"
            for name in ("method", "path", "query", "headers", "body", "advance_clock", "exact")
        )
        return f"Req({fields_})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints failing examples with this: keeps 256 KiB bodies out of reports."""
        printer.text(repr(self))


MUTATIONS = ["method", "path", "query", "authorization", "headers", "body"]


@st.composite
def requests(draw: st.DrawFn, operations: tuple[tuple[str, str], ...] = ()) -> Req:
    """A well-formed request for a documented operation, with up to three of its parts made wild.

    Well-formed parts still carry absurd values (lone surrogates, 4097 characters, 40-digit numbers): the
    point is that a request wrong in one or two ways gets past the other checks and reaches deeper code.
    """
    # Every documented operation (or of ``operations``) is drawn equally often; a tenth of the requests for
    # all operations go to paths no route has.
    if operations:
        method, template = draw(st.sampled_from(operations))
    else:
        method, template = draw(st.sampled_from(OPERATIONS)) if not rarely(draw, 1) else ("GET", "")
    wild = set(draw(st.lists(st.sampled_from(MUTATIONS), max_size=3, unique=True)))
    payload = ROUTE_PAYLOADS.get((method, template))
    exact = bool(template) and not wild & {"method", "path", "headers"}
    if "method" in wild:
        method = draw(st.sampled_from(ODD_METHODS))
    path = draw(paths(template, "path" in wild))
    if "authorization" in wild:
        authorization = draw(odd_authorizations)
    elif "{bearer_webhook_id}" in path:
        authorization = "Bearer {bearer_webhook_token}"  # the webhook's own token, where its auth wants it
    elif template in WEBHOOK_URLS:  # they read no personal token; a token webhook takes its own
        authorization = draw(st.sampled_from([None, "Bearer {webhook_token}"]))
    else:
        authorization = draw(st.sampled_from(["Bearer {admin_token}", "Bearer {member_token}"]))
    headers = [("Authorization", authorization)] if authorization is not None else []
    content_type, body = draw(payload) if payload is not None else (None, None)
    if "headers" in wild:
        headers += [
            (n, v) for n, v in (("Content-Type", draw(content_types)), ("Accept", draw(accepts))) if v
        ]
        if draw(st.booleans()):
            headers.append(draw(extras))
    else:
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        if template in WEBHOOK_URLS:
            headers += draw(webhook_headers(path))
    if "body" in wild:
        body = draw(bodies)
    return Req(
        method=method,
        template=template,
        path=path,
        query=draw(queries(template, "query" in wild)),
        headers=tuple(headers),
        body=body,
        advance_clock=not rarely(draw, 2),  # False: meet the webhook rate limit
        exact=exact,
    )


# -- sending and judging ---------------------------------------------------------------------------------


@dataclass
class World:
    """Real ids and secrets that placeholders stand for; rebuilt when a request destroys some of them."""

    app: Harness
    member: User
    member_token: str
    values: dict[str, str] = field(default_factory=dict)
    builds: int = 0

    async def build(self) -> None:
        """Make a fresh room (with a member, a webhook and history), a spare token, a sign-in link, an
        invitation and a meeting, after undoing what earlier requests did to the admin and the member."""
        app, self.builds = self.app, self.builds + 1
        await self.repair()
        room_id = await app.room(f"fuzz-{self.builds}")
        other_room_id = await app.room(f"fuzz-other-{self.builds}", token=self.member_token)
        hook = await app.webhook(room_id, "fuzz")
        template_hook = await self.webhook(room_id, "fuzz-template", template="generic")
        bearer_hook = await self.webhook(room_id, "fuzz-bearer", auth="bearer", locked=False)
        signed_hook = await self.webhook(
            room_id, "fuzz-signed", auth="standard-webhooks", signing_secret="generate"
        )
        resp = await app.client.post(
            f"/api/v1/rooms/{room_id}/members", json={"email": MEMBER_EMAIL}, headers=app.auth()
        )
        assert resp.status == 201, await resp.text()
        for text in ("first @All", "second"):
            resp = await app.client.post(
                f"/api/v1/rooms/{room_id}/messages", json={"content": text}, headers=app.auth()
            )
            assert resp.status == 201, await resp.text()
        resp = await app.client.get(f"/api/v1/rooms/{room_id}/messages?limit=1", headers=app.auth())
        cursor = (await resp.json())["next_cursor"]
        spare = f"fuzz-spare-{self.builds}"
        await app.services.signin.create_token(app.admin, spare)
        [token_id] = [t["id"] for t in await app.services.signin.tokens(app.admin) if t["name"] == spare]
        member = await app.services.accounts.user(MEMBER_EMAIL)
        link = await app.services.signin.signin_link(member)
        invitation_token = await self.invitation(f"invitee-{self.builds}@fuzz.example")
        meeting = await app.services.meetings.create(app.admin, "instant", "fuzz", None)
        await declare_bot(app, "echo")  # a bot, as the config would declare it
        self.values = {
            "room_id": room_id,
            "other_room_id": other_room_id,
            "user_id": self.member.id,
            "admin_id": app.admin.id,
            "webhook_id": hook["id"],
            "webhook_token": hook["token"],
            "template_webhook_token": template_hook["token"],
            "bearer_webhook_id": bearer_hook["id"],
            "bearer_webhook_token": bearer_hook["token"],
            "signed_webhook_id": signed_hook["id"],
            "signed_webhook_secret": signed_hook["signing_secret"],
            "token_id": token_id,
            "signin_token": link.rsplit("/", 1)[1],
            "invitation_token": invitation_token,
            "account_id": app.admin.account_id,
            "meeting_id": meeting.id,
            "domain": "fuzz.example",
            "bot_name": "echo",
            "admin_token": app.token,
            "member_token": self.member_token,
            "cursor": cursor,
        }

    async def repair(self) -> None:
        """Make the admin an active Pro administrator and the member an active Pro member again, with
        working tokens (fuzzed requests suspend, demote, relicense and sign them out)."""
        app = self.app
        async with app.services.store.transaction() as conn:
            for user_id, is_admin in ((app.admin.id, True), (self.member.id, False)):
                await qa.update_user(
                    conn,
                    user_id,
                    {"is_admin": is_admin, "license": "pro", "registration_status": "registered"},
                )
        app.admin = await app.services.accounts.user(app.admin.email)
        self.member = await app.services.accounts.user(MEMBER_EMAIL)
        for attr, owner, holder in (("token", app.admin, app), ("member_token", self.member, self)):
            try:
                await app.services.signin.authenticate(getattr(holder, attr))
            except DomainError:
                setattr(holder, attr, await app.services.signin.create_token(owner, "fuzz"))

    async def webhook(self, room_id: str, name: str, **settings: Any) -> dict[str, Any]:
        """Create a webhook with settings, as an administrator would, and return the answer."""
        resp = await self.app.client.post(
            f"/api/v1/rooms/{room_id}/webhooks", json={"name": name, **settings}, headers=self.app.auth()
        )
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def invitation(self, address: str) -> str:
        """Invite an address and return the token of its link (renewed here, so no mail is read)."""
        app = self.app
        [invited] = await app.services.invitations.invite(app.admin, [address])
        token = secrets.new_token()
        async with app.services.store.transaction() as conn:
            await qa.put_invitation(
                conn,
                account_id=app.admin.account_id,
                user_id=invited.user.id,
                token_hash=secrets.token_hash(token),
                invited_by=app.admin.id,
                at=app.clock.now(),
                expires_at=app.clock.now() + timedelta(days=365),
            )
        return token

    def resolve(self, text: str) -> str:
        """Replace placeholders by the current real values."""
        return PLACEHOLDER.sub(lambda m: self.values.get(m.group(1), m.group(0)), text)

    def resolve_body(self, body: bytes) -> bytes:
        """Replace the placeholders a body holds (an invitation token, a room a Slack `channel` names)."""

        def value(match: re.Match[bytes]) -> bytes:
            found = self.values.get(match.group(1).decode())
            return found.encode() if found is not None else match.group(0)

        return BODY_PLACEHOLDER.sub(value, body)

    def signed(self, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """Headers with the signature placeholders replaced by a Standard Webhooks signature made now."""
        if headers.get("webhook-signature") != SIGNATURE:
            return headers
        try:
            made = signing.standard_headers(
                self.values["signed_webhook_secret"], headers["webhook-id"], body, self.app.clock.now()
            )
        except ValueError:  # a webhook-id no signer would send (blank, a dot, a space): sign nothing
            made = {
                "webhook-timestamp": str(int(self.app.clock.now().timestamp())),
                "webhook-signature": "v1,x",
            }
        return headers | made


@dataclass(frozen=True)
class Answer:
    """What came back, with the server's log of an unhandled error if there was one."""

    status: int
    content_type: str
    body: bytes
    request_line: str
    server_errors: tuple[str, ...]
    longest_line: int = 0  # of the request line and header lines sent, in bytes


class ServerErrors(logging.Handler):
    """Keeps the tracebacks that the app logs for unhandled errors, to show them next to the request."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Store the record."""
        self.records.append(record)

    def take(self) -> tuple[str, ...]:
        """The formatted errors logged since the last call."""
        records, self.records = self.records, []
        return tuple(
            record.getMessage()
            + ("\n" + "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else "")
            for record in records
        )


def is_destructive(req: Req, status: int) -> bool:
    """Whether a request that succeeded may have removed or replaced something the World holds."""
    if not 200 <= status < 300:
        return False
    return req.method in ("DELETE", "PATCH") or (
        req.method == "POST"
        and req.template.endswith(
            (
                "/regenerate",
                "/signin/{token}",
                "/invitations/{token}",
                "/suspend",
                "/logout",
                "/accept",
                "/invitations",
            )
        )
    )


async def send(
    session: aiohttp.ClientSession, base: str, world: World, req: Req, log: ServerErrors
) -> Answer:
    """Send one request exactly as generated (no client-side path normalisation) and read the whole answer."""
    if req.advance_clock:
        world.app.clock.advance(1.0)
    path, query = world.resolve(req.path), world.resolve(req.query)
    target = path + (f"?{query}" if query else "")
    headers: dict[str, str] = {}
    body = world.resolve_body(req.body) if req.body is not None else None
    signed_body = body or b""  # what the server reads, before any Content-Encoding
    for name, value in req.headers:
        if (name, value) == ("Content-Encoding", "gzip+valid"):
            value, body = "gzip", gzip.compress(body or b"")
        headers[name] = world.resolve(value)
    headers = world.signed(headers, signed_body)
    longest = max(
        len(f"{name}: {value}".encode()) for name, value in [(req.method, target), *headers.items()]
    )
    log.take()
    try:
        async with session.request(
            req.method,
            URL(base + target, encoded=True),
            headers=headers,
            data=body,
            skip_auto_headers=("Content-Type",),
        ) as resp:
            raw = await resp.read()
            answer = Answer(
                resp.status, resp.content_type, raw, f"{req.method} {target}", log.take(), longest
            )
    except aiohttp.ClientResponseError as exc:
        # aiohttp's HTTP parser answers a request it cannot parse (over-long line, undecodable body) with a
        # 400 that has a body even for a HEAD, which the client refuses to read; the status is what counts.
        if not (req.method == "HEAD" and "Data after" in exc.message):
            raise
        answer = Answer(400, "text/plain", b"", f"{req.method} {target}", log.take(), longest)
    if is_destructive(req, answer.status):
        await world.build()
    return answer


def answered_by_http_layer(req: Req, answer: Answer, world: World) -> bool:
    """Answers aiohttp's HTTP parser gives before any route or middleware runs, in plain text.

    These are reported as known gaps rather than failed on: lines over 8190 bytes (400), a method name the
    parser does not know (400), a ``Content-Encoding`` it cannot decode (400), and an ``Expect`` other than
    100-continue (417).
    """
    if answer.content_type != "text/plain":
        return False
    headers = {k.lower(): v.lower() for k, v in req.headers}
    if answer.status == 400 and answer.longest_line > LONG_LINE:
        return True
    if answer.status == 400 and headers.get("content-encoding", "identity") != "identity":
        return True  # an encoding without a decoder, or a body that does not decode, caught while parsing
    if answer.status == 400 and answer.body.startswith(b"Invalid method encountered"):
        return True
    return answer.status == 417 and headers.get("expect", "100-continue") != "100-continue"


_BUG_KINDS: dict[str, type[AssertionError]] = {}


def server_bug(signature: str) -> type[AssertionError]:
    """An AssertionError subclass per distinct server failure, so Hypothesis reports each bug."""
    # Hypothesis tells bugs apart by exception type and line; every 500 fails on the same line of this file,
    # so without a type per signature it would report only one of several independent bugs.
    if signature not in _BUG_KINDS:
        _BUG_KINDS[signature] = type(f"ServerBug[{signature}]", (AssertionError,), {})
    return _BUG_KINDS[signature]


def signature_of(logged: tuple[str, ...], fallback: str) -> str:
    """The exception type and innermost chimebot frame of a logged traceback, as ``Error@chimebot/x.py:f``."""
    for text in logged:
        frames = re.findall(r'File "[^"]*/(chimebot/[^"]+)", line \d+, in (\w+)', text)
        kind = re.findall(r"^(\w[\w.]*(?:Error|Exception|Exit)\w*):", text, re.MULTILINE)
        if kind:
            where = f"@{frames[-1][0]}:{frames[-1][1]}" if frames else ""
            return kind[-1] + where
    return fallback


def is_signin_page(req: Req, answer: Answer, world: World) -> bool:
    """Sign-in and invitation pages are for people: a link that cannot be used, or an invitation form
    filled in wrong, gets an HTML page with the reason and a 4xx status, by design."""
    path = world.resolve(req.path)
    if answer.content_type != "text/html" or req.method not in ("GET", "POST"):
        return False
    if path.startswith("/signin/"):
        return (answer.status, req.method) == (404, "GET")
    return path.startswith("/invitations/")


def documented_answer(req: Req, status: int) -> dict[str, Any] | None:
    """The document's response of the request's operation for a status (a shared one resolved)."""
    responses = DOC["paths"][req.template][req.method.lower()]["responses"]
    answer = responses.get(str(status))
    if answer is not None and "$ref" in answer:
        answer = DOC["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer


_VALIDATORS: dict[tuple[str, str, int, str], Any] = {}


def matches_document(req: Req, answer: Answer, detail: str) -> None:
    """The status is documented for the operation, and the body has the documented type and shape."""
    documented = documented_answer(req, answer.status)
    assert documented is not None, f"an undocumented status\n{detail}"
    content = documented.get("content")
    if content is None:
        assert answer.body == b"", f"a body where none is documented\n{detail}"
        return
    assert answer.content_type in content, f"an undocumented Content-Type {answer.content_type}\n{detail}"
    value = answer.body.decode() if answer.content_type == "text/plain" else json.loads(answer.body)
    schema = content[answer.content_type]["schema"]
    if jsonschema is None:  # without the validator, the text/plain names are still checked
        assert answer.content_type != "text/plain" or value in schema.get("enum", [value]), detail
        return
    key = (req.method, req.template, answer.status, answer.content_type)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = jsonschema.Draft202012Validator(schema | {"components": DOC["components"]})
    errors = [error.message for error in _VALIDATORS[key].iter_errors(value)]
    assert not errors, f"not as documented: {errors[:3]}\n{detail}"


def is_webhook_error(req: Req, answer: Answer) -> bool:
    """A refusal in a webhook sender's dialect: a Slack name in text/plain, or Discord's JSON."""
    if answer.content_type == "text/plain":
        return req.template == HOOKS and re.fullmatch(rb"[a-z_]{1,40}", answer.body) is not None
    if answer.content_type != "application/json":
        return False
    data = json.loads(answer.body)
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return False
    return isinstance(data.get("code"), int) or "retry_after" in data


def judge(req: Req, answer: Answer, world: World) -> None:
    """No 5xx; every 4xx (but the documented exceptions) is JSON ``{"error": str, "message": str}``; every
    answer of a webhook URL to a request of the documented method, path and headers is as documented."""
    detail = f"{answer.request_line[:300]}\n-> {answer.status} {answer.body[:300]!r}\n" + "\n".join(
        answer.server_errors
    )
    if answer.status >= 500:
        raise server_bug(signature_of(answer.server_errors, f"HTTP {answer.status}"))(detail)
    if req.method == "HEAD" or answered_by_http_layer(req, answer, world):  # HEAD answers have no body
        return
    if req.exact and req.template in WEBHOOK_URLS:
        matches_document(req, answer, detail)
        return
    if not 400 <= answer.status < 500:
        return
    if is_signin_page(req, answer, world):
        return
    if req.template in (HOOKS, DISCORD) and is_webhook_error(req, answer):
        return
    assert answer.content_type == "application/json", detail
    data = json.loads(answer.body)
    assert isinstance(data, dict), detail
    assert isinstance(data.get("error"), str), detail
    assert isinstance(data.get("message"), str), detail


# -- the tests -------------------------------------------------------------------------------------------


def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the test's event loop from Hypothesis' worker thread and wait for it."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)


async def drive(test: Callable[[], None]) -> None:
    """Run a ``@given`` test in a worker thread while this event loop serves the app and the client."""
    await asyncio.to_thread(test)


@dataclass
class Fuzz:
    """What the fuzz tests share: the World, a client, the app's base URL and the server's error log."""

    world: World
    session: aiohttp.ClientSession
    base: str
    errors: ServerErrors


@pytest.fixture
async def fuzz(app: Harness) -> AsyncIterator[Fuzz]:
    """A World, a client that opens a fresh connection per request, and the server's error log."""
    member, member_token = await app.user(MEMBER_EMAIL)
    world = World(app, member, member_token)
    await world.build()
    errors = ServerErrors()
    loggers = [logging.getLogger("chimebot"), logging.getLogger("aiohttp.server")]
    for logger in loggers:
        logger.addHandler(errors)
    # A fresh connection per request pins a dropped connection on the request that caused it, not the next.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=60),
        auto_decompress=False,
    )
    try:
        yield Fuzz(world, session, str(app.client.make_url("/")).rstrip("/"), errors)
    finally:
        await session.close()
        for logger in loggers:
            logger.removeHandler(errors)


def seed(
    method: str,
    template: str,
    query: str = "",
    body: bytes | None = None,
    *headers: tuple[str, str],
    path: str | None = None,
    auth: str = "Bearer {admin_token}",
    exact: bool = False,
) -> Req:
    """A hand-written request, as the admin unless told, for a template filled with real ids."""
    if path is None:
        path = PLACEHOLDER.sub(lambda m: f"{{{real_for(template, m.group(1))[0]}}}", template)
    return Req(method, template, path, query, (("Authorization", auth), *headers), body, True, exact)


def hook_seed(
    template: str,
    body: bytes,
    *headers: tuple[str, str],
    query: str = "",
    path: str | None = None,
    auth: str = "Bearer {admin_token}",
) -> Req:
    """A hand-written POST to a webhook URL, judged by the document like the generated ones."""
    return seed("POST", template, query, body, *headers, path=path, auth=auth, exact=True)


HOOK = CHIME
JSON = ("Content-Type", "application/json")
SIGNED = (("webhook-id", "msg_seed"), ("webhook-timestamp", TIMESTAMP), ("webhook-signature", SIGNATURE))
# Discord's multipart form with a file part that is not UTF-8.
MULTIPART_TYPE, MULTIPART_BODY = as_multipart("payload_json", {"content": "x"}, True, [("f", b"\xff", "a")])
SURROGATE = b'"\\ud800"'  # the JSON escape of a lone surrogate: valid JSON, but no UTF-8 can hold it
# Shapes that broke the server once. Hypothesis runs these first, every time, and reports each that fails
# (random generation stops at the first few bugs it finds, so these keep every known class in view).
SEEDS = [
    seed("POST", "/api/v1/rooms", "", b'{"name": %s}' % SURROGATE),
    seed("POST", "/api/v1/tokens", "", b'{"name": %s}' % SURROGATE),
    seed("POST", "/api/v1/rooms/{room_id}/members", "", b'{"email": %s}' % SURROGATE),
    seed("POST", "/api/v1/rooms/{room_id}/webhooks", "", b'{"name": %s}' % SURROGATE),
    seed("POST", "/api/v1/rooms/{room_id}/messages", "", b'{"content": %s}' % SURROGATE),
    seed("POST", HOOK, "token={webhook_token}", b'{"Content": %s}' % SURROGATE),
    seed("GET", "/api/v1/rooms/{room_id}/messages", "limit=" + "1" * 4301),
    seed("GET", "/api/v1/rooms/{room_id}/messages", "cursor=" + b64(b"m" + b"9" * 30)),
    seed("GET", "/api/v1/stream", "since=" + "1" * 4301),
    seed("POST", "/api/v1/rooms", "", b"not gzip", ("Content-Encoding", "gzip")),
    seed("POST", HOOK, "token={webhook_token}", b"not gzip", ("Content-Encoding", "gzip")),
    # NUL and over-long ids reach PostgreSQL, which refuses NUL in text; they must be a 4xx, not a 503.
    seed("GET", "/api/v1/rooms/%00x/messages"),
    seed("POST", "/incomingwebhooks/a%00b", "token=x", b'{"Content": "x"}'),
    seed("POST", "/api/v1/rooms", "", b'{"name": "a\\u0000b"}'),
    seed("DELETE", "/api/v1/tokens/" + "x" * 300),
]

# The webhook URLs: a lone surrogate wherever each dialect reads text, every body encoding, every auth.
WEBHOOK_SEEDS = [
    hook_seed(HOOKS, b'{"text": %s}' % SURROGATE, JSON),
    hook_seed(HOOKS, b'{"text": "x", "username": %s}' % SURROGATE, JSON),
    hook_seed(HOOKS, b'{"attachments": [{"title": %s}]}' % SURROGATE, JSON),
    hook_seed(HOOKS, b'{"@type": "MessageCard", "title": %s}' % SURROGATE, JSON),
    hook_seed(HOOKS, b'{"content": %s}' % SURROGATE, JSON, query="wait=true"),
    hook_seed(HOOKS, b'{"Content": %s}' % SURROGATE, JSON),
    hook_seed(HOOKS, b'{"text": %s}' % SURROGATE, JSON, path="/hooks/{template_webhook_token}"),
    hook_seed(HOOKS, b'{"alerts": [%s]}' % SURROGATE, JSON, path="/hooks/{template_webhook_token}"),
    hook_seed(DISCORD, b'{"content": %s}' % SURROGATE, JSON, query="wait=true"),
    hook_seed(DISCORD, b'{"embeds": [{"title": "x", "timestamp": %s}]}' % SURROGATE, JSON),
    hook_seed(HOOKS, b"payload=%7B%22text%22%3A%22%5Cud800%22%7D", ("Content-Type", FORM)),
    hook_seed(HOOKS, b"payload=%ff%fe", ("Content-Type", FORM)),
    hook_seed(HOOKS, b"content=%ED%A0%80", ("Content-Type", FORM)),
    hook_seed(HOOKS, MULTIPART_BODY, ("Content-Type", MULTIPART_TYPE)),
    hook_seed(HOOKS, b"--x\r\n\r\n--x--", ("Content-Type", "multipart/form-data; boundary=x")),
    hook_seed(HOOKS, json.dumps(nested_card(300)).encode(), JSON),
    hook_seed(HOOKS, b'{"text": "<!date^99999999999999999999^{date}|far>"}', JSON),
    hook_seed(HOOKS, b'{"text": "x", "channel": "#{other_room_id}"}', JSON),
    hook_seed(
        HOOKS,
        b'{"text": "moved", "channel": "{other_room_id}"}',
        JSON,
        path="/hooks/{bearer_webhook_id}",
        auth="Bearer {bearer_webhook_token}",
    ),
    hook_seed(HOOKS, b'{"text": "signed"}', JSON, *SIGNED, path="/hooks/{signed_webhook_id}"),
    hook_seed(
        DISCORD,
        b'{"content": "signed"}',
        JSON,
        *SIGNED,
        query="wait=true",
        path="/api/webhooks/{signed_webhook_id}/x",
    ),
    hook_seed(HOOKS, b'{"text": "x"}', JSON, ("Idempotency-Key", "k" * 256)),
    seed("PATCH", "/api/v1/webhooks/{webhook_id}", "", b'{"template": %s}' % SURROGATE, JSON),
    seed(
        "PATCH",
        "/api/v1/webhooks/{webhook_id}",
        "",
        b'{"signing_secret": "whsec_%s"}' % SURROGATE[1:-1],
        JSON,
    ),
]


def with_seeds(test: Callable[..., None], seeds: list[Req] = SEEDS) -> Callable[..., None]:
    """Decorate a ``@given(req=...)`` test with every seed as an explicit example."""
    for req in reversed(seeds):
        test = example(req=req)(test)
    return test


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_no_request_gets_a_server_error(fuzz: Fuzz) -> None:
    loop = asyncio.get_running_loop()

    @fuzz_settings(HTTP_EXAMPLES)
    @with_seeds
    @given(req=requests())
    def no_server_error(req: Req) -> None:
        judge(req, run_on(loop, send(fuzz.session, fuzz.base, fuzz.world, req, fuzz.errors)), fuzz.world)

    await drive(no_server_error)


WEBHOOK_OPERATIONS = tuple((m, t) for m, t in OPERATIONS if t in WEBHOOK_URLS or "/webhooks" in t)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_no_webhook_request_gets_a_server_error(fuzz: Fuzz) -> None:
    # Slack/Mattermost, Teams, Discord and Chime bodies as JSON, forms and multipart, to webhooks of every
    # auth and to a template, with their settings changed now and then; answers checked against the document.
    loop = asyncio.get_running_loop()

    @fuzz_settings(WEBHOOK_EXAMPLES)
    @functools.partial(with_seeds, seeds=WEBHOOK_SEEDS)
    @given(req=requests(WEBHOOK_OPERATIONS))
    def no_server_error(req: Req) -> None:
        judge(req, run_on(loop, send(fuzz.session, fuzz.base, fuzz.world, req, fuzz.errors)), fuzz.world)

    await drive(no_server_error)


# -- the WebSocket stream: errors are answered as JSON before the upgrade ---------------------------------

WS_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
WS_CREDENTIALS = ["header", "query", "none", "junk-header", "junk-query", "junk-header+query", "member-query"]


@dataclass(frozen=True)
class Handshake:
    """A WebSocket handshake to ``/api/v1/stream``: how the token is given, and ``since`` (None: absent)."""

    credentials: str
    since: str | None
    raw_since: bool  # since is already percent-encoded junk whose decoded value the test does not predict

    def __repr__(self) -> str:
        since = short(self.since)
        return f"Handshake(credentials={self.credentials!r}, since={since}, raw_since={self.raw_since})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints failing examples with this: keeps 4301-digit values readable."""
        printer.text(repr(self))

    def expected(self) -> set[int]:
        """The statuses the server may answer with."""
        token_ok = self.credentials in ("header", "query", "member-query")
        if not token_ok:
            return {401}
        if self.raw_since:
            return {101, 400}
        since = self.since
        if since is None or since == "" or (since.isascii() and since.isdigit() and len(since) <= 18):
            return {101}
        return {400}


handshakes = st.builds(
    lambda credentials, since: Handshake(credentials, since[0], since[1]),
    st.sampled_from(WS_CREDENTIALS),
    st.one_of(
        st.none().map(lambda _: (None, False)),
        numbers.map(lambda s: (s, False)),
        junk_text.map(lambda s: (s, False)),
        st.sampled_from(RAW_PIECES).map(lambda s: (s, True)),
    ),
)


async def handshake(fuzz: Fuzz, hs: Handshake) -> Answer:
    """Attempt the upgrade and return the answer; an accepted socket is closed at once."""
    world, query, headers = fuzz.world, [], dict(WS_HEADERS)
    token = {"member-query": world.member_token}.get(hs.credentials, world.app.token)
    if hs.credentials == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif hs.credentials == "junk-header":
        headers["Authorization"] = "Bearer not-a-token"
    elif hs.credentials == "junk-header+query":  # the header wins over the query
        headers["Authorization"] = "Bearer not-a-token"
        query.append(f"token={token}")
    if hs.credentials in ("query", "member-query"):
        query.append(f"token={token}")
    elif hs.credentials == "junk-query":
        query.append("token=junk")
    if hs.since is not None:
        query.append(f"since={hs.since if hs.raw_since else encoded(hs.since)}")
    target = "/api/v1/stream" + ("?" + "&".join(query) if query else "")
    fuzz.errors.take()
    async with fuzz.session.get(URL(fuzz.base + target, encoded=True), headers=headers) as resp:
        # Upgraded: there is nothing more to read as HTTP, and leaving the block closes the socket.
        raw = b"" if resp.status == 101 else await resp.read()
        return Answer(resp.status, resp.content_type, raw, f"GET {target}", fuzz.errors.take())


async def test_stream_handshake_errors_are_json(fuzz: Fuzz) -> None:
    loop = asyncio.get_running_loop()

    @fuzz_settings(WS_EXAMPLES)
    @given(hs=handshakes)
    def handshake_is_answered(hs: Handshake) -> None:
        answer = run_on(loop, handshake(fuzz, hs))
        detail = f"{hs!r}: {answer.request_line[:200]} -> {answer.status} {answer.body[:300]!r}"
        if answer.status >= 500:
            raise server_bug(signature_of(answer.server_errors, f"HTTP {answer.status}"))(
                detail + "\n" + "\n".join(answer.server_errors)
            )
        assert answer.status in hs.expected(), detail
        if answer.status != 101:
            assert answer.content_type == "application/json", detail
            data = json.loads(answer.body)
            assert isinstance(data.get("error"), str), detail
            assert isinstance(data.get("message"), str), detail
            assert data["error"] == ("unauthorized" if answer.status == 401 else "invalid"), detail

    await drive(handshake_is_answered)


async def test_stream_opens_with_a_valid_token(app: Harness) -> None:
    # The fuzz above only sees the 101; this checks that such a socket really streams.
    for target, headers in (("/api/v1/stream", app.auth()), (f"/api/v1/stream?token={app.token}", {})):
        async with app.client.ws_connect(target, headers=headers) as ws:
            frame = await ws.receive_json(timeout=10)
            assert frame["type"] == "stream.ready"
            assert isinstance(frame["last_id"], int)
