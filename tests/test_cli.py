"""The command-line contract, run as a user would: real processes, a real server, real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest


def chimebot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a chimebot command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "chimebot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    """Parse a `--json` command's stdout, which must be exactly one JSON document."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, str, subprocess.Popen[str]]]:
    """`chimebot serve` with no config in an empty directory: (base URL, cwd, output so far, process)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chimebot", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "/signin/" in line:
                break
        # The link is printed while starting up; the port opens right after.
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", tmp_path, "".join(lines), proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def test_serve_with_no_config_bootstraps_and_a_cli_webhook_reaches_a_stream_client(
    server: tuple[str, Path, str, subprocess.Popen[str]],
) -> None:
    base, cwd, output, proc = server
    assert (cwd / "chimebot-data" / "chimebot.db").exists()
    link = re.search(r"(http://\S+/signin/\S+)", output)
    assert link, output
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.post(link.group(1), headers={"Accept": "application/json"}) as resp:
            assert resp.status == 200
            signed_in = await resp.json()
        assert signed_in["user"]["email"] == "admin@localhost"
        async with http.post(link.group(1)) as resp:
            assert resp.status == 404  # one-time

        room = as_json(chimebot("admin", "create-room", "Deployments", "--json", cwd=cwd))
        assert set(room) == {"id", "name"} and room["name"] == "Deployments"
        hook = as_json(chimebot("webhook", "create", "Deployments", "CI", "--json", cwd=cwd))
        assert {"id", "token", "url", "room_id"} <= set(hook) and hook["room_id"] == room["id"]
        token = as_json(chimebot("token", "create", "admin@localhost", "--json", cwd=cwd))["token"]

        async with http.ws_connect(f"{base.replace('http', 'ws')}/api/v1/stream?token={token}") as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "stream.ready"
            url = f"{base}/incomingwebhooks/{hook['id']}?token={hook['token']}"
            async with http.post(url, data='{"Content": "deployed v42"}') as resp:
                assert resp.status == 200
                posted = await resp.json()
            frame = json.loads((await ws.receive(timeout=5)).data)
        assert frame["type"] == "message.created"
        assert frame["data"]["id"] == posted["MessageId"]
        assert frame["data"]["sender"]["name"] == "CI (Webhook)"

        listed = as_json(chimebot("webhook", "list", room["id"], "--json", cwd=cwd))
        assert [h["id"] for h in listed] == [hook["id"]]
        new = as_json(chimebot("webhook", "regenerate", hook["id"], "--json", cwd=cwd))
        assert new["room_id"] == room["id"] and new["id"] != hook["id"]
        async with http.post(url, data='{"Content": "old url"}') as resp:
            assert resp.status == 404
        assert chimebot("webhook", "delete", new["id"], cwd=cwd).returncode == 0
        assert as_json(chimebot("webhook", "list", "Deployments", "--json", cwd=cwd)) == []

        # Stopping the server tells connected stream clients to come back, at once.
        async with http.ws_connect(f"{base.replace('http', 'ws')}/api/v1/stream?token={token}") as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "stream.ready"
            proc.terminate()
            closing = await ws.receive(timeout=10)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.GOING_AWAY)
        assert proc.wait(timeout=15) == 0


def test_errors_go_to_stderr_with_a_nonzero_status(tmp_path: Path) -> None:
    result = chimebot("webhook", "create", "no-such-room", "CI", "--json", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "no-such-room" in result.stderr
    result = chimebot("token", "create", "nobody@example.com", "--json", cwd=tmp_path)
    assert result.returncode != 0 and result.stdout == "" and "nobody@example.com" in result.stderr


def test_flags_work_before_and_after_the_command_and_data_dir_is_honoured(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    first = as_json(chimebot("--data-dir", str(data), "admin", "create-room", "A", "--json", cwd=tmp_path))
    second = as_json(chimebot("admin", "create-room", "B", "--data-dir", str(data), "--json", cwd=tmp_path))
    assert first["id"] != second["id"]
    assert (data / "chimebot.db").exists() and not (tmp_path / "chimebot-data").exists()
    again = chimebot("admin", "create-room", "A", "--data-dir", str(data), "--json", cwd=tmp_path)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_check_config_exits_0_or_1_with_the_problems(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[server]\nport = 9000\n[webhooks]\nrate_per_second = 2\n")
    ok = chimebot("check-config", str(good), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "eighty"\n[webhooks]\nrate_per_secnd = 2\n')
    result = chimebot("check-config", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{bad}: server.port: expected" in result.stderr
    assert "rate_per_secnd: unknown key (did you mean 'rate_per_second'?)" in result.stderr


def test_the_example_config_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    result = chimebot("check-config", str(example), cwd=tmp_path, env={"CHIMEBOT_CI_WEBHOOK_TOKEN": "x" * 32})
    assert result.returncode == 0, result.stderr


def test_migrate_on_postgresql(pg_database: str, tmp_path: Path) -> None:
    config = tmp_path / "pg.toml"
    config.write_text(f'[database]\nurl = "{pg_database}"\n')
    result = chimebot("migrate", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    room = as_json(chimebot("admin", "create-room", "on-pg", "--config", str(config), "--json", cwd=tmp_path))
    assert room["name"] == "on-pg"
    assert not (tmp_path / "chimebot-data" / "chimebot.db").exists()


def test_a_port_in_use_and_an_unreachable_database_are_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = chimebot("serve", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is in use" in result.stderr and "Traceback" not in result.stderr
    config = tmp_path / "pg.toml"
    config.write_text('[database]\nurl = "postgresql://postgres@127.0.0.1:1/nowhere"\n')
    for args in (["serve", "--port", str(free_port())], ["token", "create", "a@example.com", "--json"]):
        result = chimebot("--config", str(config), *args, cwd=tmp_path)
        assert result.returncode == 1, args
        assert "check [database] url" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_account_administration_commands(tmp_path: Path) -> None:
    def admin(*args: str) -> Any:
        return as_json(chimebot("admin", *args, "--as", "boss@corp.example", "--json", cwd=tmp_path))

    made = as_json(
        chimebot(
            "admin",
            "create-account",
            "Corp",
            "--admin",
            "boss@corp.example",
            "--type",
            "enterprise",
            "--json",
            cwd=tmp_path,
        )
    )
    assert made["account"]["type"] == "enterprise" and "/signin/" in made["signin_link"]
    assert admin("claim-domain", "Corp.Example")["domains"] == ["corp.example"]
    changed = admin("account", "--time-zone", "Europe/Berlin", "--dial-out", "off")
    assert (changed["time_zone"], changed["settings"]) == (
        "Europe/Berlin",
        {"remote_control": True, "dial_out": False},
    )
    [invited] = admin("invite", "ann@corp.example")
    assert (invited["invitation_status"], invited["registration_status"]) == ("pending", "unregistered")
    assert [u["primary_email"] for u in admin("users", "--invitation-status", "pending")] == [
        "ann@corp.example"
    ]
    assert admin("suspend", "ann@corp.example")["registration_status"] == "suspended"
    assert admin("unsuspend", "ann@corp.example")["registration_status"] == "unregistered"  # never registered
    pin = admin("user", "ann@corp.example")["personal_pin"]
    assert admin("reset-pin", "ann@corp.example")["personal_pin"] != pin
    assert admin("logout", "ann@corp.example") == {"revoked_tokens": 0}
    assert admin("license", "ann@corp.example", "basic")["license"] == "basic"
    report = chimebot("admin", "usage", "--as", "boss@corp.example", "--csv", cwd=tmp_path)
    assert report.returncode == 0 and report.stdout.startswith("user_id,email,license,")

    # Someone who is not an administrator cannot act as one; the refusal is in the audit log too.
    refused = chimebot("admin", "suspend", "boss@corp.example", "--as", "ann@corp.example", cwd=tmp_path)
    assert refused.returncode == 1 and "not an active administrator" in refused.stderr
    entries = admin("audit", "--source", "cli")
    assert [(e["action"], e["outcome"]) for e in entries][:3] == [
        ("admin.license", "ok"),
        ("admin.logout", "ok"),
        ("admin.reset-pin", "ok"),
    ]
    everything = as_json(
        chimebot("admin", "audit", "--all-accounts", "--outcome", "refused", "--json", cwd=tmp_path)
    )
    assert [(e["actor"], e["action"], e["target"]) for e in everything] == [
        ("cli", "admin.suspend", "boss@corp.example")
    ]


def test_sighup_applies_new_bots_and_the_bot_commands_show_and_place_them(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "chimebot.toml"
    config.write_text('[meetings]\naddress_domain = "example.com"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "chimebot", "serve", "--config", str(config), "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        assert as_json(chimebot("--config", str(config), "bot", "list", "--json", cwd=tmp_path)) == []
        config.write_text(
            '[meetings]\naddress_domain = "example.com"\n'
            '[[bots]]\nname = "echo"\nbuiltin = "echo"\nevents = ["Invite", "Mention"]\n'
        )
        proc.send_signal(signal.SIGHUP)
        while True:
            bots = as_json(chimebot("--config", str(config), "bot", "list", "--json", cwd=tmp_path))
            if bots:
                break
            assert time.monotonic() < deadline + 30, "SIGHUP did not apply the new bot"
            time.sleep(0.1)
        (bot,) = bots
        assert (bot["name"], bot["address"], bot["status"]) == ("echo", "echo-chimebot@example.com", "ready")
        as_json(chimebot("--config", str(config), "admin", "create-room", "Lobby", "--json", cwd=tmp_path))
        member = as_json(
            chimebot("--config", str(config), "bot", "add", "Lobby", "echo", "--json", cwd=tmp_path)
        )
        assert (member["user_id"], member["kind"]) == ("bot:echo", "bot")
        # The running server routes the join written by the command and the bot greets the room.
        while not as_json(
            chimebot(
                "--config",
                str(config),
                "bot",
                "deliveries",
                "echo",
                "--status",
                "delivered",
                "--json",
                cwd=tmp_path,
            )
        ):
            assert time.monotonic() < deadline + 60, "the Invite was not delivered"
            time.sleep(0.2)
        assert as_json(
            chimebot("--config", str(config), "bot", "replay", "echo", "--json", cwd=tmp_path)
        ) == {"replayed": []}
        removed = chimebot("--config", str(config), "bot", "remove", "Lobby", "echo", cwd=tmp_path)
        assert removed.returncode == 0, removed.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_webhook_commands_set_show_and_list_the_settings(tmp_path: Path) -> None:
    def webhook(*args: str) -> Any:
        return as_json(chimebot("webhook", *args, "--json", cwd=tmp_path))

    chimebot("admin", "create-room", "Alerts", cwd=tmp_path)
    assert webhook("templates")[:2] == ["github", "gitlab"]
    made = webhook("create", "Alerts", "Grafana", "--template", "grafana", "--unlocked")
    assert (made["template"], made["locked"], made["auth"]) == ("grafana", False, "token")
    assert made["hooks_url"].endswith(f"/hooks/{made['token']}")
    changed = webhook(
        "set", made["id"], "--no-template", "--dialect", "discord", "--auth", "standard-webhooks"
    )
    assert (changed["template"], changed["dialect"], changed["auth"]) == (
        None,
        "discord",
        "standard-webhooks",
    )
    assert changed["signing_secret"].startswith("whsec_")  # generated, and shown this once
    shown = webhook("show", made["id"])
    assert "signing_secret" not in shown and shown["hooks_url"].endswith(f"/hooks/{made['id']}")
    assert [h["name"] for h in webhook("list", "Alerts")] == ["Grafana"]
    refused = chimebot("webhook", "set", made["id"], "--template", "nope", cwd=tmp_path)
    assert refused.returncode == 1 and "no template named 'nope'" in refused.stderr
