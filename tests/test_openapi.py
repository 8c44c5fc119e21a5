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
from webhooks import signing

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


def test_the_hooks_url_documents_every_answer_in_its_senders_dialect() -> None:
    responses = load_document()["paths"]["/hooks/{key}"]["post"]["responses"]
    assert {"200", "204", "400", "403", "404", "413", "422", "429"} <= set(responses)
    assert set(responses["200"]["content"]) == {"text/plain", "application/json"}
    assert set(responses["200"]["content"]["text/plain"]["schema"]["enum"]) == {"ok", "1"}
    slack_names = {
        status: set(answer["content"]["text/plain"]["schema"]["enum"])
        for status, answer in responses.items()
        if "text/plain" in answer.get("content", {}) and status != "200"
    }
    assert slack_names == {
        "400": {
            "invalid_payload",
            "no_text",
            "too_many_attachments",
            "invalid_blocks",
            "invalid_attachments",
        },
        "403": {"invalid_token", "invalid_signature"},
        "404": {"no_service", "channel_not_found"},
        "413": {"msg_too_long"},
        "429": {"rate_limited"},
    }
    assert "Retry-After" in responses["429"]["headers"]
    assert set(refs(responses["422"])) == {"#/components/schemas/Error"}
    assert "#/components/schemas/DiscordError" in set(refs(responses["400"]))
    names = {p["name"] for p in load_document()["paths"]["/hooks/{key}"]["post"]["parameters"]}
    assert {"key", "wait", "Idempotency-Key", "webhook-id", "webhook-timestamp", "webhook-signature"} <= names


def test_the_discord_url_documents_every_discord_answer() -> None:
    operation = load_document()["paths"]["/api/webhooks/{webhook_id}/{token}"]["post"]
    responses = operation["responses"]
    assert {"200", "204", "400", "401", "404", "413", "429"} <= set(responses)
    codes = {
        code
        for answer in responses.values()
        for schema in answer.get("content", {}).get("application/json", {}).get("schema", {}).get("allOf", [])
        for code in schema.get("properties", {}).get("code", {}).get("enum", [])
    }
    codes |= {
        code
        for answer in responses.values()
        for option in answer.get("content", {}).get("application/json", {}).get("schema", {}).get("oneOf", [])
        for schema in option.get("allOf", [])
        for code in schema.get("properties", {}).get("code", {}).get("enum", [])
    }
    assert {10015, 50027, 50006, 50035, 40005} <= codes
    assert set(refs(responses["429"])) == {"#/components/schemas/DiscordRateLimited"}
    assert "Retry-After" in responses["429"]["headers"]


def test_the_webhook_schemas_show_every_setting_and_the_failure_event() -> None:
    schemas = load_document()["components"]["schemas"]
    assert {
        "hooks_url",
        "dialect",
        "locked",
        "template",
        "auth",
        "last_dialect",
        "last_error",
        "last_error_at",
    } <= set(schemas["Webhook"]["required"])
    [_, with_token] = schemas["WebhookWithToken"]["allOf"]
    assert {"token", "url", "hooks_url", "discord_url", "signing_secret"} <= set(with_token["properties"])
    event = schemas["StreamEvent"]["properties"]
    assert "webhook.failed" in event["type"]["examples"]
    assert {"$ref": "#/components/schemas/WebhookFailed"} in event["data"]["oneOf"]


# -- the answers of the webhook routes, checked against the document ------------------------------------


def documented(method: str, template: str, status: int) -> dict[str, Any]:
    """The documented response of an operation for a status, with a shared response's $ref followed."""
    doc = load_document()
    responses = doc["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template}: {status} is not documented"
    answer = responses[str(status)]
    if "$ref" in answer:
        answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer


async def matches_document(resp: Any, method: str, template: str) -> Any:
    """Check an answer's status, content type and body against the document; return the body."""
    validators = pytest.importorskip("jsonschema")
    answer = documented(method, template, resp.status)
    raw = await resp.read()
    if "content" not in answer:
        assert raw == b"", f"{method} {template} {resp.status}: a body where none is documented"
        return None
    content = answer["content"]
    assert resp.content_type in content, (
        f"{method} {template} {resp.status}: {resp.content_type} {raw[:200]!r}"
    )
    body = raw.decode() if resp.content_type == "text/plain" else json.loads(raw)
    schema = content[resp.content_type]["schema"] | {"components": load_document()["components"]}
    validators.Draft202012Validator(schema).validate(body)
    for header in answer.get("headers", {}):
        if header != "Cache-Control":
            assert header in resp.headers, f"{method} {template} {resp.status}: no {header}"
    return body


HOOKS = "/hooks/{key}"
DISCORD = "/api/webhooks/{webhook_id}/{token}"


async def test_the_webhook_urls_answer_as_documented(app: Harness) -> None:
    room_id = await app.room()
    hook = await app.webhook(room_id)
    assert await matches_document(
        await app.client.get(f"/api/v1/webhooks/{hook['id']}", headers=app.auth()),
        "GET",
        "/api/v1/webhooks/{webhook_id}",
    )

    async def post(path: str, template: str, **kwargs: Any) -> Any:
        app.clock.advance(2)  # the webhook's rate: 1 per second
        return await matches_document(await app.client.post(path, **kwargs), "POST", template)

    hooks, discord = f"/hooks/{hook['token']}", f"/api/webhooks/{hook['id']}/{hook['token']}"
    card = {"@type": "MessageCard", "summary": "Build 118", "text": "passed"}
    assert await post(hooks, HOOKS, json={"text": "deployed <!here>"}) == "ok"
    assert await post(hooks, HOOKS, data=b"payload=%7B%22text%22%3A%22x%22%7D", headers=FORM) == "ok"
    assert await post(hooks, HOOKS, json=card) == "1"
    assert await post(hooks, HOOKS, json={"content": "discord"}) is None
    assert (await post(f"{hooks}?wait=true", HOOKS, json={"content": "waited"}))["content"] == "waited"
    assert (await post(hooks, HOOKS, json={"Content": "/md **chime**"}))["RoomId"] == room_id
    assert await post("/hooks/not-a-token", HOOKS, json={"text": "x"}) == "no_service"
    assert await post(hooks, HOOKS, json={}) == "invalid_payload"
    assert await post(hooks, HOOKS, json={"text": ""}) == "no_text"
    assert await post(hooks, HOOKS, json={"text": "x" * 5000}) == "msg_too_long"
    assert await post(hooks, HOOKS, json={"text": "x", "channel": "#nowhere"}) == "ok"  # locked: ignored
    assert (await post(hooks, HOOKS, json={"content": ""}))["code"] == 50006
    assert (await post(hooks, HOOKS, json={"Content": " "}))["error"] == "empty_content"
    assert (await post(hooks, HOOKS, json={"Content": "x" * 5000}))["error"] == "content_too_long"
    keyed = {"Idempotency-Key": "k" * 256}
    assert await post(hooks, HOOKS, json={"text": "x"}, headers=keyed) == "invalid_payload"
    assert await post(f"/hooks/{hook['id']}", HOOKS, json={"text": "x"}) == "invalid_token"
    assert await post(hooks, HOOKS, json={"text": "one"}) == "ok"
    resp = await app.client.post(hooks, json={"text": "two"})  # no clock advance: over the rate
    assert await matches_document(resp, "POST", HOOKS) == "rate_limited"

    assert await post(discord, DISCORD, json={"content": "plain"}) is None
    answer = await post(f"{discord}?wait=true", DISCORD, json={"content": "waited", "username": "Grafana"})
    assert answer["author"]["username"] == "Grafana (Webhook)"
    assert (await post(discord, DISCORD, json={"content": ""}))["code"] == 50006
    assert (await post(discord, DISCORD, json={"embeds": "nope"}))["code"] == 50035
    assert (await post(discord, DISCORD, data=b"x" * 70_000))["code"] == 40005
    assert (await post(f"/api/webhooks/{hook['id']}/wrong", DISCORD, json={"content": "x"}))["code"] == 50027
    assert (await post(f"/api/webhooks/unknown/{hook['token']}", DISCORD, json={"content": "x"}))[
        "code"
    ] == 10015
    assert (await post(f"/api/webhooks/bad%20id/{hook['token']}", DISCORD, json={"content": "x"}))[
        "code"
    ] == 10015
    assert await post(discord, DISCORD, json={"content": "one"}) is None
    resp = await app.client.post(discord, json={"content": "two"})
    assert (await matches_document(resp, "POST", DISCORD))["global"] is False

    bearer = {"Authorization": f"Bearer {hook['token']}"}
    chime = "/incomingwebhooks/{webhook_id}"
    answer = await post(
        f"/incomingwebhooks/{hook['id']}", chime, json={"Content": "by header"}, headers=bearer
    )
    assert answer["RoomId"] == room_id


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_webhook_settings_templates_and_signatures_answer_as_documented(app: Harness) -> None:
    room_id = await app.room()
    resp = await app.client.post(
        f"/api/v1/rooms/{room_id}/webhooks",
        json={"name": "Signed", "auth": "standard-webhooks"},
        headers=app.auth(),
    )
    signed = await matches_document(resp, "POST", "/api/v1/rooms/{room_id}/webhooks")
    assert signed["signing_secret"].startswith("whsec_") and "discord_url" not in signed
    assert signed["hooks_url"].endswith(f"/hooks/{signed['id']}")
    body = json.dumps({"text": "signed"}).encode()
    headers = signing.standard_headers(signed["signing_secret"], "msg_1", body, app.clock.now())
    resp = await app.client.post(f"/hooks/{signed['id']}", data=body, headers=headers)
    assert await matches_document(resp, "POST", HOOKS) == "ok"
    app.clock.advance(2)
    resp = await app.client.post(f"/hooks/{signed['id']}", data=body)
    assert await matches_document(resp, "POST", HOOKS) == "invalid_signature"
    app.clock.advance(2)
    resp = await app.client.post(f"/incomingwebhooks/{signed['id']}", json={"Content": "x"})
    assert (await matches_document(resp, "POST", "/incomingwebhooks/{webhook_id}"))[
        "error"
    ] == "invalid_signature"
    app.clock.advance(2)
    resp = await app.client.post(f"/api/webhooks/{signed['id']}/anything", json={"content": "x"})
    assert (await matches_document(resp, "POST", DISCORD))["code"] == 50027

    one = "/api/v1/webhooks/{webhook_id}"
    hook = await app.webhook(room_id)
    resp = await app.client.patch(
        f"/api/v1/webhooks/{hook['id']}",
        json={"signing_secret": "generate", "template": "jenkins"},
        headers=app.auth(),
    )
    changed = await matches_document(resp, "PATCH", one)
    assert changed["template"] == "jenkins" and changed["signing_secret"].startswith("whsec_")
    assert resp.headers["Cache-Control"] == "no-store"
    resp = await app.client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"template": "nope"}, headers=app.auth()
    )
    assert (await matches_document(resp, "PATCH", one))["error"] == "unknown_template"
    resp = await app.client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"colour": "red"}, headers=app.auth()
    )
    assert (await matches_document(resp, "PATCH", one))["error"] == "invalid"
    resp = await app.client.get("/api/v1/webhooks/templates", headers=app.auth())
    assert "github" in (await matches_document(resp, "GET", "/api/v1/webhooks/templates"))["templates"]

    started = (Path(__file__).parent / "fixtures" / "jenkins" / "started.json").read_bytes()
    resp = await app.client.post(f"/hooks/{hook['token']}", data=started)  # a phase the template drops
    assert await matches_document(resp, "POST", HOOKS) == {"MessageId": None, "RoomId": room_id}
    resp = await app.client.post(f"/api/v1/webhooks/{hook['id']}/regenerate", headers=app.auth())
    regenerated = await matches_document(resp, "POST", "/api/v1/webhooks/{webhook_id}/regenerate")
    assert regenerated["discord_url"].endswith(f"/{regenerated['id']}/{regenerated['token']}")
    resp = await app.client.get(f"/api/v1/webhooks/{regenerated['id']}", headers=app.auth())
    shown = await matches_document(resp, "GET", one)
    assert shown["hooks_url"] is None and shown["template"] == "jenkins" and "token" not in shown


def test_the_document_is_valid_openapi() -> None:
    # Optional: the validator is not a dependency of the project; it checks more when it is installed.
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(load_document())
