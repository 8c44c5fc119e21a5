"""The sections of the config file, one frozen dataclass each, with every key's default and check."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from typing import Literal

from chimebot.config.reading import bounded_name, env_name, is_domain, is_zone, key, positive, url_key
from chimebot.models import WebhookAuth, WebhookDialect
from webhooks import chime

IMIP_SOURCE = "imip"  # the source name of occurrences learnt from mailed invitations


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where the HTTP server listens and the URL people reach it by."""

    host: str = key("127.0.0.1", lambda s: s.strip(), "a host name or IP address")
    port: int = key(8080, lambda n: 1 <= n <= 65535, "an integer from 1 to 65535")
    public_url: str = url_key("http", "https")  # empty: derived from host and port, see base_url

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
    url: str = url_key("sqlite", "sqlite+aiosqlite", "postgresql", "postgresql+asyncpg")
    # SQLite durability: "normal" survives a process crash, "full" also survives power loss.
    synchronous: Literal["normal", "full"] = "normal"
    pool_size: int = key(10, lambda n: 1 <= n <= 1000, "an integer from 1 to 1000")


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Redis for clustering; empty means a single node with an in-process bus."""

    url: str = url_key("redis", "rediss", "unix")
    # Namespace of the channel and keys, so that several deployments can share one Redis.
    prefix: str = key(
        "chimebot", lambda s: re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", s), "1 to 64 of A-Z a-z 0-9 _ . : -"
    )


@dataclass(frozen=True, slots=True)
class BootstrapConfig:
    """The account and administrator created on first start."""

    account_name: str = key("chimebot", bounded_name(100), "a name of 1 to 100 characters")
    admin_email: str = key(
        "admin@localhost",
        lambda s: s.count("@") == 1 and all(part.strip() for part in s.split("@")),
        "an email address like admin@example.com",
    )
    signin_link_ttl_minutes: int = key(1440, lambda n: n > 0, "an integer > 0")


@dataclass(frozen=True, slots=True)
class AccountsConfig:
    """Defaults for users and accounts, and how sign-in is protected."""

    # The license new users get (Amazon Chime made invited users Pro); admins change it per user.
    default_license: Literal["basic", "pro"] = "pro"
    # Zone of new accounts: the usage report counts days and months in the account's zone.
    default_time_zone: str = key("UTC", is_zone, "an IANA time zone name like Europe/Berlin")
    invitation_ttl_hours: int = key(168, lambda n: n > 0, "an integer > 0")
    password_min_length: int = key(10, lambda n: 8 <= n <= 128, "an integer from 8 to 128")
    # Password sign-in attempts allowed per window, per address and per account.
    signin_attempts_per_address: int = key(5, lambda n: n >= 1, "an integer >= 1")
    signin_attempts_per_account: int = key(50, lambda n: n >= 1, "an integer >= 1")
    signin_window_minutes: float = key(15.0, positive, "a number > 0")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Outgoing mail; with no host, messages are written to an outbox folder instead."""

    host: str = ""
    port: int = key(587, lambda n: 1 <= n <= 65535, "an integer from 1 to 65535")
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str | None = env_name("CHIMEBOT_SMTP_PASSWORD")
    # Not a TOML key: read from the variable `password_env` names; kept out of repr.
    password: str = key("", lambda s: True, "a password", env="password_env", repr=False)
    from_address: str = key(
        "chimebot@localhost",
        lambda s: s.count("@") == 1 and all(part.strip() for part in s.split("@")),
        "an email address like chimebot@example.com",
    )
    timeout_seconds: float = key(10.0, positive, "a number > 0")
    # Where messages go without a host; "" means the "outbox" folder in the data directory.
    outbox_dir: str = ""


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """Prices of the usage report: Pro is charged per active day, capped per user and month."""

    price_per_day: float = key(3.0, lambda x: 0 <= x < math.inf, "a number >= 0")
    monthly_cap: float = key(15.0, lambda x: 0 <= x < math.inf, "a number >= 0")
    currency: str = key("USD", lambda s: re.fullmatch(r"[A-Z]{3}", s), "a 3-letter ISO 4217 code")


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    """Limits for incoming webhooks."""

    rate_per_second: float = key(1.0, positive, "a number > 0")
    burst: int = key(1, lambda n: n >= 1, "an integer >= 1")
    max_content_chars: int = key(chime.MAX_CONTENT_CHARS, lambda n: n > 0, "an integer > 0")
    max_body_bytes: int = key(65536, lambda n: n >= 1024, "an integer >= 1024")
    max_per_room: int = key(10, lambda n: n >= 1, "an integer >= 1")
    mention_all_max_members: int = key(50, lambda n: n >= 1, "an integer >= 1")
    # The time a template may take on one body before it is stopped (and the admins told).
    template_seconds: float = key(0.5, lambda x: 0 < x <= 10, "a number of seconds > 0 and <= 10")
    # How far a Standard Webhooks `webhook-timestamp` may be from now.
    signature_tolerance_seconds: int = key(300, lambda n: 1 <= n <= 3600, "an integer from 1 to 3600")
    # How long an Idempotency-Key or webhook-id is remembered (a resend then gets the first answer).
    receipt_hours: float = key(24.0, lambda x: 0 < x <= 24 * 30, "a number of hours > 0 and <= 720")


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Tuning of the WebSocket event stream."""

    # Frames buffered per client before it is disconnected and must resume.
    queue_size: int = key(1000, lambda n: n >= 1, "an integer >= 1")
    heartbeat_seconds: float = key(30.0, positive, "a number > 0")
    # Most events replayed to a client resuming after a disconnect.
    replay_limit: int = key(10000, lambda n: n >= 1, "an integer >= 1")
    # How often the node reads the event log for events written elsewhere (other nodes, the CLI).
    poll_seconds: float = key(1.0, positive, "a number > 0")


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """How much the server logs."""

    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class DialInNumber:
    """A phone number people dial to join a meeting, with a label such as "United States (toll)"."""

    number: str = key(
        check=lambda s: re.fullmatch(r"\+[0-9][0-9 ()-]{4,30}", s),
        expect='an international phone number like "+1 206-555-0100"',
    )
    label: str = key("", lambda s: len(s) <= 100, "a label of at most 100 characters")


@dataclass(frozen=True, slots=True)
class MeetingsConfig:
    """The generated meeting addresses, the dial-in numbers and the texts people receive."""

    # The domain of meet@<domain> and pin+<meeting id>@<domain>; "" means the host of the public URL.
    address_domain: str = key(
        "", lambda s: s == "" or is_domain(s), "a domain name like example.com, or empty"
    )
    dial_in: tuple[DialInNumber, ...] = ()
    # jinja2 files replacing the built-in attendee invitation and dial-in instructions; "" = built-in.
    invitation_template: str = ""
    instructions_template: str = ""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """When calendar meetings are called."""

    # A server that was down at a start still calls this long after it; later, the call is recorded missed.
    grace_minutes: float = key(10.0, positive, "a number > 0")
    # Call this many seconds before the start time.
    lead_seconds: float = key(0.0, lambda x: 0 <= x <= 3600, "a number from 0 to 3600")
    # How far ahead calendars are read into occurrences.
    lookahead_days: int = key(30, lambda n: 1 <= n <= 366, "an integer from 1 to 366")


@dataclass(frozen=True, slots=True)
class CalendarDecl:
    """A calendar watched for meetings that invite the meeting address."""

    name: str = key(
        check=lambda s: re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", s) and s != IMIP_SOURCE,
        expect=f"1 to 64 of A-Z a-z 0-9 _ . - (not {IMIP_SOURCE!r}, which names the iMIP listener)",
    )
    kind: Literal["caldav", "ics", "folder"] = key(expect="one of 'caldav', 'ics', 'folder'")
    # caldav: the collection URL; ics: the feed URL (http, https or webcal); folder: a directory path.
    url: str = key(check=lambda s: bool(s.strip()), expect="a URL, or a directory path for kind 'folder'")
    username: str = ""
    password_env: str | None = env_name("CHIMEBOT_CALDAV_PASSWORD")
    # Not a TOML key: read from the variable `password_env` names; kept out of repr.
    password: str = key("", lambda s: True, "a password", env="password_env", repr=False)
    poll_seconds: float = key(60.0, lambda x: 1 <= x < math.inf, "a number >= 1")
    # The zone of floating times (events without a zone), e.g. "Europe/Berlin".
    time_zone: str = key("UTC", is_zone, "an IANA time zone name like Europe/Berlin")
    # Rooms (of the operator's account, created if missing) that get the dial-in instructions.
    rooms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImipConfig:
    """The SMTP listener that takes invitations mailed to the meeting addresses (iMIP)."""

    # "host:port" to listen on, e.g. "127.0.0.1:2525"; "" (default) means no listener.
    listen: str = key(
        "",
        lambda s: s == "" or re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\s]+):[0-9]{1,5}", s),
        '"host:port", or empty',
    )
    max_message_bytes: int = key(10 * 2**20, lambda n: n >= 1024, "an integer >= 1024")
    # The zone of floating times in mailed invitations.
    time_zone: str = key("UTC", is_zone, "an IANA time zone name like Europe/Berlin")


@dataclass(frozen=True, slots=True)
class WebhookDecl:
    """An incoming webhook declared in the file, with its token taken from the environment."""

    name: str = key(check=bounded_name(64), expect="a name of 1 to 64 characters")
    token_env: str = key(
        check=lambda s: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s),
        expect="the name of an environment variable, like CHIMEBOT_CI_WEBHOOK_TOKEN",
    )
    # Not a TOML key: read from the environment variable that `token_env` names; kept out of repr.
    token: str = key(
        check=lambda s: len(s) >= 16, expect="a token of at least 16 characters", env="token_env", repr=False
    )
    # A fixed id keeps the webhook URL a team already uses (e.g. when migrating from Amazon Chime).
    id: str | None = key(
        None, lambda s: re.fullmatch(r"[A-Za-z0-9_-]{1,64}", s), "1 to 64 of A-Z a-z 0-9 _ -"
    )
    dialect: WebhookDialect = "auto"
    locked: bool = True
    template: str | None = key(
        None, lambda s: re.fullmatch(TEMPLATE_NAME, s), "a template name (a built-in or a [[templates]] name)"
    )
    auth: WebhookAuth = "token"
    signing_secret_env: str | None = env_name("CHIMEBOT_DEPLOYS_SIGNING_SECRET")
    # Not a TOML key: read from the environment variable that `signing_secret_env` names.
    signing_secret: str = key(
        "",
        lambda s: _is_whsec(s),
        "a secret like whsec_<Base64 of 24 to 64 bytes>",
        env="signing_secret_env",
        repr=False,
    )


TEMPLATE_NAME = r"[a-z0-9][a-z0-9_-]{0,39}"


@dataclass(frozen=True, slots=True)
class TemplateDecl:
    """A webhook template file: a sandboxed jinja2 template that turns a JSON payload into a message."""

    name: str = key(check=lambda s: re.fullmatch(TEMPLATE_NAME, s), expect="1 to 40 of a-z 0-9 _ -")
    path: str = key(check=lambda s: bool(s.strip()), expect="the path of a jinja2 template file")


def _is_whsec(secret: str) -> bool:
    """A check for a Standard Webhooks secret: whsec_ and the Base64 of 24 to 64 bytes."""
    if not secret.startswith("whsec_"):
        return False
    try:
        return 24 <= len(base64.b64decode(secret[len("whsec_") :], validate=True)) <= 64
    except (binascii.Error, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class RoomDecl:
    """A room declared in the file, created on start if missing."""

    name: str = key(check=bounded_name(100), expect="a name of 1 to 100 characters")
    webhooks: tuple[WebhookDecl, ...] = ()


BOT_EVENTS = ("Invite", "Mention", "Remove", "Message", "MeetingStarted")
BotEvent = Literal["Invite", "Mention", "Remove", "Message", "MeetingStarted"]


@dataclass(frozen=True, slots=True)
class BotDecl:
    """A chat-room bot: an HTTP endpoint (or a built-in class) that gets room events and answers."""

    # The bot's address is <name>-chimebot@<meeting domain>; people @mention it by name or display name.
    name: str = key(
        check=lambda s: re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", s),
        expect="1 to 40 of a-z 0-9 _ - (starting with a letter or digit)",
    )
    display_name: str = key("", lambda s: len(s) <= 100, "a name of at most 100 characters")
    # http(s) URL that receives the events; or leave it out and name a `builtin` bot instead.
    endpoint: str = key(
        "",
        lambda s: s == "" or re.fullmatch(r"https?://[^\s/?#]+[^\s]*", s),
        "an http:// or https:// URL, or empty",
    )
    # The name of a Python class registered under the entry-point group `chimebot.bots`.
    builtin: str = key(
        "", lambda s: s == "" or re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", s), "an entry-point name"
    )
    secret_env: str | None = env_name("CHIMEBOT_DEPLOY_BOT_SECRET")
    # Not a TOML key: read from the variable `secret_env` names; kept out of repr.
    secret: str = key(
        "", lambda s: len(s) >= 16, "a secret of at least 16 characters", env="secret_env", repr=False
    )
    events: tuple[BotEvent, ...] = ("Invite", "Mention", "Remove")
    # Rooms of the operator's account that the bot joins on start (created if missing).
    rooms: tuple[str, ...] = ()
    signing: Literal["chime", "standard-webhooks"] = "chime"
    timeout_seconds: float = key(2.0, lambda x: 0 < x <= 60, "a number of seconds from 0 to 60")
    enabled: bool = True

    @property
    def label(self) -> str:
        """The name people see: the display name, else the name."""
        return self.display_name or self.name


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """How events reach bots: retries, concurrency, and which endpoints may be called."""

    # Private, loopback and link-local addresses are refused unless this is true (bots on this machine).
    allow_private_endpoints: bool = False
    # A delivery that keeps failing is retried for this long, then marked failed (admins can replay it).
    retry_hours: float = key(72.0, lambda x: 0 < x <= 24 * 30, "a number of hours from 0 to 720")
    # Deliveries in flight at once on a node (each bot and room still gets its events one at a time).
    concurrency: int = key(32, lambda n: 1 <= n <= 1000, "an integer from 1 to 1000")
    # How often a node looks for deliveries that are due (retries, and events written by other nodes).
    poll_seconds: float = key(1.0, lambda x: 0.05 <= x <= 60, "a number of seconds from 0.05 to 60")
