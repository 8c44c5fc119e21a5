"""The template sandbox: a template reads the payload and nothing else, and cannot run forever,
build huge values or write more than its limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from webhooks.transforms import BUILTIN, TemplateError, Transform, load

SECRET_FILE_TEXT = "root:x:0:0"


def render(
    source: str, payload: object = None, headers: dict[str, str] | None = None, **limits: float
) -> str | None:
    """Render a template source on a payload with the given limits."""
    return Transform(source, name="test", **limits).render(payload or {}, headers or {})  # type: ignore[arg-type]


def test_a_template_reads_the_payload_headers_and_query() -> None:
    source = "{{ payload.repo.name }} by {{ headers['x-github-event'] }} {{ query.phase }} {{ payload.a.b }}!"
    transform = Transform(source, name="t")
    text = transform.render({"repo": {"name": "chimebot"}}, {"X-GitHub-Event": "push"}, {"phase": "done"})
    assert text == "chimebot by push done !"


def test_writing_nothing_drops_the_event() -> None:
    assert render("{% if payload.action == 'opened' %}opened{% endif %}  \n", {"action": "edited"}) is None


@pytest.mark.parametrize(
    "source",
    [
        "{% include '/etc/passwd' %}",
        "{% import '/etc/passwd' as p %}",
        "{% extends '/etc/passwd' %}",
        "{{ open('/etc/passwd').read() }}",
    ],
)
def test_a_template_cannot_read_files(source: str) -> None:
    try:
        text = render(source)
    except TemplateError:
        return
    assert text is None or SECRET_FILE_TEXT not in text


@pytest.mark.parametrize(
    "source",
    [
        "{{ payload.__class__.__mro__[1].__subclasses__() }}",
        "{{ payload.items.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.environ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ ''.__class__.__base__.__subclasses__() }}",
        "{{ range.__self__ }}",
        "{{ payload|attr('__class__') }}",
        "{{ self._TemplateReference__context }}",
    ],
)
def test_a_template_cannot_reach_attributes_outside_the_payload(source: str) -> None:
    try:
        text = render(source, {"x": 1})
    except TemplateError as exc:
        assert "unsafe" in str(exc) or "undefined" in str(exc).lower() or "SecurityError" in str(exc)
        return
    assert text is None or not any(word in text for word in ("class", "module", "function", "environ"))


def test_a_template_cannot_change_the_payload() -> None:
    payload: dict[str, list[int]] = {"items": [1]}
    with pytest.raises(TemplateError, match="unsafe"):
        render("{{ payload['items'].append(2) }}", payload)
    assert payload == {"items": [1]}


@pytest.mark.parametrize(
    "source",
    [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% set r = range(100000) %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
        "{% set r = range(100000) %}{% for a in r %}{% for b in r %}{{ '' }}{% endfor %}{% endfor %}",
        "{% for a in payload.many %}{% for b in payload.many %}{% for c in payload.many %}{% endfor %}"
        "{% endfor %}{% endfor %}",
    ],
)
def test_a_template_cannot_loop_forever(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match="time limit"):
        render(source, {"many": list(range(5000))}, time_limit=0.2)
    assert time.monotonic() - started < 2.0


def test_recursion_is_stopped() -> None:
    with pytest.raises(TemplateError, match=r"recursed|time limit"):
        render("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}")


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 100000000 }}",
        "{{ [0] * 100000000 }}",
        "{{ 10 ** 100000 }}",
        "{{ 99 ** 99 ** 99 }}",
        "{{ '%099999999d' % 1 }}",
        "{{ '%.99999999f' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ 'a'.center(999999999) }}",
        "{{ 'a'.ljust(999999999) }}",
        "{{ 'a'|center(999999999) }}",
        "{{ 'a\nb'|indent(999999999) }}",
        "{{ '%099999999d'|format(1) }}",
        "{{ payload.s.replace('a', payload.s) }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{{ lipsum(1000000) }}",
    ],
)
def test_a_template_cannot_build_huge_values(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError):
        render(source, {"s": "a" * 60_000})
    assert time.monotonic() - started < 2.0


def test_output_over_the_limit_is_an_error_not_a_long_message() -> None:
    with pytest.raises(TemplateError, match="more than 100 characters"):
        render("{% for i in range(1000) %}line {{ i }}\n{% endfor %}", max_chars=100)
    assert render("{{ 'x' * 100 }}", max_chars=100) == "x" * 100


def test_errors_name_the_problem() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render("{{ 1 / 0 }}")
    with pytest.raises(TemplateError, match="line 2"):
        Transform("ok\n{% if %}", name="broken")


def test_every_builtin_template_compiles_and_template_files_load(tmp_path: Path) -> None:
    for name in BUILTIN:
        assert load(name).name == name
    path = tmp_path / "deploys.md.j2"
    path.write_text("Deployed {{ payload.version }}", encoding="utf-8")
    assert load(str(path)).render({"version": "1.2"}, {}) == "Deployed 1.2"
    with pytest.raises(TemplateError, match="cannot read the template file"):
        load(str(tmp_path / "missing.md.j2"))
