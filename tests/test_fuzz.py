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

By default the run is derandomized (the same examples every time, as CI needs) and sends a few hundred
requests; set ``CHIMEBOT_FUZZ_EXAMPLES=5000`` to explore that many fresh random examples instead.
"""

from __future__ import annotations

import asyncio
import base64
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

T = TypeVar("T")

EXPLORE = int(os.environ.get("CHIMEBOT_FUZZ_EXAMPLES", "0") or 0)
# The deterministic CI run: 600 HTTP requests and 200 WebSocket handshakes, about 10 s on 2 cores.
HTTP_EXAMPLES = EXPLORE or 600
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
}
WORLD_KEYS = [
    "room_id",
    "other_room_id",
    "user_id",
    "admin_id",
    "webhook_id",
    "webhook_token",
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


def path_segment(param: str) -> st.SearchStrategy[str]:
    """A wild value for one path parameter: another kind of id, junk, broken encodings, very long."""
    junk = st.one_of(junk_text.map(encoded), st.sampled_from(RAW_PIECES), long_pieces)
    real = placeholders(REAL_FOR_PARAM[param])
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
        start = draw(st.sampled_from(["/", "/api/v1/", "/incomingwebhooks/", "/signin/"]))
        return start + "/".join(pieces)
    if not wild:
        return PLACEHOLDER.sub(lambda m: draw(placeholders(REAL_FOR_PARAM[m.group(1)])), template)
    path = PLACEHOLDER.sub(lambda m: draw(path_segment(m.group(1))), template)
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
    placeholders(["webhook_token", "admin_token", "member_token", "signin_token"]), junk_text
)
QUERY_VALUES: dict[str, st.SearchStrategy[str]] = {
    "since": numbers,
    "limit": numbers,
    "cursor": cursors,
    "token": secrets_,
}


def query_value(value: str) -> str:
    """Encode a query value, leaving placeholders to be resolved."""
    return value if PLACEHOLDER.fullmatch(value) else encoded(value)


# The query parameters each route reads.
QUERY_KEYS_FOR = {
    "/api/v1/rooms/{room_id}/messages": ["limit", "cursor"],
    "/api/v1/stream": ["since"],
}


@st.composite
def queries(draw: st.DrawFn, template: str, wild: bool) -> str:
    """The parameters a route reads, with values from valid to absurd; ``wild`` adds junk of any kind."""
    parts = []
    # The webhook's own token, so that its body is read; a wild query may drop it.
    if template == "/incomingwebhooks/{webhook_id}" and not (wild and draw(st.booleans())):
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
        st.sampled_from(["X-Forwarded-For", "Idempotency-Key", "webhook-id", "X-" + "a" * 50]), header_text
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

    def __repr__(self) -> str:
        fields_ = ", ".join(
            f"{name}={short(getattr(self, name))}"
            for name in ("method", "path", "query", "headers", "body", "advance_clock")
        )
        return f"Req({fields_})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints failing examples with this: keeps 256 KiB bodies out of reports."""
        printer.text(repr(self))


MUTATIONS = ["method", "path", "query", "authorization", "headers", "body"]


@st.composite
def requests(draw: st.DrawFn) -> Req:
    """A well-formed request for a documented operation, with up to three of its parts made wild.

    Well-formed parts still carry absurd values (lone surrogates, 4097 characters, 40-digit numbers): the
    point is that a request wrong in one or two ways gets past the other checks and reaches deeper code.
    """
    # Every documented operation is drawn equally often; a tenth of the requests go to paths no route has.
    method, template = draw(st.sampled_from(OPERATIONS)) if not rarely(draw, 1) else ("GET", "")
    wild = set(draw(st.lists(st.sampled_from(MUTATIONS), max_size=3, unique=True)))
    route_body = ROUTE_BODIES.get((method, template))
    if "method" in wild:
        method = draw(st.sampled_from(ODD_METHODS))
    if "authorization" in wild:
        authorization = draw(odd_authorizations)
    else:
        authorization = draw(st.sampled_from(["Bearer {admin_token}", "Bearer {member_token}"]))
    headers = [("Authorization", authorization)] if authorization is not None else []
    if "headers" in wild:
        headers += [
            (n, v) for n, v in (("Content-Type", draw(content_types)), ("Accept", draw(accepts))) if v
        ]
        if draw(st.booleans()):
            headers.append(draw(extras))
    elif route_body is not None:
        headers.append(("Content-Type", "application/json"))
    if "body" in wild or route_body is None:
        body = draw(bodies) if "body" in wild else None
    else:
        body = draw(route_body)
    return Req(
        method=method,
        template=template,
        path=draw(paths(template, "path" in wild)),
        query=draw(queries(template, "query" in wild)),
        headers=tuple(headers),
        body=body,
        advance_clock=not rarely(draw, 2),  # False: meet the webhook rate limit
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
            ("/regenerate", "{token}", "/suspend", "/logout", "/accept", "/invitations")
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
    body = req.body
    for name, value in req.headers:
        if (name, value) == ("Content-Encoding", "gzip+valid"):
            value, body = "gzip", gzip.compress(body or b"")
        headers[name] = world.resolve(value)
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


def judge(req: Req, answer: Answer, world: World) -> None:
    """No 5xx; every 4xx (but the documented exceptions) is JSON ``{"error": str, "message": str}``."""
    detail = f"{answer.request_line[:300]}\n-> {answer.status} {answer.body[:300]!r}\n" + "\n".join(
        answer.server_errors
    )
    if answer.status >= 500:
        raise server_bug(signature_of(answer.server_errors, f"HTTP {answer.status}"))(detail)
    if not 400 <= answer.status < 500 or req.method == "HEAD":  # HEAD answers have no body to check
        return
    if answered_by_http_layer(req, answer, world):
        return
    if is_signin_page(req, answer, world):
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
    method: str, template: str, query: str = "", body: bytes | None = None, *headers: tuple[str, str]
) -> Req:
    """A hand-written request, as the admin, for a template filled with real ids."""
    path = PLACEHOLDER.sub(lambda m: f"{{{REAL_FOR_PARAM[m.group(1)][0]}}}", template)
    auth = ("Authorization", "Bearer {admin_token}")
    return Req(method, template, path, query, (auth, *headers), body, True)


HOOK = "/incomingwebhooks/{webhook_id}"
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


def with_seeds(test: Callable[..., None]) -> Callable[..., None]:
    """Decorate a ``@given(req=...)`` test with every seed as an explicit example."""
    for req in reversed(SEEDS):
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
