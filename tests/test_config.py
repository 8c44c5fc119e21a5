"""Tests for chimebot.config: defaults, the example file, and the wording of every kind of error."""

import dataclasses
import re
import textwrap
import tomllib
from pathlib import Path

import pytest

from chimebot.config import (
    BootstrapConfig,
    BotDecl,
    CalendarDecl,
    Config,
    ConfigError,
    DatabaseConfig,
    DeliveryConfig,
    ImipConfig,
    LoggingConfig,
    MeetingsConfig,
    RedisConfig,
    RoomDecl,
    SchedulerConfig,
    ServerConfig,
    StreamConfig,
    TemplateDecl,
    WebhookDecl,
    WebhooksConfig,
    load_config,
    parse_config,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
TOKEN = "s3cret-token-0123456789abcdef"  # long enough to be valid
SECTIONS = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "redis": RedisConfig,
    "bootstrap": BootstrapConfig,
    "webhooks": WebhooksConfig,
    "stream": StreamConfig,
    "logging": LoggingConfig,
    "meetings": MeetingsConfig,
    "scheduler": SchedulerConfig,
    "imip": ImipConfig,
    "delivery": DeliveryConfig,
}
# Keys documented commented out, as arrays of tables: [[meetings.dial_in]].
COMMENTED = {"meetings": {"dial_in"}}


@pytest.fixture
def write(tmp_path, monkeypatch):
    """Write text to tmp_path/config.toml and return the relative name, so messages read 'config.toml: …'."""
    monkeypatch.chdir(tmp_path)

    def _write(text: str) -> str:
        (tmp_path / "config.toml").write_text(text, encoding="utf-8")
        return "config.toml"

    return _write


@pytest.fixture
def errors(write):
    """Load the given TOML text and return the ConfigError's messages (fails if it loads)."""

    def _errors(text: str, env: dict[str, str] | None = None) -> tuple[str, ...]:
        with pytest.raises(ConfigError) as info:
            load_config(write(text), env=env or {})
        assert str(info.value) == "\n".join(info.value.errors)
        return info.value.errors

    return _errors


def hook(name: str = "CI", env: str = "HOOK_TOKEN", extra: str = "") -> str:
    """TOML for one [[rooms.webhooks]] entry."""
    return f'[[rooms.webhooks]]\nname = "{name}"\ntoken_env = "{env}"\n{extra}\n'


# --- defaults and the example --------------------------------------------------------------------------


def test_no_file_gives_all_defaults():
    config = load_config(None, env={})
    assert config == Config(source="<defaults>")
    assert config.server == ServerConfig(host="127.0.0.1", port=8080, public_url="")
    assert config.server.base_url == "http://127.0.0.1:8080"
    assert config.database.url == ""
    assert config.database.synchronous == "normal"
    assert config.database.pool_size == 10
    assert config.redis.url == ""
    assert config.bootstrap == BootstrapConfig("chimebot", "admin@localhost", 1440)
    assert config.webhooks == WebhooksConfig(1.0, 1, 4096, 65536, 10, 50)
    assert config.stream == StreamConfig(1000, 30.0, 10000)
    assert config.logging.level == "info"
    assert config.rooms == ()


def test_empty_file_and_empty_dict_give_defaults(write):
    assert load_config(write(""), env={}) == Config(source="config.toml")
    assert parse_config({}, env={}) == Config(source="<defaults>")


def test_example_file_loads_with_defaults_and_no_environment():
    config = load_config(EXAMPLE, env={})
    assert config.source == str(EXAMPLE)
    # The example documents the defaults, so every section equals its defaults.
    for section, cls in SECTIONS.items():
        # Except that local bots work out of the box (the issue asks for it in the example).
        expected = cls(allow_private_endpoints=True) if cls is DeliveryConfig else cls()
        assert getattr(config, section) == expected, section
    assert config.rooms == ()
    assert config.bots == ()


def uncommented_example() -> str:
    """The example with its commented-out [[rooms]] block switched on."""
    text = EXAMPLE.read_text(encoding="utf-8")
    head, rooms = text.split("#[[rooms]]")
    rooms, templates = rooms.split("# Template files")
    keys = r"^#(\[\[rooms|name = |token_env = |id = |dialect = |locked = |template = |auth = )"
    return head + re.sub(keys, r"\1", "#[[rooms]]" + rooms, flags=re.M) + "# Template files" + templates


def test_example_rooms_block_declares_what_it_says_when_uncommented(write):
    config = load_config(write(uncommented_example()), env={"CHIMEBOT_CI_WEBHOOK_TOKEN": TOKEN})
    assert config.rooms == (
        RoomDecl(
            name="Deployments",
            webhooks=(
                WebhookDecl(
                    "CI", "CHIMEBOT_CI_WEBHOOK_TOKEN", TOKEN, id="abcdEFGH1234_-xyz", template="github"
                ),
            ),
        ),
    )


def test_example_file_documents_every_key():
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for section, cls in SECTIONS.items():
        documented = set(raw[section]) | COMMENTED.get(section, set())
        assert documented == {f.name for f in dataclasses.fields(cls)}, section
    text = EXAMPLE.read_text(encoding="utf-8")
    hook_keys = {f.name for f in dataclasses.fields(WebhookDecl)} - {"token", "signing_secret"}  # from env
    for name in ("webhooks", *hook_keys, *(f.name for f in dataclasses.fields(TemplateDecl))):
        assert re.search(rf"^#({name} = |\[\[rooms\.{name}\]\])", text, re.M), name
    assert "#[[templates]]" in text
    assert "chimebot check-config config.example.toml" in text


def test_example_calendar_block_declares_what_it_says_when_uncommented(write):
    text = EXAMPLE.read_text(encoding="utf-8")
    head, block = text.split("#[[calendars]]")
    rooms = block.index("# Rooms declared here")
    block, rest = re.sub(r"^#(?=[a-z_]+ = )", "", block[:rooms], flags=re.M), block[rooms:]
    config = load_config(
        write(head + "[[calendars]]" + block + rest), env={"CHIMEBOT_CALDAV_PASSWORD": "s3cret"}
    )
    assert config.calendars == (
        CalendarDecl(
            name="team",
            kind="caldav",
            url="https://dav.example.com/calendars/alice/work/",
            username="alice",
            password_env="CHIMEBOT_CALDAV_PASSWORD",
            password="s3cret",
            poll_seconds=60.0,
            time_zone="UTC",
            rooms=("Standup",),
        ),
    )
    assert "s3cret" not in repr(config)


def test_calendar_mistakes_name_the_key(write):
    text = """
        [[calendars]]
        name = "imip"
        kind = "caldav"
        url = "ftp://dav.example.com/cal/"
        rooms = [""]

        [[calendars]]
        name = "b"
        kind = "ics"
        url = "https://example.com/b.ics"
        time_zone = "Mars/Olympus"

        [[calendars]]
        name = "b"
        kind = "folder"
        url = "/srv/calendars"
    """
    with pytest.raises(ConfigError) as info:
        load_config(write(textwrap.dedent(text)), env={})
    errors = "\n".join(info.value.errors)
    assert "config.toml: calendars[0].name: expected 1 to 64 of" in errors
    assert "(not 'imip', which names the iMIP listener), got 'imip'" in errors
    assert (
        "config.toml: calendars[0].url: expected a URL starting with http:// or https:// for kind 'caldav'"
        in errors
    )
    assert "config.toml: calendars[0].rooms[0]: expected a room name of 1 to 100 characters" in errors
    assert "config.toml: calendars[1].time_zone: expected an IANA time zone name" in errors
    assert "config.toml: calendars[2].name" in errors


def test_env_defaults_to_os_environ(monkeypatch, write):
    path = write(uncommented_example())
    monkeypatch.setenv("CHIMEBOT_CI_WEBHOOK_TOKEN", TOKEN)
    assert load_config(path).rooms[0].webhooks[0].token == TOKEN
    monkeypatch.delenv("CHIMEBOT_CI_WEBHOOK_TOKEN")
    with pytest.raises(ConfigError, match="CHIMEBOT_CI_WEBHOOK_TOKEN is not set"):
        load_config(path)


def test_values_are_read_and_normalised(write):
    text = """
        [server]
        host = "::1"
        port = 9000
        public_url = "https://chat.example.com/"
        [database]
        url = "postgresql+asyncpg://chime@db/chime"
        synchronous = "full"
        [webhooks]
        rate_per_second = 5
        [logging]
        level = "debug"
        [[rooms]]
        name = "Ops"
    """
    config = load_config(write(text + hook(extra='id = "Abc_-123"')), env={"HOOK_TOKEN": TOKEN})
    assert config.server.public_url == "https://chat.example.com"
    assert config.server.base_url == "https://chat.example.com"
    assert ServerConfig(host="::1", port=9000).base_url == "http://[::1]:9000"
    assert config.database.synchronous == "full"
    rate = config.webhooks.rate_per_second
    assert rate == 5.0 and isinstance(rate, float)  # an int is accepted where a number is expected
    assert config.logging.level == "debug"
    assert config.rooms[0].webhooks[0].id == "Abc_-123"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/chime.db",
        "sqlite+aiosqlite:///data/chime.db",
        "postgresql://u@h/d",
        "postgresql+asyncpg://h/d",
    ],
)
def test_database_urls_accepted(url):
    assert parse_config({"database": {"url": url}}, env={}).database.url == url


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://h:6380", "unix:///run/redis.sock"])
def test_redis_urls_accepted(url):
    assert parse_config({"redis": {"url": url}}, env={}).redis.url == url


# --- one message per kind of problem ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[webhooks]\nrate_per_secnd = 2",
            "config.toml: webhooks.rate_per_secnd: unknown key (did you mean 'rate_per_second'?)",
        ),
        ("[webhook]\nburst = 2", "config.toml: webhook: unknown key (did you mean 'webhooks'?)"),
        ("[server]\nxyzzy = 1", "config.toml: server.xyzzy: unknown key"),
        ('source = "x"', "config.toml: source: unknown key"),
        (
            '[webhooks]\nrate_per_second = "abc"',
            "config.toml: webhooks.rate_per_second: expected a number > 0, got 'abc'",
        ),
        (
            "[webhooks]\nrate_per_second = 0",
            "config.toml: webhooks.rate_per_second: expected a number > 0, got 0.0",
        ),
        (
            "[webhooks]\nrate_per_second = nan",
            "config.toml: webhooks.rate_per_second: expected a number > 0, got nan",
        ),
        (
            "[stream]\nheartbeat_seconds = inf",
            "config.toml: stream.heartbeat_seconds: expected a number > 0, got inf",
        ),
        ("[server]\nport = true", "config.toml: server.port: expected an integer from 1 to 65535, got True"),
        ("[server]\nport = 80.0", "config.toml: server.port: expected an integer from 1 to 65535, got 80.0"),
        (
            "[server]\nport = 70000",
            "config.toml: server.port: expected an integer from 1 to 65535, got 70000",
        ),
        ("[server]\nhost = 1", "config.toml: server.host: expected a host name or IP address, got 1"),
        ("server = 5", "config.toml: server: expected a table, got 5"),
        (
            "[webhooks]\nmax_body_bytes = 1023",
            "config.toml: webhooks.max_body_bytes: expected an integer >= 1024, got 1023",
        ),
        ("[stream]\nqueue_size = 0", "config.toml: stream.queue_size: expected an integer >= 1, got 0"),
        (
            '[logging]\nlevel = "verbose"',
            "config.toml: logging.level: expected one of 'debug', 'info', 'warning', 'error', got 'verbose'",
        ),
        (
            '[database]\nsynchronous = "FULL"',
            "config.toml: database.synchronous: expected one of 'normal', 'full', got 'FULL'",
        ),
        (
            '[server]\npublic_url = "chat.example.com"',
            "config.toml: server.public_url: expected a URL starting with http:// or https://, or empty, "
            "got 'chat.example.com'",
        ),
        (
            '[redis]\nurl = "localhost:6379"',
            "config.toml: redis.url: expected a URL starting with redis://, rediss:// or unix://, or empty, "
            "got 'localhost:6379'",
        ),
        (
            '[bootstrap]\nadmin_email = "a@b@c"',
            "config.toml: bootstrap.admin_email: expected an email address like admin@example.com, "
            "got 'a@b@c'",
        ),
        ("rooms = 3", "config.toml: rooms: expected an array of tables, got 3"),
        (
            "[[rooms]]\nwebhooks = []",
            "config.toml: rooms[0].name: required key is missing (expected a name of 1 to 100 characters)",
        ),
        (
            '[[rooms]]\nname = "  "',
            "config.toml: rooms[0].name: expected a name of 1 to 100 characters, got '  '",
        ),
    ],
)
def test_single_error_message(errors, text, message):
    assert errors(text) == (message,)


def test_bad_database_url(errors):
    (message,) = errors('[database]\nurl = "mysql://db/chime"')
    assert message.startswith("config.toml: database.url: expected a URL starting with sqlite://")
    assert message.endswith("got 'mysql://db/chime'")


def test_long_values_are_shortened(errors):
    (message,) = errors(f'[server]\npublic_url = "ftp://{"x" * 200}"')
    got = message.split(", got ", 1)[1]
    assert len(got) == 60 and got.startswith("'ftp://xxx") and got.endswith("...")


def test_missing_env_var_names_key_and_variable(errors):
    text = '[[rooms]]\nname = "Ops"\n' + hook("CI", "CI_TOKEN") + hook("Deploy", "DEPLOY_HOOK_TOKEN")
    assert errors(text, env={"CI_TOKEN": TOKEN}) == (
        "config.toml: rooms[0].webhooks[1].token_env: environment variable DEPLOY_HOOK_TOKEN is not set",
    )
    assert errors(text, env={"CI_TOKEN": TOKEN, "DEPLOY_HOOK_TOKEN": ""}) == (
        "config.toml: rooms[0].webhooks[1].token_env: environment variable DEPLOY_HOOK_TOKEN is empty",
    )


def test_short_token_is_an_error_that_does_not_print_it(errors):
    short = "hunter2secret"
    text = '[[rooms]]\nname = "Ops"\n' + hook("CI", "CI_TOKEN")
    messages = errors(text, env={"CI_TOKEN": short})
    assert messages == (
        "config.toml: rooms[0].webhooks[0].token_env: expected environment variable CI_TOKEN to hold "
        "a token of at least 16 characters, got 13 characters",
    )
    assert short not in "\n".join(messages)


def test_inline_token_is_refused_without_echoing_it(errors):
    text = '[[rooms]]\nname = "Ops"\n' + hook("CI", "CI_TOKEN", f'token = "{TOKEN}"')
    messages = errors(text, env={"CI_TOKEN": TOKEN})
    assert messages == (
        "config.toml: rooms[0].webhooks[0].token: unknown key "
        "(secrets are not read from the file; set 'token_env')",
    )
    assert TOKEN not in "\n".join(messages)


def test_bad_token_env_and_webhook_id(errors):
    text = '[[rooms]]\nname = "Ops"\n' + hook("CI", "not a name", 'id = "has/slash"')
    assert errors(text) == (
        "config.toml: rooms[0].webhooks[0].token_env: expected the name of an environment variable, "
        "like CHIMEBOT_CI_WEBHOOK_TOKEN, got 'not a name'",
        "config.toml: rooms[0].webhooks[0].id: expected 1 to 64 of A-Z a-z 0-9 _ -, got 'has/slash'",
    )


def test_duplicate_room_names_ignoring_case(errors):
    text = '[[rooms]]\nname = "Deployments"\n[[rooms]]\nname = "Ops"\n[[rooms]]\nname = "deployments"\n'
    assert errors(text) == (
        "config.toml: rooms[2].name: expected a value not already used by rooms[0].name (ignoring case), "
        "got 'deployments'",
    )


def test_duplicate_webhook_names_in_a_room(errors):
    text = '[[rooms]]\nname = "Ops"\n' + hook("CI") + hook("ci")
    assert errors(text, env={"HOOK_TOKEN": TOKEN}) == (
        "config.toml: rooms[0].webhooks[1].name: expected a value not already used by "
        "rooms[0].webhooks[0].name (ignoring case), got 'ci'",
    )


def test_same_webhook_name_in_two_rooms_is_fine(write):
    text = '[[rooms]]\nname = "A"\n' + hook("CI") + '[[rooms]]\nname = "B"\n' + hook("CI")
    assert len(load_config(write(text), env={"HOOK_TOKEN": TOKEN}).rooms) == 2


def test_duplicate_webhook_ids_across_rooms(errors):
    text = (
        '[[rooms]]\nname = "A"\n'
        + hook("CI", extra='id = "abc"')
        + '[[rooms]]\nname = "B"\n'
        + hook("CD", extra='id = "abc"')
    )
    assert errors(text, env={"HOOK_TOKEN": TOKEN}) == (
        "config.toml: rooms[1].webhooks[0].id: expected a value not already used by rooms[0].webhooks[0].id, "
        "got 'abc'",
    )


def test_too_many_webhooks_in_a_room(errors):
    text = "[webhooks]\nmax_per_room = 2\n" + '[[rooms]]\nname = "Ops"\n' + hook("a") + hook("b") + hook("c")
    assert errors(text, env={"HOOK_TOKEN": TOKEN}) == (
        "config.toml: rooms[0].webhooks: expected at most 2 (webhooks.max_per_room), got 3",
    )


def test_every_problem_is_reported(errors):
    text = """
        [server]
        port = "80"
        prot = 80
        [webhooks]
        burst = 0
        [logging]
        level = "loud"
        [[rooms]]
        name = "Ops"
        [[rooms]]
        name = "ops"
        [[rooms.webhooks]]
        name = "CI"
        token_env = "MISSING_TOKEN"
    """
    assert errors(text) == (
        "config.toml: server.port: expected an integer from 1 to 65535, got '80'",
        "config.toml: server.prot: unknown key (did you mean 'port'?)",
        "config.toml: webhooks.burst: expected an integer >= 1, got 0",
        "config.toml: logging.level: expected one of 'debug', 'info', 'warning', 'error', got 'loud'",
        "config.toml: rooms[1].webhooks[0].token_env: environment variable MISSING_TOKEN is not set",
        "config.toml: rooms[1].name: expected a value not already used by rooms[0].name (ignoring case), "
        "got 'ops'",
    )


def test_parse_config_names_its_source():
    with pytest.raises(ConfigError) as info:
        parse_config({"server": {"port": 0}}, env={})
    assert info.value.errors == ("<defaults>: server.port: expected an integer from 1 to 65535, got 0",)
    with pytest.raises(ConfigError, match=r"^/etc/chimebot\.toml: server\.port: "):
        parse_config({"server": {"port": 0}}, source="/etc/chimebot.toml", env={})


# --- files that cannot be read -------------------------------------------------------------------------


def test_toml_syntax_error_names_the_file_and_position(errors):
    (message,) = errors("[server]\nport = = 8080\n")
    assert message.startswith("config.toml: invalid TOML: ")
    assert "line 2" in message and "column" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.errors == (f"{path}: file not found",)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})  # a directory cannot be read as a file
    (message,) = info.value.errors
    assert message.startswith(f"{tmp_path}: cannot read file: ")


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[bootstrap]\naccount_name = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml: not valid UTF-8"):
        load_config(path, env={})


# --- the result is data --------------------------------------------------------------------------------


def test_config_is_frozen(write):
    config = load_config(write(uncommented_example()), env={"CHIMEBOT_CI_WEBHOOK_TOKEN": TOKEN})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rooms = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rooms[0].webhooks[0].token = "x"  # type: ignore[misc]
    assert isinstance(config.rooms, tuple) and isinstance(config.rooms[0].webhooks, tuple)


def test_repr_hides_webhook_tokens(write):
    config = load_config(write(uncommented_example()), env={"CHIMEBOT_CI_WEBHOOK_TOKEN": TOKEN})
    assert "CHIMEBOT_CI_WEBHOOK_TOKEN" in repr(config)  # the variable's name is fine to show
    assert TOKEN not in repr(config)
    assert TOKEN not in str(config.rooms[0].webhooks[0])


def test_example_bots_block_declares_what_it_says_when_uncommented(write):
    text = EXAMPLE.read_text(encoding="utf-8")
    head, block = text.split("#[[bots]]")
    end = block.index("# Calendars watched")
    lines = block[:end].splitlines()
    # Everything but `builtin`, which is the alternative to `endpoint`.
    block = "\n".join(re.sub(r"^#(?=[a-z_]+ = )(?!builtin)", "", line) for line in lines)
    config = load_config(
        write(head + "[[bots]]" + block + "\n" + text.split("#[[bots]]")[1][end:]),
        env={"CHIMEBOT_DEPLOY_BOT_SECRET": "0123456789abcdef-secret"},
    )
    assert config.bots == (
        BotDecl(
            name="deploy",
            display_name="Deploy Bot",
            endpoint="http://127.0.0.1:9000/chime-events",
            secret_env="CHIMEBOT_DEPLOY_BOT_SECRET",
            secret="0123456789abcdef-secret",
            events=("Invite", "Mention", "Remove"),
            rooms=("Deployments",),
        ),
    )
    assert "secret" not in repr(config.bots[0]).replace("secret_env", "")


@pytest.mark.parametrize(
    ("bots", "env", "error"),
    [
        (
            [{"name": "deploy", "endpoint": "https://bots.example.com/x"}],
            {},
            "<test>: bots[0].secret_env: required key is missing (expected the name of the environment "
            "variable holding the secret the bot's requests are signed with)",
        ),
        (
            [{"name": "deploy", "endpoint": "https://bots.example.com/x", "builtin": "echo"}],
            {},
            "<test>: bots[0]: expected exactly one of `endpoint` (an http(s) URL) or `builtin` (a bot class)",
        ),
        (
            [{"name": "echo", "builtin": "echo"}, {"name": "echo", "builtin": "echo"}],
            {},
            "<test>: bots[1].name: expected a value not already used by bots[0].name, got 'echo'",
        ),
        (
            [{"name": "echo", "builtin": "echo", "events": ["Invite", "Join"]}],
            {},
            "<test>: bots[0].events[1]: expected one of 'Invite', 'Mention', 'Remove', 'Message', "
            "'MeetingStarted', got 'Join'",
        ),
        (
            [{"name": "deploy", "endpoint": "https://b.example/x", "secret_env": "S"}],
            {"S": "short"},
            "<test>: bots[0].secret_env: expected environment variable S to hold a secret of at least "
            "16 characters, got 5 characters",
        ),
        (
            [{"name": "echo", "builtin": "echo", "timeout_seconds": 0}],
            {},
            "<test>: bots[0].timeout_seconds: expected a number of seconds from 0 to 60, got 0.0",
        ),
        (
            [{"name": "echo", "builtin": "echo", "rooms": [" "]}],
            {},
            "<test>: bots[0].rooms[0]: expected a room name of 1 to 100 characters, got ' '",
        ),
    ],
)
def test_bot_errors_name_the_key(bots, env, error):
    with pytest.raises(ConfigError) as caught:
        parse_config({"bots": bots}, source="<test>", env=env)
    assert caught.value.errors == (error,)


def _hook(**keys):
    """A [[rooms]] table with one webhook declaring ``keys``."""
    return [{"name": "Ops", "webhooks": [{"name": "CI", "token_env": "T"} | keys]}]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"rooms": _hook(template="jira")},
            "<test>: rooms[0].webhooks[0].template: expected one of github, gitlab, alertmanager, grafana, "
            "sentry, jenkins, generic, got 'jira'",
        ),
        (
            {"rooms": _hook(auth="standard-webhooks")},
            "<test>: rooms[0].webhooks[0].signing_secret_env: required key is missing when auth = "
            "'standard-webhooks' (expected the name of the environment variable holding the whsec_ secret "
            "the sender signs with)",
        ),
        (
            {"rooms": _hook(auth="standard-webhooks", signing_secret_env="S")},
            "<test>: rooms[0].webhooks[0].signing_secret_env: expected environment variable S to hold "
            "a secret like whsec_<Base64 of 24 to 64 bytes>, got 12 characters",
        ),
        (
            {"rooms": _hook(dialect="irc")},
            "<test>: rooms[0].webhooks[0].dialect: expected one of 'auto', 'chime', 'slack', 'teams', "
            "'discord', got 'irc'",
        ),
        (
            {"templates": [{"name": "github", "path": "x.j2"}]},
            "<test>: templates[0].name: expected a name that is not a built-in template's, got 'github'",
        ),
    ],
)
def test_webhook_settings_errors_name_the_key(data, error):
    env = {"T": "a-token-of-sixteen-chars", "S": "not-a-whsec"[:12].ljust(12, "x")}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="<test>", env=env)
    assert error in caught.value.errors


def test_a_template_file_that_does_not_compile_names_the_file_and_line(tmp_path):
    (tmp_path / "broken.md.j2").write_text("ok\n{% if payload.x %}\nno end", encoding="utf-8")
    (tmp_path / "config.toml").write_text(
        '[[templates]]\nname = "broken"\npath = "broken.md.j2"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.toml")
    [error] = caught.value.errors
    assert error.startswith(
        f"{tmp_path / 'config.toml'}: templates[0].path: expected a jinja2 template that compiles: "
    )
    assert f"{tmp_path / 'broken.md.j2'}, line 3" in error
