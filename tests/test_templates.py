"""The built-in webhook templates against real payloads: one test per fixture, as Zulip tests its own.

The cases and their files are described in ``tests/template_cases.py``; where each payload came from
is in ``tests/fixtures/README.md``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.template_cases import FIXTURES, PRODUCERS, body_of, expected_of, headers_of, template_cases
from webhooks import transforms

BODY_LIMIT = 60 * 1024  # fixtures stay well under the server's 64 KB body limit


def _json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def _fixture(producer: str, case: str) -> Any:
    return _json(FIXTURES / producer / f"{case}.json")


@pytest.mark.parametrize(("producer", "case"), template_cases())
def test_template_writes_the_expected_message(producer: str, case: str) -> None:
    payload = json.loads(body_of(producer, case))
    message = transforms.load(producer).render(payload, headers_of(producer, case))
    assert message == (expected_of(producer, case) or None)


def test_every_producer_has_real_payloads_of_several_kinds() -> None:
    counts = {p: len(list((FIXTURES / p).glob("*.expected.md"))) for p in PRODUCERS}
    assert all(n >= 3 for n in counts.values()), counts
    assert counts["github"] >= 6, counts
    dropped = [p for p in FIXTURES.glob("*/*.expected.md") if p.stat().st_size == 0]
    assert dropped, "at least one fixture shows an event being dropped"


@pytest.mark.parametrize("producer", PRODUCERS)
def test_fixture_files_are_complete_and_small(producer: str) -> None:
    folder = FIXTURES / producer
    for body in folder.glob("*.json"):
        if body.name.endswith(".headers.json"):
            assert body.with_name(body.name.split(".")[0] + ".json").exists(), body.name
            continue
        assert body.with_name(body.stem + ".expected.md").exists(), f"{body.name} has no expected message"
        assert body.stat().st_size < BODY_LIMIT, body.name
        _json(body)


@pytest.mark.parametrize("producer", PRODUCERS)
def test_template_starts_with_a_comment_saying_what_it_handles(producer: str) -> None:
    assert transforms.builtin_source(producer).startswith("{#")


def test_jenkins_posts_the_phase_named_in_the_query_instead_of_finalized() -> None:
    """An endpoint set to "Job Completed" only adds ?phase=completed to the webhook URL."""
    jenkins = transforms.load("jenkins")
    payload = _fixture("jenkins", "completed_aborted")
    assert jenkins.render(payload, {}) is None
    assert jenkins.render(payload, {}, {"phase": "completed"}) == (
        "**[MF Develop Pipeline #29](http://jenkins.yourhost.com/job/MF%20Develop%20Pipeline/29/)"
        " was aborted**\n"
        "Branch `origin/develop` · Commit `4ee10d6`"
    )
    assert jenkins.render(_fixture("jenkins", "finalized_success"), {}, {"phase": "completed"}) is None


# Payloads built from the real ones, made as large as a busy producer makes them: every built-in must
# bound what it writes instead of failing on the output limit.


def _big_github_push() -> tuple[Any, dict[str, str]]:
    payload = _fixture("github", "push_1_commit")
    commit = payload["commits"][0]
    payload["commits"] = [dict(commit, message="x" * 500 + "\n\nbody") for _ in range(20)]
    return payload, {"X-GitHub-Event": "push"}


def _long_github_issue() -> tuple[Any, dict[str, str]]:
    payload = _fixture("github", "issues_opened")
    payload["issue"]["title"] = "t" * 256
    payload["issue"]["body"] = "word " * 20_000
    return payload, {"X-GitHub-Event": "issues"}


def _big_gitlab_push() -> tuple[Any, dict[str, str]]:
    payload = _fixture("gitlab", "push")
    payload["commits"] = payload["commits"] * 10
    payload["total_commits_count"] = 250
    return payload, {"X-Gitlab-Event": "Push Hook"}


def _alert_storm(producer: str, case: str) -> tuple[Any, dict[str, str]]:
    payload = _fixture(producer, case)
    alerts = []
    for i in range(60):
        alert = copy.deepcopy(payload["alerts"][i % len(payload["alerts"])])
        extra = {f"label{j}": f"value-{i}-{j}-" + "v" * 30 for j in range(30)}
        alert["labels"] = dict(alert["labels"], **extra)
        alert["annotations"] = dict(alert.get("annotations", {}), description="d " * 2000, summary="s " * 500)
        alerts.append(alert)
    payload["alerts"] = alerts
    payload["commonLabels"] = {f"common{j}": "c" * 50 for j in range(40)}
    return payload, {}


def _huge_generic() -> tuple[Any, dict[str, str]]:
    return {"items": [{"n": i, "name": "<item & more>"} for i in range(3000)]}, {}


def _long_generic_text() -> tuple[Any, dict[str, str]]:
    return {"text": "word " * 5000}, {}


def _long_sentry_event() -> tuple[Any, dict[str, str]]:
    payload = _fixture("sentry", "event_alert")
    payload["data"]["event"]["title"] = "T" * 10_000
    payload["data"]["event"]["culprit"] = "c" * 10_000
    payload["data"]["triggered_rule"] = "r" * 10_000
    return payload, {"Sentry-Hook-Resource": "event_alert"}


def _long_jenkins_name() -> tuple[Any, dict[str, str]]:
    payload = _fixture("jenkins", "finalized_success")
    payload["name"] = "n" * 10_000
    return payload, {}


@pytest.mark.parametrize(
    ("producer", "make", "marker"),
    [
        ("github", _big_github_push, "… and 10 more"),
        ("github", _long_github_issue, "…"),
        ("gitlab", _big_gitlab_push, "… and 240 more"),
        ("alertmanager", lambda: _alert_storm("alertmanager", "firing_two_alerts"), "… and 50 more"),
        ("grafana", lambda: _alert_storm("grafana", "unified_mixed"), "… and 50 more"),
        ("generic", _huge_generic, "_Cut to fit"),
        ("generic", _long_generic_text, "…"),
        ("sentry", _long_sentry_event, "…"),
        ("jenkins", _long_jenkins_name, "…"),
    ],
)
def test_template_bounds_its_output(producer: str, make: Any, marker: str) -> None:
    payload, headers = make()
    message = transforms.load(producer).render(payload, headers)
    assert message is not None
    assert len(message) <= transforms.MAX_CHARS
    assert marker in message
