"""TOML config -> frozen, fully validated dataclasses (ARCHITECTURE rule 4: config is data).

Validation walks each dataclass's fields and type hints, so a new key is one annotated field here (plus its
line in config.example.toml); its constraint sits next to it in `field(metadata=...)` via `_key`.
"""

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from difflib import get_close_matches
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from webhooks import chime

DEFAULT_SOURCE = "<defaults>"
IMIP_SOURCE = "imip"  # the source name of occurrences learnt from mailed invitations
Check = Callable[[Any], object]  # a per-key constraint: truthy when the (type-checked) value is valid
_GOT_MAX = 60  # values are echoed shortened so one bad key cannot flood the terminal


class ConfigError(Exception):
    """Raised with every problem found; str() is one line per problem."""

    errors: tuple[str, ...]

    def __init__(self, errors: "list[str] | tuple[str, ...]") -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


def _key(
    default: Any = MISSING, check: Check | None = None, expect: str = "", env: str = "", **kw: Any
) -> Any:
    """Declare a config key: its default, an optional check, and a phrase saying what is valid."""
    meta = {"check": check, "expect": expect} | ({"env": env} if env else {})
    return field(default=default, metadata=meta, **kw)


def _positive(x: float) -> bool:
    """A check for a finite number > 0 (TOML allows `inf` and `nan`, which make no sense here)."""
    return 0 < x < math.inf  # False for nan too


def _name(max_len: int) -> Callable[[str], bool]:
    """A check for a display name: non-blank and at most `max_len` characters."""
    return lambda s: bool(s.strip()) and len(s) <= max_len


def _url(*schemes: str) -> Any:
    """Declare a URL key: empty (the default) or a URL with one of `schemes` and something after it."""
    prefixes = [f"{scheme}://" for scheme in schemes]
    expect = f"a URL starting with {', '.join(prefixes[:-1])} or {prefixes[-1]}, or empty"
    return _key("", lambda s: s == "" or any(s.startswith(p) and len(s) > len(p) for p in prefixes), expect)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where the HTTP server listens and the URL people reach it by."""

    host: str = _key("127.0.0.1", lambda s: s.strip(), "a host name or IP address")
    port: int = _key(8080, lambda n: 1 <= n <= 65535, "an integer from 1 to 65535")
    public_url: str = _url("http", "https")  # empty: derived from host and port, see base_url

    def __post_init__(self) -> None:
        # Normalised once here so code building links can always append "/path".
        if isinstance(self.public_url, str) and self.public_url.endswith("/"):
            object.__setattr__(self, "public_url", self.public_url.rstrip("/"))

    @property
    def base_url(self) -> str:
        """The public URL, or `http://host:port` derived from where the server listens."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literals need brackets
        return self.public_url or f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """Which database holds the data and how it is used."""

    # Empty: SQLite in the data directory, decided by the store; SQLite and PostgreSQL are its two engines.
    url: str = _url("sqlite", "sqlite+aiosqlite", "postgresql", "postgresql+asyncpg")
    # SQLite durability: "normal" survives a process crash, "full" also survives power loss.
    synchronous: Literal["normal", "full"] = "normal"
    pool_size: int = _key(10, lambda n: 1 <= n <= 1000, "an integer from 1 to 1000")


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Redis for clustering; empty means a single node with an in-process bus."""

    url: str = _url("redis", "rediss", "unix")
    # Namespace of the channel and keys, so that several deployments can share one Redis.
    prefix: str = _key(
        "chimebot", lambda s: re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", s), "1 to 64 of A-Z a-z 0-9 _ . : -"
    )


@dataclass(frozen=True, slots=True)
class BootstrapConfig:
    """The account and administrator created on first start."""

    account_name: str = _key("chimebot", _name(100), "a name of 1 to 100 characters")
    admin_email: str = _key(
        "admin@localhost",
        lambda s: s.count("@") == 1 and all(part.strip() for part in s.split("@")),
        "an email address like admin@example.com",
    )
    signin_link_ttl_minutes: int = _key(1440, lambda n: n > 0, "an integer > 0")


def _zone(name: str) -> bool:
    """A check for an IANA time zone name that this machine knows."""
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return False
    return True


def _domain(name: str) -> bool:
    """A check for a DNS domain name like example.com."""
    return bool(
        re.fullmatch(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]{1,63}", name)
    )


def _env_name(example: str) -> Any:
    """Declare a key naming an environment variable (optional: None when absent)."""
    return _key(
        None,
        lambda s: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s),
        f"the name of an environment variable, like {example}",
    )


@dataclass(frozen=True, slots=True)
class AccountsConfig:
    """Defaults for users and accounts, and how sign-in is protected."""

    # The license new users get (Amazon Chime made invited users Pro); admins change it per user.
    default_license: Literal["basic", "pro"] = "pro"
    # Zone of new accounts: the usage report counts days and months in the account's zone.
    default_time_zone: str = _key("UTC", _zone, "an IANA time zone name like Europe/Berlin")
    invitation_ttl_hours: int = _key(168, lambda n: n > 0, "an integer > 0")
    password_min_length: int = _key(10, lambda n: 8 <= n <= 128, "an integer from 8 to 128")
    # Password sign-in attempts allowed per window, per address and per account.
    signin_attempts_per_address: int = _key(5, lambda n: n >= 1, "an integer >= 1")
    signin_attempts_per_account: int = _key(50, lambda n: n >= 1, "an integer >= 1")
    signin_window_minutes: float = _key(15.0, _positive, "a number > 0")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Outgoing mail; with no host, messages are written to an outbox folder instead."""

    host: str = ""
    port: int = _key(587, lambda n: 1 <= n <= 65535, "an integer from 1 to 65535")
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str | None = _env_name("CHIMEBOT_SMTP_PASSWORD")
    # Not a TOML key: read from the variable `password_env` names; kept out of repr.
    password: str = _key("", lambda s: True, "a password", env="password_env", repr=False)
    from_address: str = _key(
        "chimebot@localhost",
        lambda s: s.count("@") == 1 and all(part.strip() for part in s.split("@")),
        "an email address like chimebot@example.com",
    )
    timeout_seconds: float = _key(10.0, _positive, "a number > 0")
    # Where messages go without a host; "" means the "outbox" folder in the data directory.
    outbox_dir: str = ""


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """Prices of the usage report: Pro is charged per active day, capped per user and month."""

    price_per_day: float = _key(3.0, lambda x: 0 <= x < math.inf, "a number >= 0")
    monthly_cap: float = _key(15.0, lambda x: 0 <= x < math.inf, "a number >= 0")
    currency: str = _key("USD", lambda s: re.fullmatch(r"[A-Z]{3}", s), "a 3-letter ISO 4217 code")


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    """Limits for incoming webhooks."""

    rate_per_second: float = _key(1.0, _positive, "a number > 0")
    burst: int = _key(1, lambda n: n >= 1, "an integer >= 1")
    max_content_chars: int = _key(chime.MAX_CONTENT_CHARS, lambda n: n > 0, "an integer > 0")
    max_body_bytes: int = _key(65536, lambda n: n >= 1024, "an integer >= 1024")
    max_per_room: int = _key(10, lambda n: n >= 1, "an integer >= 1")
    mention_all_max_members: int = _key(50, lambda n: n >= 1, "an integer >= 1")


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Tuning of the WebSocket event stream."""

    # Frames buffered per client before it is disconnected and must resume.
    queue_size: int = _key(1000, lambda n: n >= 1, "an integer >= 1")
    heartbeat_seconds: float = _key(30.0, _positive, "a number > 0")
    # Most events replayed to a client resuming after a disconnect.
    replay_limit: int = _key(10000, lambda n: n >= 1, "an integer >= 1")
    # How often the node reads the event log for events written elsewhere (other nodes, the CLI).
    poll_seconds: float = _key(1.0, _positive, "a number > 0")


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """How much the server logs."""

    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class DialInNumber:
    """A phone number people dial to join a meeting, with a label such as "United States (toll)"."""

    number: str = _key(
        check=lambda s: re.fullmatch(r"\+[0-9][0-9 ()-]{4,30}", s),
        expect='an international phone number like "+1 206-555-0100"',
    )
    label: str = _key("", lambda s: len(s) <= 100, "a label of at most 100 characters")


@dataclass(frozen=True, slots=True)
class MeetingsConfig:
    """The generated meeting addresses, the dial-in numbers and the texts people receive."""

    # The domain of meet@<domain> and pin+<meeting id>@<domain>; "" means the host of the public URL.
    address_domain: str = _key(
        "", lambda s: s == "" or _domain(s), "a domain name like example.com, or empty"
    )
    dial_in: tuple[DialInNumber, ...] = ()
    # jinja2 files replacing the built-in attendee invitation and dial-in instructions; "" = built-in.
    invitation_template: str = ""
    instructions_template: str = ""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """When calendar meetings are called."""

    # A server that was down at a start still calls this long after it; later, the call is recorded missed.
    grace_minutes: float = _key(10.0, _positive, "a number > 0")
    # Call this many seconds before the start time.
    lead_seconds: float = _key(0.0, lambda x: 0 <= x <= 3600, "a number from 0 to 3600")
    # How far ahead calendars are read into occurrences.
    lookahead_days: int = _key(30, lambda n: 1 <= n <= 366, "an integer from 1 to 366")


@dataclass(frozen=True, slots=True)
class CalendarDecl:
    """A calendar watched for meetings that invite the meeting address."""

    name: str = _key(
        check=lambda s: re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", s) and s != IMIP_SOURCE,
        expect=f"1 to 64 of A-Z a-z 0-9 _ . - (not {IMIP_SOURCE!r}, which names the iMIP listener)",
    )
    kind: Literal["caldav", "ics", "folder"] = _key(expect="one of 'caldav', 'ics', 'folder'")
    # caldav: the collection URL; ics: the feed URL (http, https or webcal); folder: a directory path.
    url: str = _key(check=lambda s: bool(s.strip()), expect="a URL, or a directory path for kind 'folder'")
    username: str = ""
    password_env: str | None = _env_name("CHIMEBOT_CALDAV_PASSWORD")
    # Not a TOML key: read from the variable `password_env` names; kept out of repr.
    password: str = _key("", lambda s: True, "a password", env="password_env", repr=False)
    poll_seconds: float = _key(60.0, lambda x: 1 <= x < math.inf, "a number >= 1")
    # The zone of floating times (events without a zone), e.g. "Europe/Berlin".
    time_zone: str = _key("UTC", _zone, "an IANA time zone name like Europe/Berlin")
    # Rooms (of the operator's account, created if missing) that get the dial-in instructions.
    rooms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImipConfig:
    """The SMTP listener that takes invitations mailed to the meeting addresses (iMIP)."""

    # "host:port" to listen on, e.g. "127.0.0.1:2525"; "" (default) means no listener.
    listen: str = _key(
        "",
        lambda s: s == "" or re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\s]+):[0-9]{1,5}", s),
        '"host:port", or empty',
    )
    max_message_bytes: int = _key(10 * 2**20, lambda n: n >= 1024, "an integer >= 1024")
    # The zone of floating times in mailed invitations.
    time_zone: str = _key("UTC", _zone, "an IANA time zone name like Europe/Berlin")


@dataclass(frozen=True, slots=True)
class WebhookDecl:
    """An incoming webhook declared in the file, with its token taken from the environment."""

    name: str = _key(check=_name(64), expect="a name of 1 to 64 characters")
    token_env: str = _key(
        check=lambda s: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s),
        expect="the name of an environment variable, like CHIMEBOT_CI_WEBHOOK_TOKEN",
    )
    # Not a TOML key: read from the environment variable that `token_env` names; kept out of repr.
    token: str = _key(
        check=lambda s: len(s) >= 16, expect="a token of at least 16 characters", env="token_env", repr=False
    )
    # A fixed id keeps the webhook URL a team already uses (e.g. when migrating from Amazon Chime).
    id: str | None = _key(
        None, lambda s: re.fullmatch(r"[A-Za-z0-9_-]{1,64}", s), "1 to 64 of A-Z a-z 0-9 _ -"
    )


@dataclass(frozen=True, slots=True)
class RoomDecl:
    """A room declared in the file, created on start if missing."""

    name: str = _key(check=_name(100), expect="a name of 1 to 100 characters")
    webhooks: tuple[WebhookDecl, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    source: str  # the file it came from, or "<defaults>"; not a TOML key
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    meetings: MeetingsConfig = field(default_factory=MeetingsConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    imip: ImipConfig = field(default_factory=ImipConfig)
    rooms: tuple[RoomDecl, ...] = ()
    calendars: tuple[CalendarDecl, ...] = ()

    @property
    def meeting_domain(self) -> str:
        """The domain of the meeting addresses: `[meetings] address_domain`, else the public URL's host."""
        return self.meetings.address_domain or (urlsplit(self.server.base_url).hostname or "localhost")


def load_config(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML file; None gives all defaults. env defaults to os.environ."""
    if path is None:
        return parse_config({}, env=env)
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"{source}: file not found"]) from None
    except OSError as e:
        raise ConfigError([f"{source}: cannot read file: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{source}: not valid UTF-8 at byte {e.start}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{source}: invalid TOML: {e}"]) from None
    return parse_config(data, source, env)


def parse_config(data: dict, source: str = DEFAULT_SOURCE, env: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed TOML dict (source names the file in errors)."""
    problems = _Problems(source, os.environ if env is None else env)
    config = _build(Config, data, "", problems, source=source)
    _cross_check(config, problems)
    if problems.errors:
        raise ConfigError(problems.errors)
    return config


_BAD = object()  # marks a value that failed validation (its problem is already recorded)
_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


class _Problems:
    """Collects every problem so the admin can fix the whole file in one go."""

    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source, self.env = source, env
        self.errors: list[str] = []

    def add(self, path: str, message: str) -> None:
        """Record one problem at a key path."""
        self.errors.append(f"{self.source}: {path}: {message}")

    def unique(self, seen: dict[str, str], value: str | None, where: str, fold: bool = False) -> None:
        """Report `value` if an earlier key in `seen` has it; `fold` ignores case, as people would."""
        if value is None:
            return  # missing or invalid; already reported
        first = seen.setdefault(value.casefold() if fold else value, where)
        if first != where:
            case = " (ignoring case)" if fold else ""
            self.add(where, f"expected a value not already used by {first}{case}, got {_got(value)}")


def _got(value: object) -> str:
    """The repr of a value, shortened so long strings do not swamp the message."""
    text = repr(value)
    return text if len(text) <= _GOT_MAX else text[: _GOT_MAX - 3] + "..."


def _join(path: str, key: str) -> str:
    """Extend a key path: "" + "server" -> "server"; "server" + "port" -> "server.port"."""
    return f"{path}.{key}" if path else key


def _describe(tp: Any) -> str:
    """A phrase for what a value of type `tp` looks like in TOML."""
    origin, args = get_origin(tp), get_args(tp)  # `X | None` never gets here: _value unwraps it
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is tuple:
        return "an array of tables" if is_dataclass(args[0]) else "an array"
    return "a table" if is_dataclass(tp) else _KINDS[tp]


def _value(tp: Any, value: Any, path: str, problems: _Problems, expect: str) -> Any:
    """Check `value` against type `tp`; returns it (converted) or _BAD after recording why."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):  # `X | None`: TOML has no null, so the key is an X or absent
        return _value(next(a for a in args if a is not NoneType), value, path, problems, expect)
    if is_dataclass(tp):
        if isinstance(value, dict):
            return _build(tp, value, path, problems)
    elif origin is tuple:
        if isinstance(value, list):
            return tuple(_value(args[0], v, f"{path}[{i}]", problems, "") for i, v in enumerate(value))
    elif origin is Literal:
        if any(type(value) is type(choice) and value == choice for choice in args):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):  # 2 means 2.0
            return float(value)
    elif isinstance(value, tp) and not (tp is int and isinstance(value, bool)):  # bool is an int subclass
        return value
    problems.add(path, f"expected {expect or _describe(tp)}, got {_got(value)}")
    return _BAD


def _build(cls: Any, data: dict, path: str, problems: _Problems, **given: Any) -> Any:
    """Build dataclass `cls` from a TOML table, recording problems; `given` fields are not TOML keys.

    It always returns an instance, with defaults (or None) in place of bad values, so that the
    cross-checks can still run; the instance never escapes when any problem was recorded.
    """
    hints = get_type_hints(cls)
    from_env = {f.name: f for f in fields(cls) if "env" in f.metadata}
    keys = {f.name: f for f in fields(cls) if f.name not in given and f.name not in from_env}
    values = dict(given)
    for key, raw in data.items():
        where = _join(path, key)
        if key in from_env:
            source_key = from_env[key].metadata["env"]
            problems.add(where, f"unknown key (secrets are not read from the file; set '{source_key}')")
            continue
        if key not in keys:
            close = get_close_matches(key, list(keys), n=1)
            problems.add(where, "unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))
            continue
        meta = keys[key].metadata
        value = _value(hints[key], raw, where, problems, meta.get("expect", ""))
        check = meta.get("check")
        if value is not _BAD and check is not None and not check(value):
            problems.add(where, f"expected {meta['expect']}, got {_got(value)}")
            value = _BAD
        if value is not _BAD:
            values[key] = value
    for key, f in keys.items():
        if key not in values and f.default is MISSING and f.default_factory is MISSING:
            if key not in data:
                expect = f.metadata.get("expect") or _describe(hints[key])
                problems.add(_join(path, key), f"required key is missing (expected {expect})")
            values[key] = None  # placeholder; the problem is recorded
    for key, f in from_env.items():
        values[key] = _secret(f, values.get(f.metadata["env"]), path, problems)
    return cls(**values)


def _secret(f: Any, var: object, path: str, problems: _Problems) -> str:
    """Read a secret from the environment variable named by a sibling key, never echoing its value."""
    if not isinstance(var, str):
        return ""  # the variable-name key itself is missing or invalid, and already reported
    where, secret = _join(path, f.metadata["env"]), problems.env.get(var)
    if not secret:
        problems.add(where, f"environment variable {var} is {'empty' if secret == '' else 'not set'}")
    elif not f.metadata["check"](secret):
        expect, count = f.metadata["expect"], len(secret)
        problems.add(where, f"expected environment variable {var} to hold {expect}, got {count} characters")
    return secret or ""


def _cross_check(config: Config, problems: _Problems) -> None:
    """Rules that span keys: unique room names and webhook ids, webhook names and count per room."""
    limit = config.webhooks.max_per_room
    room_names: dict[str, str] = {}
    hook_ids: dict[str, str] = {}  # ids become URLs, so they are unique server-wide
    for i, room in enumerate(config.rooms):
        if not isinstance(room, RoomDecl):
            continue  # not a table; already reported
        problems.unique(room_names, room.name, f"rooms[{i}].name", fold=True)
        if (count := len(room.webhooks)) > limit:
            where = f"rooms[{i}].webhooks"
            problems.add(where, f"expected at most {limit} (webhooks.max_per_room), got {count}")
        hook_names: dict[str, str] = {}
        for j, hook in enumerate(room.webhooks):
            if isinstance(hook, WebhookDecl):
                problems.unique(hook_names, hook.name, f"rooms[{i}].webhooks[{j}].name", fold=True)
                problems.unique(hook_ids, hook.id, f"rooms[{i}].webhooks[{j}].id")
    _check_calendars(config, problems)


_CALENDAR_SCHEMES = {"caldav": ("http://", "https://"), "ics": ("http://", "https://", "webcal://")}


def _check_calendars(config: Config, problems: _Problems) -> None:
    """Unique calendar names, a URL that suits each kind, and valid room names."""
    names: dict[str, str] = {}
    for i, cal in enumerate(config.calendars):
        if not isinstance(cal, CalendarDecl):
            continue  # not a table; already reported
        problems.unique(names, cal.name, f"calendars[{i}].name")
        schemes = _CALENDAR_SCHEMES.get(cal.kind or "")
        if schemes and isinstance(cal.url, str) and not cal.url.lower().startswith(schemes):
            problems.add(
                f"calendars[{i}].url",
                f"expected a URL starting with {' or '.join(schemes)} for kind {cal.kind!r}, "
                f"got {_got(cal.url)}",
            )
        for j, room in enumerate(cal.rooms):
            if isinstance(room, str) and not _name(100)(room):
                problems.add(
                    f"calendars[{i}].rooms[{j}]",
                    f"expected a room name of 1 to 100 characters, got {_got(room)}",
                )
