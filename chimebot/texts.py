"""The texts people get about a meeting: the attendee invitation a host pastes into a calendar invitation,
and the dial-in instructions posted to chat rooms when the meeting starts. Both are jinja2 templates,
built in or replaced by the admin's files (`[meetings] invitation_template`, `instructions_template`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import jinja2

from chimebot.config import Config, ConfigError, DialInNumber

BUILT_IN = Path(__file__).parent / "templates"  # package data, see pyproject's package-data
INVITATION_KEY = "meetings.invitation_template"
INSTRUCTIONS_KEY = "meetings.instructions_template"

# What a template is rendered with once at load, so that a file naming an unknown variable fails at
# start (StrictUndefined) rather than at a meeting's start.
_SAMPLE_ID = "1234567890"
_SAMPLE_HOST: dict[str, Any] = {"host_name": "Ada Lovelace", "host_email": "ada@example.com"}
_SAMPLE_MEETING: dict[str, Any] = {
    "meeting_id": _SAMPLE_ID,
    "topic": "Weekly sync",
    "start": datetime(2026, 1, 5, 9, tzinfo=UTC),
}


def group_digits(meeting_id: str) -> str:
    """A 10-digit meeting id as people read it aloud, "123 456 7890"; anything else unchanged."""
    if len(meeting_id) == 10 and meeting_id.isdigit():
        return f"{meeting_id[:3]} {meeting_id[3:6]} {meeting_id[6:]}"
    return meeting_id


class MeetingTexts:
    """Links, addresses, dial-in strings and the two rendered texts of a meeting id."""

    def __init__(
        self,
        *,
        base_url: str,
        domain: str,
        dial_in: tuple[DialInNumber, ...],
        invitation: jinja2.Template,
        instructions: jinja2.Template,
    ) -> None:
        self._base_url = base_url
        self._domain = domain
        self._dial_in = dial_in
        self._invitation = invitation
        self._instructions = instructions

    def join_url(self, meeting_id: str) -> str:
        """The link that opens the meeting."""
        return f"{self._base_url}/meetings/{meeting_id}"

    def addresses(self, meeting_id: str) -> dict[str, str]:
        """The addresses to invite: ``meet@`` (a new meeting) and ``pin+<id>@`` (this meeting id)."""
        return {"meet": f"meet@{self._domain}", "pin": f"pin+{meeting_id}@{self._domain}"}

    def dial_in(self, meeting_id: str) -> list[dict[str, str]]:
        """The configured numbers, each with its one-tap mobile string ``<number>,,<id>#``."""
        # The number stays as configured: phones dial "+1 206-555-0100,,1234567890#" as written, and
        # the two commas are pauses before the meeting id is keyed in.
        return [
            {"number": n.number, "label": n.label, "one_click": f"{n.number},,{meeting_id}#"}
            for n in self._dial_in
        ]

    def invitation(self, *, meeting_id: str, host_name: str, host_email: str) -> str:
        """The attendee invitation text (plain text)."""
        return self._invitation.render(self._common(meeting_id), host_name=host_name, host_email=host_email)

    def instructions(self, *, meeting_id: str, topic: str, start: datetime, organizer: str | None) -> str:
        """The dial-in instructions posted to chat at the start (Markdown)."""
        return self._instructions.render(
            self._common(meeting_id), **_start_variables(start, topic, organizer)
        )

    def _common(self, meeting_id: str) -> dict[str, Any]:
        return {
            "meeting_id": meeting_id,
            "meeting_id_grouped": group_digits(meeting_id),
            "join_url": self.join_url(meeting_id),
            "addresses": self.addresses(meeting_id),
            "dial_in": self.dial_in(meeting_id),
        }


def _start_variables(start: datetime, topic: str, organizer: str | None) -> dict[str, Any]:
    # A naive time is taken as UTC, which is what the store holds.
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    return {
        "topic": topic,
        "start": start,
        "start_utc": start.strftime("%Y-%m-%d %H:%M UTC"),
        "start_iso": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "organizer": organizer,
    }


def load_texts(config: Config) -> MeetingTexts:
    """Load and check both templates; a bad file raises ConfigError naming the file, key and line."""
    # Plain text and Markdown, never HTML: escaping would put &amp; into invitations and chat messages.
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
    )
    meetings = config.meetings
    invitation = _template(env, config.source, INVITATION_KEY, meetings.invitation_template, "invitation")
    instructions = _template(
        env, config.source, INSTRUCTIONS_KEY, meetings.instructions_template, "instructions"
    )
    texts = MeetingTexts(
        base_url=config.server.base_url,
        domain=config.meeting_domain,
        dial_in=meetings.dial_in,
        invitation=invitation,
        instructions=instructions,
    )
    # The instructions are rendered with and without an organizer: templates often branch on it.
    samples: list[tuple[str, jinja2.Template, Callable[[], str]]] = [
        (INVITATION_KEY, invitation, partial(texts.invitation, meeting_id=_SAMPLE_ID, **_SAMPLE_HOST)),
        (INSTRUCTIONS_KEY, instructions, partial(texts.instructions, organizer="Ada", **_SAMPLE_MEETING)),
        (INSTRUCTIONS_KEY, instructions, partial(texts.instructions, organizer=None, **_SAMPLE_MEETING)),
    ]
    for key, template, render in samples:
        try:
            render()
        except Exception as exc:  # whatever an admin's template raises is a problem of the config
            where = _where(template.filename or "", _template_line(exc, template))
            raise ConfigError(
                [f"{config.source}: {key}: {where}: rendering with sample values failed: {_one_line(exc)}"]
            ) from exc
    return texts


def _template(env: jinja2.Environment, source: str, key: str, path: str, kind: str) -> jinja2.Template:
    """Read and compile one template: the admin's file, or the built-in one when ``path`` is ""."""
    file = Path(path) if path else BUILT_IN / f"{kind}.txt.j2"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{source}: {key}: {file}: file not found"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: {key}: {file}: not valid UTF-8 at byte {exc.start}"]) from None
    except OSError as exc:
        raise ConfigError([f"{source}: {key}: {file}: cannot read file: {exc.strerror or exc}"]) from None
    try:
        # Compiled with the file name so that render errors carry the template's line numbers.
        code = env.compile(text, filename=str(file))
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            [f"{source}: {key}: {_where(str(file), exc.lineno)}: {_one_line(exc.message)}"]
        ) from None
    return env.template_class.from_code(env, code, env.make_globals(None))


def _template_line(exc: BaseException, template: jinja2.Template) -> int | None:
    """The template line an exception was raised at: jinja2 rewrites tracebacks to point into it."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == template.filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _where(path: str, line: int | None) -> str:
    return f"{path} line {line}" if line else path


def _one_line(message: object) -> str:
    return " ".join(str(message).split())
