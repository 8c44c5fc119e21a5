"""Templates that turn any JSON payload into a chat message, run in a jinja2 sandbox with limits.

A webhook that names a transform hands the parsed JSON body (``payload``), the request headers
(``headers``, names in lower case) and the query string (``query``) to a template; what the template
writes, stripped, is the message in Markdown, and nothing at all means the event is dropped.

The sandbox is ``ImmutableSandboxedEnvironment`` (no underscore attributes, no mutation of the
payload), without a loader (no ``include``/``import`` of files) and with limits the sandbox does not
have by itself: a time limit checked on every loop iteration, call and attribute lookup; an output
limit checked while the output streams; and bounds on the operations that could build a huge
string in one step (``*``, ``**``, ``%``, padding filters and methods).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

BUILTIN = ("github", "gitlab", "alertmanager", "grafana", "sentry", "jenkins", "generic")
TIME_LIMIT = 0.5  # seconds of rendering per payload
MAX_CHARS = 4096  # characters a template may write
MAX_STRING = 1_000_000  # the longest string any single step may build
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(\d{4,}|\*)|\.(\d{4,}|\*)")  # % widths that allocate wildly
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map"})


class TemplateError(Exception):
    """A template that could not be compiled or that failed on a payload; the message says why."""


class _Limits(threading.local):
    """The deadline of the render running on this thread (renders may run on worker threads)."""

    deadline: float = float("inf")


class Sandbox(ImmutableSandboxedEnvironment):
    """The jinja2 sandbox with the time and size limits transforms need."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(
            undefined=ChainableUndefined,  # payload.a.b of another event type is empty, not an error
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # Payloads are often not English: keep their text readable in `tojson` output.
        self.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
        self.globals.pop("lipsum", None)  # lipsum(n) writes n paragraphs: unbounded work for one call
        self.filters["center"] = _padding(self.filters["center"])
        self.filters["indent"] = _padding(self.filters["indent"])
        self.filters["format"] = _bounded_format
        self.limits = _Limits()

    # -- the time limit --------------------------------------------------------------------------

    def tick(self) -> None:
        """Raise once the render on this thread is past its deadline."""
        if time.monotonic() > self.limits.deadline:
            raise TemplateError("the template ran past its time limit")

    def checked_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Iterate for a ``{% for %}`` loop, checking the time limit on every round."""
        for item in iterable:
            self.tick()
            yield item

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then route every loop's iterable through ``checked_iter``."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("checked_iter"), [loop.iter], [], None, None, lineno=loop.lineno
            )
        return tree

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Refuse, besides what the sandbox refuses, the string methods that pad to a given width."""
        if isinstance(obj, str) and attr in _PADDING_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        """No str.format at all (the sandbox's does not bound widths); `is_safe_attribute` refuses it."""
        return None

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Look up an attribute under the time limit."""
        self.tick()
        return _bounded(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        """Look up an item under the time limit."""
        self.tick()
        return _bounded(super().getitem(obj, argument))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Call under the time limit; bound what one call may build."""
        __self.tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            method = getattr(__obj, "__name__", "")
            if method in _PADDING_METHODS:
                raise SecurityError(f"str.{method} is not available in templates")
            if (
                method == "replace"
                and len(args) >= 2
                and isinstance(args[0], str)
                and isinstance(args[1], str)
            ):
                _check_size(len(owner) + owner.count(args[0]) * len(args[1]) if args[0] else MAX_STRING + 1)
        return _bounded(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Bound the arithmetic that can build huge values in one step."""
        self.tick()
        # Python computes huge powers exactly: bound the size of the result, not just the exponent.
        if operator == "**" and _huge_power(left, right):
            raise SecurityError("powers beyond 4096 bits are not available in templates")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    _check_size(len(seq) * times)
        if operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise SecurityError("format widths above 999 are not available in templates")
        return _bounded(super().call_binop(context, operator, left, right))


def _huge_power(base: Any, exponent: Any) -> bool:
    """Tell whether base ** exponent would need more than 4096 bits."""
    if not (isinstance(base, int | float) and isinstance(exponent, int | float)):
        return False
    if abs(exponent) <= 1 or abs(base) <= 1:
        return False
    return abs(exponent) * max(abs(int(base)).bit_length(), 1) > 4096


def _check_size(size: int) -> None:
    if size > MAX_STRING:
        raise SecurityError(f"a template value may hold at most {MAX_STRING:,} characters")


def _bounded(value: Any) -> Any:
    if isinstance(value, str | list | tuple):
        _check_size(len(value))
    return value


def _padding(filter_: Any) -> Any:
    """Wrap a filter whose second argument is a width, so the width stays small."""

    def bounded(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > 1000:
            raise SecurityError("widths above 1000 are not available in templates")
        return filter_(value, width, *args, **kwargs)

    return bounded


def _bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
    """The ``format`` filter (printf-style), without the widths that allocate wildly."""
    text = str(value)
    if _WIDE_FORMAT.search(text):
        raise SecurityError("format widths above 999 are not available in templates")
    return _bounded(text % (kwargs or args))


_SANDBOX = Sandbox()


class Transform:
    """A compiled template with its limits; ``render`` turns one payload into a message or None."""

    def __init__(
        self, source: str, *, name: str, time_limit: float = TIME_LIMIT, max_chars: int = MAX_CHARS
    ) -> None:
        self.name = name
        self.time_limit = time_limit
        self.max_chars = max_chars
        try:
            self._template = _SANDBOX.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{name}, line {exc.lineno}: {exc.message}") from None

    def render(
        self, payload: Any, headers: Mapping[str, str], query: Mapping[str, str] | None = None
    ) -> str | None:
        """Render the message for a payload; None when the template writes nothing (drop the event).

        Raises TemplateError when the template fails, runs too long or writes too much.
        """
        context = {
            "payload": payload,
            "headers": {k.lower(): v for k, v in headers.items()},
            "query": dict(query or {}),
        }
        limits = _SANDBOX.limits
        limits.deadline = time.monotonic() + self.time_limit
        parts: list[str] = []
        size = 0
        try:
            for chunk in self._template.generate(context):
                size += len(chunk)
                if size > self.max_chars:
                    raise TemplateError(f"the template wrote more than {self.max_chars:,} characters")
                parts.append(chunk)
        except TemplateError:
            raise
        except RecursionError:
            raise TemplateError("the template recursed too deeply") from None
        except MemoryError:
            raise TemplateError("the template ran out of memory") from None
        except Exception as exc:  # any failure of the template on this payload is the template's
            raise TemplateError(f"{type(exc).__name__}: {exc}") from None
        finally:
            limits.deadline = float("inf")
        text = "".join(parts).strip()
        return text or None


def builtin_source(name: str) -> str:
    """The source of a built-in template, by name (one of ``BUILTIN``)."""
    if name not in BUILTIN:
        raise TemplateError(f"no built-in template named {name!r}; the built-ins are {', '.join(BUILTIN)}")
    return resources.files("webhooks").joinpath("templates", f"{name}.md.j2").read_text("utf-8")


def load(spec: str, *, time_limit: float = TIME_LIMIT, max_chars: int = MAX_CHARS) -> Transform:
    """Compile a built-in template by name, or a template file by path."""
    if spec in BUILTIN:
        source = builtin_source(spec)
    else:
        try:
            source = Path(spec).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"cannot read the template file {spec}: {exc}") from None
    return Transform(source, name=spec, time_limit=time_limit, max_chars=max_chars)
