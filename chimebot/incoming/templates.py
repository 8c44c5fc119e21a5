"""The transforms a webhook may name: the built-in templates and the config file's ``[[templates]]``."""

from __future__ import annotations

from chimebot.config import TemplateDecl
from chimebot.errors import Invalid
from webhooks import transforms
from webhooks.transforms import Transform


class Templates:
    """Compiled templates by name, each compiled once, with the configured limits."""

    def __init__(self, declared: tuple[TemplateDecl, ...], *, time_limit: float, max_chars: int) -> None:
        self._paths = {decl.name: decl.path for decl in declared}
        self._time_limit = time_limit
        self._max_chars = max_chars
        self._compiled: dict[str, Transform] = {}

    def names(self) -> list[str]:
        """Every name a webhook may use: the built-ins, then the declared ones."""
        return [*transforms.BUILTIN, *sorted(self._paths)]

    def check(self, name: str) -> None:
        """Raise Invalid unless ``name`` is a template a webhook may use."""
        if name not in transforms.BUILTIN and name not in self._paths:
            raise Invalid(
                f"no template named {name!r}; the templates are {', '.join(self.names())}",
                code="unknown_template",
            )

    def get(self, name: str) -> Transform:
        """The compiled template (TemplateError when its file no longer reads or compiles)."""
        found = self._compiled.get(name)
        if found is None:
            found = transforms.load(
                self._paths.get(name, name), time_limit=self._time_limit, max_chars=self._max_chars
            )
            self._compiled[name] = found
        return found
