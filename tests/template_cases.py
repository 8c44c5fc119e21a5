"""The real-payload cases of the built-in templates, shared by the template tests and the HTTP tests.

A case in ``tests/fixtures/<producer>/`` is ``<case>.json``, a body the producer really sends;
``<case>.headers.json``, the request headers the template reads (absent when it reads none); and
``<case>.expected.md``, the exact message, or an empty file when the event must be dropped. The
file's final newline is not part of the message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webhooks import transforms

FIXTURES = Path(__file__).parent / "fixtures"
PRODUCERS = transforms.BUILTIN


def template_cases(id_separator: str = "/") -> list[Any]:
    """Every real payload of every built-in template, as (producer, case) parameters."""
    return [
        pytest.param(
            producer,
            expected.name.removesuffix(".expected.md"),
            id=f"{producer}{id_separator}{expected.name.removesuffix('.expected.md')}",
        )
        for producer in PRODUCERS
        for expected in sorted((FIXTURES / producer).glob("*.expected.md"))
    ]


def body_of(producer: str, case: str) -> bytes:
    """The payload of a case, as the producer sends it."""
    return (FIXTURES / producer / f"{case}.json").read_bytes()


def headers_of(producer: str, case: str) -> dict[str, str]:
    """The request headers of a case ({} when the template reads none)."""
    path = FIXTURES / producer / f"{case}.headers.json"
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def expected_of(producer: str, case: str) -> str:
    """The message a case must produce ("" when the event must be dropped)."""
    return (FIXTURES / producer / f"{case}.expected.md").read_text("utf-8").removesuffix("\n")
