"""The scheduling assistant and the meeting texts (SPEC section 5): meeting ids kept as the host's, the
addresses to invite, dial-in strings, and the invitation and instructions templates admins can replace."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from chimebot.app import app_for
from chimebot.clock import FakeClock
from chimebot.config import Config, ConfigError
from chimebot.services import build_services
from chimebot.store import schema
from chimebot.texts import BUILT_IN, load_texts
from tests.conftest import Harness, make_config

PUBLIC_URL = "https://chat.example.com"
DOMAIN = "meet.example.com"
DIAL_IN = [
    {"number": "+1 206-555-0100", "label": "United States (toll)"},
    {"number": "+44 (20) 7946-0000"},  # no label; the number's punctuation is kept as written
]
MEETINGS = {"address_domain": DOMAIN, "dial_in": DIAL_IN}
CONFIGURED = pytest.mark.parametrize(
    "app_config", [{"server": {"public_url": PUBLIC_URL}, "meetings": MEETINGS}], indirect=True
)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # FakeClock's start

# A replacement that uses every variable README.md's "Meeting texts" lists.
INVITATION = """\
{{ host_name }} <{{ host_email }}> invites you: {{ join_url }}
id {{ meeting_id }} ({{ meeting_id_grouped }}), via {{ addresses.meet }} / {{ addresses.pin }}
{% for d in dial_in %}{{ d.number }}|{{ d.label }}|{{ d.one_click }}
{% endfor %}"""
INSTRUCTIONS = """\
{{ topic }} at {{ start_utc }} = {{ start_iso }} = {{ start.strftime('%H:%M') }}
{{ organizer or 'nobody' }}: {{ join_url }} {{ meeting_id }} {{ meeting_id_grouped }} {{ addresses.pin }}
{% for d in dial_in %}{{ d.one_click }}
{% endfor %}"""


async def get(h: Harness, token: str, query: str = "") -> tuple[int, Any]:
    """GET the assistant as the token's owner."""
    resp = await h.client.get(f"/api/v1/meetings/assistant{query}", headers=h.auth(token))
    return resp.status, await resp.json()


async def meeting_rows(h: Harness) -> list[dict[str, Any]]:
    """Every row of the meetings table."""
    async with h.services.store.read() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(schema.meetings))).mappings()]


def template(tmp_path: Path, name: str, text: str) -> str:
    """Write a template file and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def config_with(tmp_path: Path, **meetings: Any) -> Config:
    """A config whose [meetings] section has the configured numbers and domain plus ``meetings``."""
    return make_config(
        f"sqlite:///{tmp_path / 'chimebot.db'}",
        server={"public_url": PUBLIC_URL},
        meetings=MEETINGS | meetings,
    )


# -- the assistant over HTTP -----------------------------------------------------------------------------


@CONFIGURED
async def test_each_call_gives_a_new_meeting_id_that_stays_the_hosts(app: Harness) -> None:
    h = app
    host, token = await h.user("ada@example.com")
    code, first = await get(h, token)
    assert code == 200, first
    code, second = await get(h, token, "?personal=false")
    assert code == 200, second
    ids = [first["meeting_id"], second["meeting_id"]]
    assert ids[0] != ids[1]
    for meeting_id in ids:
        assert len(meeting_id) == 10 and meeting_id.isdigit() and meeting_id[0] != "0"
        assert await h.services.meetings.owner_of(meeting_id) == host.id

    meeting_id = first["meeting_id"]
    assert first == {
        "meeting_id": meeting_id,
        "personal": False,
        "join_url": f"{PUBLIC_URL}/meetings/{meeting_id}",
        "addresses": {"meet": f"meet@{DOMAIN}", "pin": f"pin+{meeting_id}@{DOMAIN}"},
        "dial_in": [
            {
                "number": "+1 206-555-0100",
                "label": "United States (toll)",
                "one_click": f"+1 206-555-0100,,{meeting_id}#",
            },
            {"number": "+44 (20) 7946-0000", "label": "", "one_click": f"+44 (20) 7946-0000,,{meeting_id}#"},
        ],
        "invitation": first["invitation"],
    }
    invitation = first["invitation"]
    grouped = f"{meeting_id[:3]} {meeting_id[3:6]} {meeting_id[6:]}"
    for text in (
        f"Join the meeting: {PUBLIC_URL}/meetings/{meeting_id}\n",
        f"Meeting ID: {grouped}\n",
        "  +1 206-555-0100  United States (toll)\n",
        "  +44 (20) 7946-0000\n",
        f"  +1 206-555-0100,,{meeting_id}#  United States (toll)\n",
        f"  +44 (20) 7946-0000,,{meeting_id}#\n",
        "ada@example.com",
    ):
        assert text in invitation, (text, invitation)

    # Each generated id is a meeting row of the host's, so that pin+<id>@ invitations find their host.
    rows = sorted(await meeting_rows(h), key=lambda r: ids.index(r["id"]))
    assert [(r["id"], r["host_id"], r["account_id"], r["type"], r["topic"]) for r in rows] == [
        (i, host.id, host.account_id, "scheduled", "Scheduled meeting") for i in ids
    ]
    assert {r["start_at"] for r in rows} == {T0}


@CONFIGURED
async def test_personal_gives_the_hosts_personal_meeting_id(app: Harness) -> None:
    h = app
    host, token = await h.user("ada@example.com")
    resp = await h.client.get("/api/v1/me", headers=h.auth(token))
    personal_id = (await resp.json())["personal_meeting_id"]

    code, body = await get(h, token, "?personal=true")
    assert code == 200, body
    assert (body["meeting_id"], body["personal"]) == (personal_id, True)
    assert body["addresses"] == {"meet": f"meet@{DOMAIN}", "pin": f"pin+{personal_id}@{DOMAIN}"}
    assert body["join_url"] == f"{PUBLIC_URL}/meetings/{personal_id}"
    assert body["dial_in"][0]["one_click"] == f"+1 206-555-0100,,{personal_id}#"
    assert f"{personal_id[:3]} {personal_id[3:6]} {personal_id[6:]}" in body["invitation"]
    assert await meeting_rows(h) == []  # the personal id needs no row

    assert await h.services.meetings.owner_of(personal_id) == host.id
    assert await h.services.meetings.owner_of("1000000000") is None
    assert await h.services.meetings.owner_of("") is None


async def test_the_answer_is_not_cached_and_personal_must_be_true_or_false(app: Harness) -> None:
    h = app
    resp = await h.client.get("/api/v1/meetings/assistant", headers=h.auth())
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    for bad in ("yes", "1", "True"):
        code, body = await get(h, h.token, f"?personal={bad}")
        assert (code, body["error"]) == (400, "invalid"), body
        assert body["message"] == f"`personal` must be true or false, got {bad!r}"
    resp = await h.client.get("/api/v1/meetings/assistant")
    assert resp.status == 401


async def test_basic_users_are_refused(app: Harness) -> None:
    h = app
    basic, token = await h.user("basic@example.com")
    resp = await h.client.patch(f"/api/v1/users/{basic.id}", json={"license": "basic"}, headers=h.auth())
    assert resp.status == 200, await resp.text()
    for query in ("", "?personal=true"):
        code, body = await get(h, token, query)
        assert (code, body["error"]) == (403, "pro_required"), body
        assert "scheduling meetings" in body["message"].lower()
    assert await meeting_rows(h) == []


async def test_without_address_domain_the_addresses_use_the_public_urls_host(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = make_config(f"sqlite:///{tmp_path / 'chimebot.db'}", server={"public_url": PUBLIC_URL})
    services = build_services(config, tmp_path, FakeClock())
    client = await aiohttp_client(app_for(services))
    token = await services.signin.create_token(await services.accounts.operator(), "test")
    resp = await client.get("/api/v1/meetings/assistant", headers={"Authorization": f"Bearer {token}"})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["addresses"]["meet"] == "meet@chat.example.com"
    assert body["dial_in"] == []
    assert "phone" not in body["invitation"]  # no numbers configured: no dial-in paragraph


# -- the texts -------------------------------------------------------------------------------------------


def test_the_built_in_instructions_carry_everything_needed_to_join(tmp_path: Path) -> None:
    texts = load_texts(config_with(tmp_path))
    text = texts.instructions(meeting_id="7263519804", topic="Weekly sync", start=T0, organizer="Ada")
    assert text == (
        "**Weekly sync** starts at 2026-01-05 09:00 UTC (organizer: Ada).\n"
        "\n"
        f"- Join: {PUBLIC_URL}/meetings/7263519804\n"
        "- Meeting ID: 726 351 9804\n"
        "- Dial United States (toll): +1 206-555-0100, one tap `+1 206-555-0100,,7263519804#`\n"
        "- Dial +44 (20) 7946-0000, one tap `+44 (20) 7946-0000,,7263519804#`\n"
    )
    # Times are shown in UTC whatever zone they come in; a naive time is UTC already.
    berlin = datetime(2026, 1, 5, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    for start in (berlin, T0.replace(tzinfo=None)):
        text = texts.instructions(meeting_id="7263519804", topic="Weekly sync", start=start, organizer=None)
        assert text.startswith("**Weekly sync** starts at 2026-01-05 09:00 UTC.\n"), text


async def test_replaced_templates_are_used(aiohttp_client: Any, tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        invitation_template=template(tmp_path, "invitation.j2", INVITATION),
        instructions_template=template(tmp_path, "instructions.j2", INSTRUCTIONS),
    )
    services = build_services(config, tmp_path, FakeClock())
    client = await aiohttp_client(app_for(services))
    admin = await services.accounts.operator()
    token = await services.signin.create_token(admin, "test")
    resp = await client.get(
        "/api/v1/meetings/assistant?personal=true", headers={"Authorization": f"Bearer {token}"}
    )
    body = await resp.json()
    assert resp.status == 200, body
    i = body["meeting_id"]
    grouped = f"{i[:3]} {i[3:6]} {i[6:]}"
    assert body["invitation"] == (
        f"{admin.display_name} <{admin.email}> invites you: {PUBLIC_URL}/meetings/{i}\n"
        f"id {i} ({grouped}), via meet@{DOMAIN} / pin+{i}@{DOMAIN}\n"
        f"+1 206-555-0100|United States (toll)|+1 206-555-0100,,{i}#\n"
        f"+44 (20) 7946-0000||+44 (20) 7946-0000,,{i}#\n"
    )
    assert services.texts.instructions(meeting_id=i, topic="Sync", start=T0, organizer=None) == (
        "Sync at 2026-01-05 09:00 UTC = 2026-01-05T09:00:00Z = 09:00\n"
        f"nobody: {PUBLIC_URL}/meetings/{i} {i} {grouped} pin+{i}@{DOMAIN}\n"
        f"+1 206-555-0100,,{i}#\n"
        f"+44 (20) 7946-0000,,{i}#\n"
    )


BROKEN = [
    pytest.param("a\nb\n{{ join_url }\n", "line 3: unexpected '}'", id="syntax"),
    pytest.param(
        "{% for d in dial_in %}\n{{ d.number }}\n", "line 2: Unexpected end of template", id="unclosed"
    ),
    pytest.param(
        "{{ join_url }}\n{{ host_nmae }}\n",
        "line 2: rendering with sample values failed: 'host_nmae' is undefined",
        id="unknown-variable",
    ),
    pytest.param(
        "{{ dial_in[5].number }}\n", "line 1: rendering with sample values failed: ", id="fails-on-the-sample"
    ),
]


@pytest.mark.parametrize(("text", "problem"), BROKEN)
def test_a_broken_invitation_template_names_the_file_the_key_and_the_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = template(tmp_path, "bad.j2", text)
    with pytest.raises(ConfigError) as caught:
        load_texts(config_with(tmp_path, invitation_template=path))
    assert str(caught.value).startswith(f"<test>: meetings.invitation_template: {path} {problem}"), (
        caught.value
    )
    assert "\n" not in str(caught.value)


def test_instructions_are_checked_with_and_without_an_organizer(tmp_path: Path) -> None:
    # Fine while an organizer is known, fails on calendar invitations that have none.
    path = template(tmp_path, "instr.j2", "{{ topic }}\n{{ organizer.upper() }}\n")
    with pytest.raises(ConfigError) as caught:
        load_texts(config_with(tmp_path, instructions_template=path))
    message = str(caught.value)
    assert message.startswith(f"<test>: meetings.instructions_template: {path} line 2: rendering"), message


def test_a_template_file_that_cannot_be_read(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.j2")
    not_utf8 = tmp_path / "latin1.j2"
    not_utf8.write_bytes("Caf\xe9 {{ join_url }}\n".encode("latin-1"))
    cases = [
        (missing, f"{missing}: file not found"),
        (str(not_utf8), f"{not_utf8}: not valid UTF-8 at byte 3"),
        (str(tmp_path), f"{tmp_path}: cannot read file: "),
    ]
    for path, problem in cases:
        with pytest.raises(ConfigError) as caught:
            load_texts(config_with(tmp_path, instructions_template=path))
        assert str(caught.value).startswith(f"<test>: meetings.instructions_template: {problem}"), (
            caught.value
        )


def test_the_built_in_templates_are_package_data() -> None:
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert '"templates/*.j2"' in pyproject
    assert sorted(p.name for p in BUILT_IN.glob("*.j2")) == ["instructions.txt.j2", "invitation.txt.j2"]


def test_check_config_and_serve_report_a_broken_template(tmp_path: Path) -> None:
    bad = template(tmp_path, "bad.j2", "a\nb\n{{ join_url }\n")
    config = tmp_path / "chimebot.toml"
    config.write_text(f'[meetings]\ninvitation_template = "{bad}"\n', encoding="utf-8")
    expected = f"{config}: meetings.invitation_template: {bad} line 3: unexpected '}}'"

    def chimebot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chimebot", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )

    result = chimebot("check-config", str(config))
    assert (result.returncode, result.stderr.strip()) == (1, expected)
    # The server refuses to start rather than fail at the first meeting.
    result = chimebot("serve", "--config", str(config), "--port", "1")
    assert (result.returncode, result.stderr.strip()) == (1, expected)
    (tmp_path / "bad.j2").write_text("{{ join_url }}\n", encoding="utf-8")
    result = chimebot("check-config", str(config))
    assert (result.returncode, result.stdout.strip()) == (0, f"{config}: ok"), result.stderr
