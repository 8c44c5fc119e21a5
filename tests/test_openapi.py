"""The OpenAPI document moves with the code: every route is documented, every documented route exists."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from chimebot.http.pages import OPENAPI
from tests.conftest import Harness

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
REQUIRED_SCHEMAS = ("Room", "Member", "Message", "Webhook", "WebhookWithToken", "Error")


def load_document(path: Path = OPENAPI) -> dict[str, Any]:
    """The document as the repository holds it."""
    return json.loads(path.read_text(encoding="utf-8"))


def router_operations(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route the app registers, without aiohttp's implicit HEADs."""
    ops = set()
    for route in app.router.routes():
        # aiohttp adds a HEAD next to every GET; "*" would be a catch-all that no OpenAPI verb can name.
        if route.method in ("HEAD", "*"):
            continue
        canonical = route.resource.canonical if route.resource is not None else ""
        ops.add((route.method, canonical))
    return ops


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path template) of every operation in the document."""
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` value anywhere in a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


async def test_every_route_is_documented_and_every_documented_route_exists(app: Harness) -> None:
    routes = router_operations(app.client.app)
    documented = documented_operations(load_document())
    assert routes, "the app registers no routes?"
    assert sorted(routes - documented) == [], "routes missing from chimebot/http/openapi.json"
    assert sorted(documented - routes) == [], "documented in openapi.json but not registered by the app"


async def test_the_served_document_is_the_file(app: Harness) -> None:
    resp = await app.client.get("/api/v1/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    served = json.loads(await resp.text())
    assert served == load_document()
    assert isinstance(served["openapi"], str)
    assert re.fullmatch(r"3\.1\.\d+", served["openapi"]), served["openapi"]


def test_the_file_is_pretty_printed_with_two_spaces() -> None:
    text = OPENAPI.read_text(encoding="utf-8")
    # Reviewers read diffs of this file, so it stays in one canonical layout.
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_the_document_is_self_consistent() -> None:
    doc = load_document()
    schemas = doc["components"]["schemas"]
    for name in REQUIRED_SCHEMAS:
        assert name in schemas, name
    assert set(schemas["Error"]["required"]) == {"error", "message"}
    bearer = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    for ref in refs(doc):
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, f"dangling $ref {ref}"
            node = node[part]
    for path, item in doc["paths"].items():
        shared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            declared = shared | {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), f"{method.upper()} {path}: path parameters"
            assert op.get("responses"), f"{method.upper()} {path}: no responses"
            assert op.get("description") or op.get("summary"), f"{method.upper()} {path}: no description"


def test_the_incoming_webhook_documents_every_chime_answer() -> None:
    responses = load_document()["paths"]["/incomingwebhooks/{webhook_id}"]["post"]["responses"]
    assert {"200", "400", "403", "404", "413", "429"} <= set(responses)


def test_the_document_is_valid_openapi() -> None:
    # Optional: the validator is not a dependency of the project; it checks more when it is installed.
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(load_document())
