"""Usage and billing: record what makes a day an active Pro day, and report it per account and month."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chimebot.clock import Clock
from chimebot.config import BillingConfig
from chimebot.errors import Invalid, NotFound
from chimebot.models import iso
from chimebot.store import Store
from chimebot.store import usage as q

log = logging.getLogger(__name__)

ActivityKind = Literal["scheduled_meeting", "large_meeting", "recording", "dial_in"]
ACTIVITY_KINDS: tuple[str, ...] = get_args(ActivityKind)

CENT = Decimal("0.01")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
CSV_FIELDS = (
    "user_id",
    "email",
    "license",
    "active_days",
    "active_day_dates",
    "charge",
    "capped",
    "currency",
)
# Spreadsheets run a cell that starts with one of these as a formula; addresses may start with them.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def money(amount: float | Decimal) -> Decimal:
    """A configured amount as Decimal cents (``str`` first, so 2.5 is exactly 2.50, not a binary float)."""
    return Decimal(str(amount)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class UserUsage:
    """One user's active Pro days in the month and what they cost."""

    user_id: str
    email: str
    license: str  # the user's license now, not during the month
    active_days: tuple[date, ...]
    charge: Decimal
    capped: bool  # the monthly cap lowered the charge (price * days > cap)

    @property
    def active_day_count(self) -> int:
        """How many active Pro days the user had."""
        return len(self.active_days)

    def to_json(self) -> dict[str, Any]:
        """The row as the API shows it."""
        return {
            "user_id": self.user_id,
            "email": self.email,
            "license": self.license,
            "active_days": [d.isoformat() for d in self.active_days],
            "active_day_count": self.active_day_count,
            "charge": str(self.charge),
            "capped": self.capped,
        }


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One local day with activity: how many users were active and what the day was charged."""

    day: date
    active_users: int
    charge: Decimal

    def to_json(self) -> dict[str, Any]:
        """The day as the API shows it."""
        return {"date": self.day.isoformat(), "active_users": self.active_users, "charge": str(self.charge)}


@dataclass(frozen=True, slots=True)
class MeetingHeld:
    """A meeting that started in the month."""

    id: str
    start: datetime
    type: str
    organizer: str  # the host's address
    duration_minutes: int | None  # None while the meeting has not ended
    attendee_count: int

    def to_json(self) -> dict[str, Any]:
        """The meeting as the API shows it."""
        return {
            "id": self.id,
            "start": iso(self.start),
            "type": self.type,
            "organizer": self.organizer,
            "duration_minutes": self.duration_minutes,
            "attendee_count": self.attendee_count,
        }


@dataclass(frozen=True, slots=True)
class UsageReport:
    """One account's usage in one calendar month of its time zone.

    JSON (``to_json``)::

        {"account": {"id", "name", "time_zone"}, "month": "2026-03",
         "period": {"start": "2026-03-01T08:00:00.000Z", "end": "2026-04-01T07:00:00.000Z"},
         "currency": "USD", "price_per_day": "3.00", "monthly_cap": "15.00",
         "registered_users": 12, "active_users": 2, "total": "21.00",
         "users": [{"user_id", "email", "license", "active_days": ["2026-03-02", …],
                    "active_day_count", "charge": "15.00", "capped": true}, …],   # by email
         "days": [{"date": "2026-03-02", "active_users": 2, "charge": "6.00"}, …],  # by date
         "meetings": [{"id", "start", "type", "organizer", "duration_minutes", "attendee_count"}, …],
         "messages_sent": 340}

    Money is a string with two decimals; instants are UTC (``…Z``); dates are local to the account.

    CSV (``to_csv``): a header row ``user_id,email,license,active_days,active_day_dates,charge,capped,
    currency``, one row per active user (as in ``users``; dates joined with ``;``, capped ``true`` or
    ``false``; an address starting with ``= + - @`` gets a leading ``'`` so spreadsheets never run it),
    then a total row whose user_id is ``total``, with the sum of active days and the total charge and
    empty email, license, dates and capped.
    """

    account_id: str
    account_name: str
    time_zone: str
    month: str
    start: datetime  # the first local midnight of the month, in UTC
    end: datetime  # the first local midnight of the next month, in UTC
    currency: str
    price_per_day: Decimal
    monthly_cap: Decimal
    registered_users: int
    users: tuple[UserUsage, ...]
    days: tuple[DayUsage, ...]
    meetings: tuple[MeetingHeld, ...]
    messages_sent: int

    @property
    def active_users(self) -> int:
        """How many users had at least one active Pro day."""
        return len(self.users)

    @property
    def total(self) -> Decimal:
        """What the account is charged for the month."""
        return sum((u.charge for u in self.users), Decimal("0.00"))

    def to_json(self) -> dict[str, Any]:
        """The report as the API shows it."""
        return {
            "account": {"id": self.account_id, "name": self.account_name, "time_zone": self.time_zone},
            "month": self.month,
            "period": {"start": iso(self.start), "end": iso(self.end)},
            "currency": self.currency,
            "price_per_day": str(self.price_per_day),
            "monthly_cap": str(self.monthly_cap),
            "registered_users": self.registered_users,
            "active_users": self.active_users,
            "total": str(self.total),
            "users": [u.to_json() for u in self.users],
            "days": [d.to_json() for d in self.days],
            "meetings": [m.to_json() for m in self.meetings],
            "messages_sent": self.messages_sent,
        }

    def to_csv(self) -> str:
        """The per-user charges as CSV, with a total row (see the class docstring)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for u in self.users:
            writer.writerow(
                {
                    "user_id": u.user_id,
                    "email": _cell(u.email),
                    "license": u.license,
                    "active_days": u.active_day_count,
                    "active_day_dates": ";".join(d.isoformat() for d in u.active_days),
                    "charge": str(u.charge),
                    "capped": "true" if u.capped else "false",
                    "currency": self.currency,
                }
            )
        writer.writerow(
            {
                "user_id": "total",
                "active_days": sum(u.active_day_count for u in self.users),
                "charge": str(self.total),
                "currency": self.currency,
            }
        )
        return out.getvalue()


def _cell(text: str) -> str:
    """Text for a CSV cell that a spreadsheet shows as text, never runs (OWASP's CSV injection advice)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def parse_month(month: str) -> tuple[int, int]:
    """Return (year, month) of a ``YYYY-MM`` string, or raise Invalid saying what is expected."""
    match = _MONTH.fullmatch(month) if isinstance(month, str) else None
    year, number = (int(match[1]), int(match[2])) if match else (0, 0)
    # Year 9999 is refused too: its month's end would fall outside what datetime can hold.
    if not (1 <= year <= 9998 and 1 <= number <= 12):
        raise Invalid(f"`month` must be a calendar month written YYYY-MM, such as 2026-03; got {month!r:.40}")
    return year, number


def local_midnights(year: int, month: int, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which each local day of the month starts, then the start of the next month."""
    first = date(year, month, 1)
    after = date(year + month // 12, month % 12 + 1, 1)
    days = [first + timedelta(days=i) for i in range((after - first).days + 1)]
    # A local midnight skipped by DST (fold=0) maps to the instant the clocks jumped: the day's start.
    return [datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC) for d in days]


def _zone(name: str, account_id: str) -> ZoneInfo:
    """The account's zone; an unknown name counts as UTC rather than making the report unavailable."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("account %s has an unknown time zone %r; its usage is counted in UTC", account_id, name)
        return ZoneInfo("UTC")


def _minutes(start: datetime, ended: datetime | None) -> int | None:
    """A meeting's length in whole minutes, rounded to the nearest; None while it runs."""
    if ended is None:
        return None
    return max(0, int((ended - start).total_seconds() + 30) // 60)


class Usage:
    """Records active-Pro-day activity and computes the monthly report."""

    def __init__(self, store: Store, clock: Clock, billing: BillingConfig) -> None:
        self._store = store
        self._clock = clock
        self._currency = billing.currency
        # Prices are rounded to cents once, so every per-day, per-user and total figure adds up exactly.
        self._price = money(billing.price_per_day)
        self._cap = money(billing.monthly_cap)

    async def record(
        self,
        conn: AsyncConnection,
        *,
        account_id: str,
        user_id: str,
        kind: ActivityKind,
        meeting_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record one activity inside the caller's transaction, with the user's license at that moment."""
        if kind not in ACTIVITY_KINDS:
            raise ValueError(f"unknown Pro activity kind {kind!r}")
        moment = self._clock.now() if at is None else at
        recorded = await q.insert_activity(
            conn, account_id=account_id, user_id=user_id, kind=kind, meeting_id=meeting_id, at=moment
        )
        if not recorded:
            raise NotFound(f"the account {account_id!r} has no user with id {user_id!r}")

    async def report(self, account_id: str, month: str | None = None) -> UsageReport:
        """The report of an account for a month given as ``YYYY-MM`` (default: the current month there)."""
        if month is not None:
            parse_month(month)  # a malformed month is refused before anything is read
        # One snapshot, so the users, days and totals all describe the same moment.
        async with self._store.snapshot() as conn:
            account = await q.account(conn, account_id)
            if account is None:
                raise NotFound(f"there is no account with id {account_id!r}")
            zone = _zone(account["time_zone"], account_id)
            if month is None:
                now = self._clock.now().astimezone(zone)
                month = f"{now.year:04d}-{now.month:02d}"
            year, number = parse_month(month)
            midnights = local_midnights(year, number, zone)
            start, end = midnights[0], midnights[-1]
            rows = await q.pro_days(conn, account_id, midnights)
            registered = await q.registered_users(conn, account_id, end)
            meetings = await q.meetings_held(conn, account_id, start, end)
            sent = await q.messages_sent(conn, account_id, start, end)
        users, days = self._charges(rows, date(year, number, 1))
        return UsageReport(
            account_id=account["id"],
            account_name=account["name"],
            time_zone=zone.key,
            month=month,
            start=start,
            end=end,
            currency=self._currency,
            price_per_day=self._price,
            monthly_cap=self._cap,
            registered_users=registered,
            users=users,
            days=days,
            meetings=tuple(
                MeetingHeld(
                    m["id"],
                    m["start_at"],
                    m["type"],
                    m["organizer"],
                    _minutes(m["start_at"], m["ended_at"]),
                    m["attendee_count"],
                )
                for m in meetings
            ),
            messages_sent=sent,
        )

    def _charges(
        self, rows: list[RowMapping], first: date
    ) -> tuple[tuple[UserUsage, ...], tuple[DayUsage, ...]]:
        """Price each user's active days in date order, each costing what is left under the cap."""
        by_user: dict[str, list[int]] = defaultdict(list)
        who: dict[str, tuple[str, str]] = {}
        for row in rows:
            by_user[row["user_id"]].append(row["day"])
            who[row["user_id"]] = (row["email"], row["license"])
        day_users: dict[int, int] = defaultdict(int)
        day_charge: dict[int, Decimal] = defaultdict(lambda: Decimal("0.00"))
        users = []
        for user_id, indexes in by_user.items():
            charged = Decimal("0.00")
            for i in sorted(indexes):
                cost = max(Decimal("0.00"), min(self._price, self._cap - charged))
                charged += cost
                day_users[i] += 1
                day_charge[i] += cost
            email, license = who[user_id]
            dates = tuple(first + timedelta(days=i) for i in sorted(indexes))
            capped = self._price * len(dates) > self._cap
            users.append(UserUsage(user_id, email, license, dates, charged, capped))
        users.sort(key=lambda u: (u.email, u.user_id))
        days = tuple(
            DayUsage(first + timedelta(days=i), day_users[i], day_charge[i]) for i in sorted(day_users)
        )
        return tuple(users), days
