"""Reading a webhook's HTTP body into JSON: a JSON body, a form with ``payload=``, or multipart.

Slack and Mattermost take ``application/x-www-form-urlencoded`` with the JSON in a ``payload`` field;
Discord takes ``multipart/form-data`` with ``payload_json`` (and its files, which a chat message here
cannot carry) or plain form fields such as ``content``. Everything ends as one JSON value.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from typing import Any
from urllib.parse import parse_qsl

from webhooks.message import DialectError

JSON_FIELDS = ("payload", "payload_json")  # form fields that carry the whole body as JSON
FILES = "files"  # what a multipart body's file parts are called in a message's `dropped`


def decode(body: bytes, content_type: str) -> tuple[Any, tuple[str, ...]]:
    """Return the body's JSON value and the parts left out (file uploads); raise DialectError."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            raise _invalid("the form body is not UTF-8") from None
        return _from_fields(fields), ()
    if media == "multipart/form-data":
        return _multipart(body, content_type)
    return loads(body), ()


def loads(body: bytes | str) -> Any:
    """Parse JSON text, raising DialectError (400 invalid_payload) with the reason."""
    try:
        return json.loads(body)
    except RecursionError:
        raise _invalid("the JSON body is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise _invalid(f"the body is not JSON ({exc})") from None


def _from_fields(fields: dict[str, str]) -> Any:
    """A form's JSON: its ``payload``/``payload_json`` field, else the fields themselves."""
    for name in JSON_FIELDS:
        if name in fields:
            return loads(fields[name])
    if not fields:
        raise _invalid("the form is empty; send the message as JSON in a `payload` field")
    return fields


def _multipart(body: bytes, content_type: str) -> tuple[Any, tuple[str, ...]]:
    """Read a multipart/form-data body's text fields; its file parts are named as dropped."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise _invalid("the multipart body has no boundary or no parts")
    fields: dict[str, str] = {}
    files = False
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        if part.get_filename() is not None:
            files = True
            continue
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            continue
        try:
            fields[name] = raw.decode(part.get_content_charset() or "utf-8")
        except (UnicodeDecodeError, LookupError):
            raise _invalid(f"the form field {name!r} is not UTF-8") from None
    return _from_fields(fields), ((FILES,) if files else ())


def _invalid(message: str) -> DialectError:
    return DialectError(400, "invalid_payload", message)
