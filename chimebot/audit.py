"""The audit log: who changed what, from where, and whether it was allowed (API, CLI and config)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from chimebot.clock import Clock
from chimebot.errors import Invalid
from chimebot.models import User, iso
from chimebot.store import Store
from chimebot.store import audit as q

log = logging.getLogger(__name__)

Source = Literal["api", "cli", "config"]
Outcome = Literal["ok", "refused", "failed"]
MAX_PAGE = 500
_FILTERS = ("actor", "action", "target", "outcome", "source")


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing someone did or tried to do."""

    actor: str  # the user's address, "config", "cli" or "anonymous"
    source: Source
    action: str
    outcome: Outcome
    account_id: str | None = None
    actor_id: str | None = None
    target: str | None = None
    address: str | None = None
    status: int | None = None
    detail: str | None = None

    @classmethod
    def by(cls, user: User | None, **fields: Any) -> Entry:
        """An entry whose actor is a user (or anonymous)."""
        if user is None:
            return cls(actor="anonymous", **fields)
        return cls(actor=user.email, actor_id=user.id, account_id=user.account_id, **fields)


def _entry_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": iso(row["at"]),
        "actor": row["actor"],
        "actor_id": row["actor_id"],
        "source": row["source"],
        "address": row["address"],
        "action": row["action"],
        "target": row["target"],
        "outcome": row["outcome"],
        "status": row["status"],
        "detail": row["detail"],
    }


class Audit:
    """Appends entries and lists them for administrators."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def record(self, entry: Entry) -> None:
        """Append an entry; a failure is logged, not raised, since the change itself already happened."""
        values = asdict(entry) | {"at": self._clock.now()}
        if values["detail"] is not None:
            values["detail"] = values["detail"][:1000]
        if values["target"] is not None:
            values["target"] = values["target"][:200]
        try:
            async with self._store.transaction() as conn:
                await q.append(conn, values)
        except Exception:
            log.exception("could not write the audit entry for %s by %s", entry.action, entry.actor)

    async def list(
        self,
        account_id: str | None,
        filters: dict[str, str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Entries of an account (None: every account, for the CLI), newest first, one page."""
        for name in filters:
            if name not in _FILTERS:
                raise Invalid(f"the audit log cannot be filtered by `{name}`; use {', '.join(_FILTERS)}")
        before = None
        if cursor:
            if not cursor.isdigit() or len(cursor) > 18:
                raise Invalid("`cursor` is not one this server gave out; start again without it")
            before = int(cursor)
        limit = min(max(limit, 1), MAX_PAGE)
        async with self._store.read() as conn:
            rows = await q.entries(
                conn, account_id, equal=filters, since=since, until=until, before_id=before, limit=limit + 1
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return [_entry_json(r) for r in rows], str(rows[-1]["id"]) if more else None
