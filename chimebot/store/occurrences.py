"""Queries for calendar occurrences: what a sync reports, and the atomic claim that fires one once."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from calendars.invites import MeetingOccurrence
from chimebot.ids import new_meeting_id
from chimebot.store.schema import occurrences

SCHEDULED = "scheduled"
CANCELLED = "cancelled"
REJECTED = "rejected"
FIRED = "fired"
MISSED = "missed"
STATES = (SCHEDULED, CANCELLED, REJECTED, FIRED, MISSED)

CANCELLED_IN_CALENDAR = "cancelled in the calendar"
# Keeps every `IN (…)` list far below SQLite's and asyncpg's bound-parameter limits.
_CHUNK = 500
_NO_LEAD = timedelta(0)


@dataclass(frozen=True)
class StoredOccurrence:
    """One row of the occurrences table."""

    key: str
    source: str
    uid: str
    recurrence_id: datetime | None
    meeting_id: str | None
    start: datetime
    end: datetime
    summary: str
    organizer: str | None
    attendees: tuple[str, ...]
    sequence: int
    state: str
    reason: str | None
    fired_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class UpsertResult:
    """What a sync changed: keys inserted, keys updated, and keys whose report was ignored."""

    inserted: tuple[str, ...]
    updated: tuple[str, ...]
    ignored: tuple[str, ...]


def _from_row(row: RowMapping) -> StoredOccurrence:
    """A row as a StoredOccurrence."""
    return StoredOccurrence(
        key=row["key"],
        source=row["source"],
        uid=row["uid"],
        recurrence_id=row["recurrence_id"],
        meeting_id=row["meeting_id"],
        start=row["start_at"],
        end=row["end_at"],
        summary=row["summary"],
        organizer=row["organizer"],
        attendees=tuple(json.loads(row["attendees"])),
        sequence=row["sequence"],
        state=row["state"],
        reason=row["reason"],
        fired_at=row["fired_at"],
        updated_at=row["updated_at"],
    )


def _values(
    source: str, occ: MeetingOccurrence, state: str, reason: str | None, meeting_id: str | None, now: datetime
) -> dict[str, Any]:
    """The column values that a reported occurrence sets."""
    return {
        "key": occ.key,
        "source": source,
        "uid": occ.uid,
        "recurrence_id": occ.recurrence_id,
        "meeting_id": meeting_id,
        "start_at": occ.start,
        "end_at": occ.end,
        "summary": occ.summary,
        "organizer": occ.organizer,
        "attendees": json.dumps(list(occ.attendees)),
        "sequence": occ.sequence,
        "state": state,
        "reason": reason,
        "updated_at": now,
    }


def _decide(source: str, occ: MeetingOccurrence, row: StoredOccurrence) -> tuple[str, str | None] | None:
    """The (state, reason) a report moves a stored occurrence to, or None when the report changes nothing."""
    if row.state in (FIRED, MISSED):
        return None  # what happened at the start time is history; nothing re-schedules it
    if occ.sequence < row.sequence:
        return None  # an older revision of the event (RFC 5545 SEQUENCE), e.g. a late iMIP mail
    if occ.sequence == row.sequence and source != row.source and not occ.cancelled:
        # The same revision seen through another calendar: the first one keeps it, so that calendar's
        # deletions still cancel it. A cancellation is believed from anywhere.
        return None
    if occ.cancelled:
        state, reason = CANCELLED, CANCELLED_IN_CALENDAR
    elif row.state == REJECTED and row.organizer == occ.organizer:
        state, reason = REJECTED, row.reason  # the refusal depends on the organizer, who is the same
    else:
        state, reason = SCHEDULED, None
    unchanged = (
        source == row.source
        and state == row.state
        and occ.sequence == row.sequence
        and occ.start == row.start
        and occ.end == row.end
        and occ.summary == row.summary
        and occ.organizer == row.organizer
        and tuple(occ.attendees) == row.attendees
        and (occ.pin is None or occ.pin == row.meeting_id)
        and occ.recurrence_id == row.recurrence_id
    )
    return None if unchanged else (state, reason)


async def by_keys(conn: AsyncConnection, keys: Iterable[str]) -> dict[str, StoredOccurrence]:
    """The stored occurrences with these keys."""
    wanted = list(dict.fromkeys(keys))
    found: dict[str, StoredOccurrence] = {}
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        result = await conn.execute(select(occurrences).where(occurrences.c.key.in_(chunk)))
        for row in result.mappings():
            found[row["key"]] = _from_row(row)
    return found


async def of_uid(conn: AsyncConnection, uid: str) -> list[StoredOccurrence]:
    """Every stored occurrence of one event (UID), by start time."""
    result = await conn.execute(
        select(occurrences)
        .where(occurrences.c.uid == uid)
        .order_by(occurrences.c.start_at, occurrences.c.key)
    )
    return [_from_row(row) for row in result.mappings()]


async def get(conn: AsyncConnection, key: str) -> StoredOccurrence | None:
    """One stored occurrence by key."""
    return (await by_keys(conn, [key])).get(key)


async def upsert(
    conn: AsyncConnection, source: str, reported: Iterable[MeetingOccurrence], now: datetime
) -> UpsertResult:
    """Store what a sync of `source` reported, respecting SEQUENCE and never reviving a fired call."""
    latest: dict[str, MeetingOccurrence] = {}
    for occ in reported:
        # A feed may carry the same instance twice (a master and an override): the newest wins.
        if occ.key not in latest or occ.sequence >= latest[occ.key].sequence:
            latest[occ.key] = occ
    stored = await by_keys(conn, latest)
    meeting_ids = await _meeting_ids(conn, [occ.uid for key, occ in latest.items() if key not in stored])
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    ignored: list[str] = []
    for key, occ in latest.items():
        row = stored.get(key)
        if row is None:
            state, reason = (CANCELLED, CANCELLED_IN_CALENDAR) if occ.cancelled else (SCHEDULED, None)
            # meet@ gives the event one new meeting id, shared by all its instances and kept across
            # updates; pin+<id>@ names its own.
            meeting_id = occ.pin or meeting_ids.setdefault(occ.uid, new_meeting_id())
            inserts.append(_values(source, occ, state, reason, meeting_id, now))
            continue
        decision = _decide(source, occ, row)
        if decision is None:
            ignored.append(key)
            continue
        # A meet@ invitation keeps the meeting id it was given; pin+<id>@ names its own.
        values = _values(source, occ, *decision, occ.pin or row.meeting_id, now)
        updates.append({f"v_{name}": value for name, value in values.items()})
    if inserts:
        await conn.execute(occurrences.insert(), inserts)
    if updates:
        columns = [c for c in occurrences.columns if c.name not in ("fired_at",)]
        stmt = (
            occurrences.update()
            .where(occurrences.c.key == bindparam("v_key", type_=occurrences.c.key.type))
            .values({c.name: bindparam(f"v_{c.name}", type_=c.type) for c in columns if c.name != "key"})
        )
        await conn.execute(stmt, updates)
    return UpsertResult(tuple(v["key"] for v in inserts), tuple(v["v_key"] for v in updates), tuple(ignored))


async def _meeting_ids(conn: AsyncConnection, uids: Iterable[str]) -> dict[str, str]:
    """The meeting id each of these UIDs already has (from any of its stored instances)."""
    wanted = list(dict.fromkeys(uids))
    found: dict[str, str] = {}
    for i in range(0, len(wanted), _CHUNK):
        result = await conn.execute(
            select(occurrences.c.uid, occurrences.c.meeting_id).where(
                occurrences.c.uid.in_(wanted[i : i + _CHUNK]), occurrences.c.meeting_id.is_not(None)
            )
        )
        found.update({uid: meeting_id for uid, meeting_id in result})
    return found


async def _set_state(
    conn: AsyncConnection, keys: Sequence[str], state: str, reason: str | None, now: datetime
) -> None:
    """Move these occurrences to `state` with `reason`."""
    for i in range(0, len(keys), _CHUNK):
        await conn.execute(
            occurrences.update()
            .where(occurrences.c.key.in_(keys[i : i + _CHUNK]))
            .values(state=state, reason=reason, updated_at=now)
        )


async def cancel_absent(
    conn: AsyncConnection,
    source: str,
    present: Iterable[str],
    now: datetime,
    *,
    window: tuple[datetime, datetime] | None = None,
    uids: Sequence[str] | None = None,
) -> list[str]:
    """Cancel `source`'s pending occurrences (in `window`, of `uids`, if given) missing from a sync."""
    condition: ColumnElement[bool] = and_(
        occurrences.c.source == source, occurrences.c.state.in_((SCHEDULED, REJECTED))
    )
    if uids is not None:
        # The sync read these objects completely, and only these (an incremental sync).
        if not uids:
            return []
        condition = and_(condition, occurrences.c.uid.in_(list(uids)))
    if window is not None:
        # A sync only speaks for its look-ahead window: what lies outside was not looked at.
        condition = and_(condition, occurrences.c.start_at >= window[0], occurrences.c.start_at < window[1])
    pending = (await conn.execute(select(occurrences.c.key).where(condition))).scalars().all()
    keep = set(present)
    gone = [key for key in pending if key not in keep]
    await _set_state(conn, gone, CANCELLED, f"no longer in calendar {source}", now)
    return gone


async def cancel_uid(
    conn: AsyncConnection, source: str | None, uid: str, now: datetime, *, reason: str
) -> list[str]:
    """Cancel the pending occurrences of an object deleted from `source` (None: from wherever seen)."""
    condition = and_(occurrences.c.uid == uid, occurrences.c.state.in_((SCHEDULED, REJECTED)))
    if source is not None:
        condition = and_(condition, occurrences.c.source == source)
    result = await conn.execute(
        occurrences.update()
        .where(condition)
        .values(state=CANCELLED, reason=reason, updated_at=now)
        .returning(occurrences.c.key)
    )
    return list(result.scalars())


async def reject(conn: AsyncConnection, key: str, reason: str, now: datetime) -> bool:
    """Record that a pending occurrence will not be called (e.g. its organizer is not Pro), and why."""
    result = await conn.execute(
        occurrences.update()
        .where(occurrences.c.key == key, occurrences.c.state.in_((SCHEDULED, REJECTED)))
        .values(state=REJECTED, reason=reason, updated_at=now)
        .returning(occurrences.c.key)
    )
    return result.first() is not None


async def reinstate(conn: AsyncConnection, key: str, now: datetime) -> bool:
    """Schedule a rejected occurrence again (its organizer may now schedule meetings)."""
    result = await conn.execute(
        occurrences.update()
        .where(occurrences.c.key == key, occurrences.c.state == REJECTED)
        .values(state=SCHEDULED, reason=None, updated_at=now)
        .returning(occurrences.c.key)
    )
    return result.first() is not None


async def reject_fired(conn: AsyncConnection, key: str, reason: str, now: datetime) -> None:
    """Record that a claimed occurrence was not called after all (its organizer was refused), and why."""
    await conn.execute(
        occurrences.update()
        .where(occurrences.c.key == key, occurrences.c.state == FIRED)
        .values(state=REJECTED, reason=reason, updated_at=now)
    )


async def counts(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    """Occurrences per source and state."""
    result = await conn.execute(
        select(occurrences.c.source, occurrences.c.state, func.count()).group_by(
            occurrences.c.source, occurrences.c.state
        )
    )
    found: dict[str, dict[str, int]] = {}
    for source, state, count in result:
        found.setdefault(source, {})[state] = count
    return found


async def note(conn: AsyncConnection, key: str, reason: str, now: datetime) -> None:
    """Set an occurrence's reason without changing its state (e.g. why a fired call failed)."""
    await conn.execute(
        occurrences.update().where(occurrences.c.key == key).values(reason=reason, updated_at=now)
    )


def _due(now: datetime, grace: timedelta, lead: timedelta) -> ColumnElement[bool]:
    """Scheduled, and its call time (start - lead) is in [now - grace, now]."""
    return and_(
        occurrences.c.state == SCHEDULED,
        occurrences.c.start_at <= now + lead,
        occurrences.c.start_at >= now + lead - grace,
    )


async def claim(
    conn: AsyncConnection, key: str, now: datetime, grace: timedelta, *, lead: timedelta = _NO_LEAD
) -> StoredOccurrence | None:
    """Mark one due occurrence fired and return it, or None when it is not due or another took it."""
    # One conditional UPDATE: of two nodes (or two tasks) racing, the database lets exactly one
    # match `state = 'scheduled'`; PostgreSQL re-checks the condition after waiting for the row lock.
    result = await conn.execute(
        occurrences.update()
        .where(occurrences.c.key == key, _due(now, grace, lead))
        .values(state=FIRED, fired_at=now, reason=None, updated_at=now)
        .returning(occurrences)
    )
    row = result.mappings().first()
    return None if row is None else _from_row(row)


async def claim_due(
    conn: AsyncConnection, now: datetime, grace: timedelta, *, lead: timedelta = _NO_LEAD
) -> list[StoredOccurrence]:
    """Mark every due occurrence fired, as `claim` does for one, and return them by start time."""
    result = await conn.execute(
        occurrences.update()
        .where(_due(now, grace, lead))
        .values(state=FIRED, fired_at=now, reason=None, updated_at=now)
        .returning(occurrences)
    )
    return sorted((_from_row(row) for row in result.mappings()), key=lambda o: (o.start, o.key))


async def mark_missed(
    conn: AsyncConnection, now: datetime, grace: timedelta, *, lead: timedelta = _NO_LEAD
) -> list[StoredOccurrence]:
    """Record as missed the scheduled occurrences whose call time is more than `grace` ago."""
    reason = f"not called: the server was not running between the call time and the grace period ({grace})"
    result = await conn.execute(
        occurrences.update()
        .where(occurrences.c.state == SCHEDULED, occurrences.c.start_at < now + lead - grace)
        .values(state=MISSED, reason=reason, updated_at=now)
        .returning(occurrences)
    )
    return sorted((_from_row(row) for row in result.mappings()), key=lambda o: (o.start, o.key))


async def scheduled_between(conn: AsyncConnection, start: datetime, end: datetime) -> list[StoredOccurrence]:
    """The scheduled occurrences starting in [start, end), by start time."""
    result = await conn.execute(
        select(occurrences)
        .where(
            occurrences.c.state == SCHEDULED, occurrences.c.start_at >= start, occurrences.c.start_at < end
        )
        .order_by(occurrences.c.start_at, occurrences.c.key)
    )
    return [_from_row(row) for row in result.mappings()]


async def listing(
    conn: AsyncConnection,
    *,
    states: Iterable[str] | None = None,
    source: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[StoredOccurrence]:
    """Occurrences by start time, optionally only some states, one source, or those starting from `since`."""
    stmt = select(occurrences).order_by(occurrences.c.start_at, occurrences.c.key)
    if states is not None:
        stmt = stmt.where(occurrences.c.state.in_(list(states)))
    if source is not None:
        stmt = stmt.where(occurrences.c.source == source)
    if since is not None:
        # A fired call stays visible for the meeting's duration, not just until its start.
        stmt = stmt.where(or_(occurrences.c.start_at >= since, occurrences.c.end_at > since))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_from_row(row) for row in (await conn.execute(stmt)).mappings()]
