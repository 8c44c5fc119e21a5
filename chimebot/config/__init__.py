"""TOML config -> frozen, fully validated dataclasses (ARCHITECTURE rule 4: config is data).

``reading`` holds the machinery (key declarations, checks, problems that name the file and key),
``sections`` one dataclass per table of the file; this module the whole ``Config`` and its loading.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from chimebot.config.reading import ConfigError, Problems, bounded_name, build, got
from chimebot.config.sections import (
    BOT_EVENTS,
    IMIP_SOURCE,
    AccountsConfig,
    BillingConfig,
    BootstrapConfig,
    BotDecl,
    CalendarDecl,
    DatabaseConfig,
    DeliveryConfig,
    DialInNumber,
    ImipConfig,
    LoggingConfig,
    MeetingsConfig,
    RedisConfig,
    RoomDecl,
    SchedulerConfig,
    ServerConfig,
    SmtpConfig,
    StreamConfig,
    TemplateDecl,
    WebhookDecl,
    WebhooksConfig,
)
from webhooks import transforms
from webhooks.signing import standard_key

DEFAULT_SOURCE = "<defaults>"

__all__ = [
    "BOT_EVENTS",
    "DEFAULT_SOURCE",
    "IMIP_SOURCE",
    "AccountsConfig",
    "BillingConfig",
    "BootstrapConfig",
    "BotDecl",
    "CalendarDecl",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DeliveryConfig",
    "DialInNumber",
    "ImipConfig",
    "LoggingConfig",
    "MeetingsConfig",
    "RedisConfig",
    "RoomDecl",
    "SchedulerConfig",
    "ServerConfig",
    "SmtpConfig",
    "StreamConfig",
    "TemplateDecl",
    "WebhookDecl",
    "WebhooksConfig",
    "load_config",
    "parse_config",
]


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
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    rooms: tuple[RoomDecl, ...] = ()
    calendars: tuple[CalendarDecl, ...] = ()
    bots: tuple[BotDecl, ...] = ()
    templates: tuple[TemplateDecl, ...] = ()

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
    problems = Problems(source, os.environ if env is None else env)
    config = build(Config, data, "", problems, source=source)
    config = _resolve_templates(config)
    _cross_check(config, problems)
    if problems.errors:
        raise ConfigError(problems.errors)
    return config


def _resolve_templates(config: Config) -> Config:
    """Template paths relative to the config file's folder, as a person writing the file means them."""
    if config.source == DEFAULT_SOURCE:
        return config
    folder = os.path.dirname(os.path.abspath(config.source))
    resolved = tuple(
        replace(t, path=os.path.join(folder, t.path))
        if isinstance(t, TemplateDecl) and isinstance(t.path, str)
        else t
        for t in config.templates
    )
    return replace(config, templates=resolved)


def _cross_check(config: Config, problems: Problems) -> None:
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
                _check_webhook(config, hook, f"rooms[{i}].webhooks[{j}]", problems)
    _check_templates(config, problems)
    _check_calendars(config, problems)
    _check_bots(config, problems)


def _check_webhook(config: Config, hook: WebhookDecl, where: str, problems: Problems) -> None:
    """A template that exists, and a signing secret where the webhook wants signatures."""
    declared = {t.name for t in config.templates if isinstance(t, TemplateDecl)}
    if hook.template and hook.template not in transforms.BUILTIN and hook.template not in declared:
        names = ", ".join([*transforms.BUILTIN, *sorted(declared)])
        problems.add(f"{where}.template", f"expected one of {names}, got {got(hook.template)}")
    if hook.auth == "standard-webhooks" and hook.signing_secret_env is None:
        problems.add(
            f"{where}.signing_secret_env",
            "required key is missing when auth = 'standard-webhooks' (expected the name of the "
            "environment variable holding the whsec_ secret the sender signs with)",
        )


def _check_templates(config: Config, problems: Problems) -> None:
    """Unique template names that are not built-in names, and files that read and compile."""
    names: dict[str, str] = {}
    for i, decl in enumerate(config.templates):
        if not isinstance(decl, TemplateDecl) or decl.name is None or decl.path is None:
            continue  # not a table, or a bad key; already reported
        problems.unique(names, decl.name, f"templates[{i}].name")
        if decl.name in transforms.BUILTIN:
            problems.add(
                f"templates[{i}].name",
                f"expected a name that is not a built-in template's, got {got(decl.name)}",
            )
        try:
            transforms.load(decl.path)
        except transforms.TemplateError as exc:
            problems.add(f"templates[{i}].path", f"expected a jinja2 template that compiles: {exc}")


_CALENDAR_SCHEMES = {"caldav": ("http://", "https://"), "ics": ("http://", "https://", "webcal://")}


def _check_calendars(config: Config, problems: Problems) -> None:
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
                f"got {got(cal.url)}",
            )
        for j, room in enumerate(cal.rooms):
            if isinstance(room, str) and not bounded_name(100)(room):
                problems.add(
                    f"calendars[{i}].rooms[{j}]",
                    f"expected a room name of 1 to 100 characters, got {got(room)}",
                )


def _check_bots(config: Config, problems: Problems) -> None:
    """Unique bot names, an endpoint (with a secret to sign with) or a built-in class, valid rooms."""
    names: dict[str, str] = {}
    for i, bot in enumerate(config.bots):
        if not isinstance(bot, BotDecl):
            continue  # not a table; already reported
        where = f"bots[{i}]"
        problems.unique(names, bot.name, f"{where}.name")
        if bool(bot.endpoint) == bool(bot.builtin):
            problems.add(
                where, "expected exactly one of `endpoint` (an http(s) URL) or `builtin` (a bot class)"
            )
        elif bot.endpoint and bot.secret_env is None:
            problems.add(
                f"{where}.secret_env",
                "required key is missing (expected the name of the environment variable holding the "
                "secret the bot's requests are signed with)",
            )
        if bot.endpoint and bot.signing == "standard-webhooks" and bot.secret:
            try:
                standard_key(bot.secret)
            except ValueError as exc:
                problems.add(f"{where}.secret_env", f"expected a Standard Webhooks secret: {exc}")
        for j, room in enumerate(bot.rooms):
            if isinstance(room, str) and not bounded_name(100)(room):
                problems.add(
                    f"{where}.rooms[{j}]", f"expected a room name of 1 to 100 characters, got {got(room)}"
                )
