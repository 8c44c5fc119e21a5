"""Reading TOML into frozen dataclasses: key declarations, their checks, and the problems found.

Validation walks each dataclass's fields and type hints, so a new key is one annotated field in
``sections`` (plus its line in config.example.toml); its constraint sits next to it via ``key``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, field, fields, is_dataclass
from difflib import get_close_matches
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Check = Callable[[Any], object]  # a per-key constraint: truthy when the (type-checked) value is valid
_GOT_MAX = 60  # values are echoed shortened so one bad key cannot flood the terminal


class ConfigError(Exception):
    """Raised with every problem found; str() is one line per problem."""

    errors: tuple[str, ...]

    def __init__(self, errors: list[str] | tuple[str, ...]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


def key(
    default: Any = MISSING, check: Check | None = None, expect: str = "", env: str = "", **kw: Any
) -> Any:
    """Declare a config key: its default, an optional check, and a phrase saying what is valid."""
    meta = {"check": check, "expect": expect} | ({"env": env} if env else {})
    return field(default=default, metadata=meta, **kw)


def positive(x: float) -> bool:
    """A check for a finite number > 0 (TOML allows `inf` and `nan`, which make no sense here)."""
    return 0 < x < math.inf  # False for nan too


def bounded_name(max_len: int) -> Callable[[str], bool]:
    """A check for a display name: non-blank and at most `max_len` characters."""
    return lambda s: bool(s.strip()) and len(s) <= max_len


def url_key(*schemes: str) -> Any:
    """Declare a URL key: empty (the default) or a URL with one of `schemes` and something after it."""
    prefixes = [f"{scheme}://" for scheme in schemes]
    expect = f"a URL starting with {', '.join(prefixes[:-1])} or {prefixes[-1]}, or empty"
    return key("", lambda s: s == "" or any(s.startswith(p) and len(s) > len(p) for p in prefixes), expect)


def is_zone(name: str) -> bool:
    """A check for an IANA time zone name that this machine knows."""
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return False
    return True


def is_domain(name: str) -> bool:
    """A check for a DNS domain name like example.com."""
    return bool(
        re.fullmatch(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]{1,63}", name)
    )


def env_name(example: str) -> Any:
    """Declare a key naming an environment variable (optional: None when absent)."""
    return key(
        None,
        lambda s: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s),
        f"the name of an environment variable, like {example}",
    )


_BAD = object()  # marks a value that failed validation (its problem is already recorded)
_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


class Problems:
    """Collects every problem so the admin can fix the whole file in one go."""

    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source, self.env = source, env
        self.errors: list[str] = []

    def add(self, path: str, message: str) -> None:
        """Record one problem at a key path."""
        self.errors.append(f"{self.source}: {path}: {message}")

    def unique(self, seen: dict[str, str], value: str | None, where: str, fold: bool = False) -> None:
        """Report `value` if an earlier key in `seen` has it; `fold` ignores case, as people would."""
        if value is None:
            return  # missing or invalid; already reported
        first = seen.setdefault(value.casefold() if fold else value, where)
        if first != where:
            case = " (ignoring case)" if fold else ""
            self.add(where, f"expected a value not already used by {first}{case}, got {got(value)}")


def got(value: object) -> str:
    """The repr of a value, shortened so long strings do not swamp the message."""
    text = repr(value)
    return text if len(text) <= _GOT_MAX else text[: _GOT_MAX - 3] + "..."


def _join(path: str, key: str) -> str:
    """Extend a key path: "" + "server" -> "server"; "server" + "port" -> "server.port"."""
    return f"{path}.{key}" if path else key


def _describe(tp: Any) -> str:
    """A phrase for what a value of type `tp` looks like in TOML."""
    origin, args = get_origin(tp), get_args(tp)  # `X | None` never gets here: _value unwraps it
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is tuple:
        return "an array of tables" if is_dataclass(args[0]) else "an array"
    return "a table" if is_dataclass(tp) else _KINDS[tp]


def _value(tp: Any, value: Any, path: str, problems: Problems, expect: str) -> Any:
    """Check `value` against type `tp`; returns it (converted) or _BAD after recording why."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):  # `X | None`: TOML has no null, so the key is an X or absent
        return _value(next(a for a in args if a is not NoneType), value, path, problems, expect)
    if is_dataclass(tp):
        if isinstance(value, dict):
            return build(tp, value, path, problems)
    elif origin is tuple:
        if isinstance(value, list):
            return tuple(_value(args[0], v, f"{path}[{i}]", problems, "") for i, v in enumerate(value))
    elif origin is Literal:
        if any(type(value) is type(choice) and value == choice for choice in args):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):  # 2 means 2.0
            return float(value)
    elif isinstance(value, tp) and not (tp is int and isinstance(value, bool)):  # bool is an int subclass
        return value
    problems.add(path, f"expected {expect or _describe(tp)}, got {got(value)}")
    return _BAD


def build(cls: Any, data: dict, path: str, problems: Problems, **given: Any) -> Any:
    """Build dataclass `cls` from a TOML table, recording problems; `given` fields are not TOML keys.

    It always returns an instance, with defaults (or None) in place of bad values, so that the
    cross-checks can still run; the instance never escapes when any problem was recorded.
    """
    hints = get_type_hints(cls)
    from_env = {f.name: f for f in fields(cls) if "env" in f.metadata}
    keys = {f.name: f for f in fields(cls) if f.name not in given and f.name not in from_env}
    values = dict(given)
    for key, raw in data.items():
        where = _join(path, key)
        if key in from_env:
            source_key = from_env[key].metadata["env"]
            problems.add(where, f"unknown key (secrets are not read from the file; set '{source_key}')")
            continue
        if key not in keys:
            close = get_close_matches(key, list(keys), n=1)
            problems.add(where, "unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))
            continue
        meta = keys[key].metadata
        value = _value(hints[key], raw, where, problems, meta.get("expect", ""))
        check = meta.get("check")
        if value is not _BAD and check is not None and not check(value):
            problems.add(where, f"expected {meta['expect']}, got {got(value)}")
            value = _BAD
        if value is not _BAD:
            values[key] = value
    for key, f in keys.items():
        if key not in values and f.default is MISSING and f.default_factory is MISSING:
            if key not in data:
                expect = f.metadata.get("expect") or _describe(hints[key])
                problems.add(_join(path, key), f"required key is missing (expected {expect})")
            values[key] = None  # placeholder; the problem is recorded
    for key, f in from_env.items():
        values[key] = _secret(f, values.get(f.metadata["env"]), path, problems)
    return cls(**values)


def _secret(f: Any, var: object, path: str, problems: Problems) -> str:
    """Read a secret from the environment variable named by a sibling key, never echoing its value."""
    if not isinstance(var, str):
        return ""  # the variable-name key itself is missing or invalid, and already reported
    where, secret = _join(path, f.metadata["env"]), problems.env.get(var)
    if not secret:
        problems.add(where, f"environment variable {var} is {'empty' if secret == '' else 'not set'}")
    elif not f.metadata["check"](secret):
        expect, count = f.metadata["expect"], len(secret)
        problems.add(where, f"expected environment variable {var} to hold {expect}, got {count} characters")
    return secret or ""
