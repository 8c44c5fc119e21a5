"""Which occurrences of which calendar events need a call: iCalendar and iMIP in, plain values out.

SPEC §5 "Interpretation". The input is the raw bytes of a calendar object (or a whole feed) or of an
iMIP mail; the output is frozen dataclasses. Nothing here knows chimebot: the meeting addresses, the
look-ahead window and the zone for floating times are parameters. Parsing is icalendar 7, recurrence is
recurring-ical-events, and Google's X-WR-TIMEZONE is x-wr-timezone; this module adds the rules that
decide a call and keeps one bad event from hiding the others.
"""

from __future__ import annotations

import email
import email.policy
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from email.message import Message

import icalendar
import recurring_ical_events
import x_wr_timezone

__all__ = [
    "ImipInvite",
    "Interpretation",
    "InvalidCalendar",
    "MeetingAddresses",
    "MeetingOccurrence",
    "interpret",
    "read_imip",
]

_PIN = re.compile(r"pin\+(\d+)")
_MAILTO = re.compile(r"^\s*mailto:", re.IGNORECASE)
# A broken value in one of these decides when (or whether) there is a call, so the event is skipped;
# a broken DESCRIPTION or X- property is not worth losing a meeting over.
_ESSENTIAL = frozenset(
    {"UID", "DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID", "SEQUENCE"}
    | {"STATUS", "ATTENDEE", "ORGANIZER"}
)


# Instances of one event read in the look-ahead window: an hourly series for 30 days is 720.
MAX_INSTANCES = 1000


class InvalidCalendar(ValueError):
    """Data that cannot be read as a calendar (or an iMIP invitation) at all; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MeetingAddresses:
    """The generated addresses `meet@<domain>` and `pin+<meeting id>@<domain>` that ask for a call."""

    domain: str

    def match(self, address: str) -> tuple[bool, str | None]:
        """Whether `address` (with or without `mailto:`) is a meeting address, and its pin id if any."""
        local, at, domain = _MAILTO.sub("", address).strip().lower().rpartition("@")
        if not at or domain != self.domain.strip().lower():
            return False, None
        if local == "meet":
            return True, None
        pin = _PIN.fullmatch(local)
        return (True, pin.group(1)) if pin else (False, None)


@dataclass(frozen=True)
class MeetingOccurrence:
    """One occurrence of an event that names a meeting address (or a cancellation of one)."""

    key: str
    uid: str
    recurrence_id: datetime | None
    start: datetime
    end: datetime
    summary: str
    organizer: str | None
    attendees: tuple[str, ...]
    pin: str | None
    sequence: int  # the object's highest SEQUENCE: recurring-ical-events gives it to every instance
    cancelled: bool


@dataclass(frozen=True)
class Interpretation:
    """The occurrences in the window, by start time, and what was skipped as malformed."""

    occurrences: tuple[MeetingOccurrence, ...]
    problems: tuple[str, ...]
    uids: tuple[str, ...] = ()  # every UID the data holds, with or without a meeting address


@dataclass(frozen=True)
class ImipInvite:
    """An iMIP REQUEST or CANCEL: who sent which UID at which SEQUENCE, and what it means."""

    method: str
    uid: str
    organizer: str | None
    sequence: int
    interpretation: Interpretation
    # Whether the whole event came (a master), not only some instances: then it replaces what was known.
    complete: bool
    data: str  # the iCalendar text, to read again later for instances beyond the window


def interpret(
    data: bytes,
    addresses: MeetingAddresses,
    *,
    start: datetime,
    end: datetime,
    default_zone: str = "UTC",
) -> Interpretation:
    """The occurrences starting in [start, end) that need a call, from a calendar object or feed."""
    calendar = _parse(data)
    cancel = str(calendar.get("METHOD", "")).strip().upper() == "CANCEL"
    return _interpret(calendar, addresses, start, end, default_zone, cancel=cancel)


def read_imip(
    message: bytes,
    addresses: MeetingAddresses,
    *,
    start: datetime,
    end: datetime,
    default_zone: str = "UTC",
) -> ImipInvite:
    """Read the iTIP REQUEST or CANCEL carried by a MIME message (text/calendar part or .ics file)."""
    part = _calendar_part(email.message_from_bytes(message, policy=email.policy.default))
    if part is None:
        raise InvalidCalendar("the message has no text/calendar part and no .ics attachment")
    raw = _part_bytes(part)
    calendar = _parse(raw)
    # The METHOD inside the calendar is the iTIP method (RFC 5546); the MIME parameter must repeat it
    # (RFC 6047) but is only a fallback for senders that leave the property out.
    method = str(calendar.get("METHOD") or part.get_param("method") or "").strip().upper()
    if method not in ("REQUEST", "CANCEL"):
        raise InvalidCalendar(f"iTIP method {method or '(none)'} is not REQUEST or CANCEL")
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    uids = {str(event.get("UID", "")).strip() for event in events}
    if not events:
        raise InvalidCalendar("the invitation has no VEVENT")
    if len(uids) != 1 or "" in uids:
        raise InvalidCalendar("an iMIP invitation must carry exactly one UID")
    return ImipInvite(
        method=method,
        uid=uids.pop(),
        organizer=_first_organizer(events),
        sequence=max(_sequence(e) for e in events),
        complete=any("RECURRENCE-ID" not in e for e in events),
        data=raw.decode("utf-8", "replace"),
        interpretation=_interpret(calendar, addresses, start, end, default_zone, cancel=method == "CANCEL"),
    )


def _parse(data: bytes) -> icalendar.Calendar:
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except Exception as exc:  # untrusted bytes: whatever the parser raises means "not a calendar"
        raise InvalidCalendar(f"not an iCalendar object: {exc}") from exc
    if calendar.name != "VCALENDAR":
        raise InvalidCalendar(f"expected a VCALENDAR, found {calendar.name or 'nothing'}")
    if str(calendar.get("CALSCALE", "GREGORIAN")).upper() != "GREGORIAN":
        raise InvalidCalendar(f"calendar scale {calendar['CALSCALE']} is not supported")
    return calendar


def _interpret(
    calendar: icalendar.Calendar,
    addresses: MeetingAddresses,
    start: datetime,
    end: datetime,
    default_zone: str,
    *,
    cancel: bool,
) -> Interpretation:
    start, end = _aware_utc(start, "start"), _aware_utc(end, "end")
    floating = _iana(default_zone)
    if floating is None:
        raise ValueError(f"unknown time zone {default_zone!r}")
    problems: list[str] = []
    wall_zone = _iana(str(calendar.get("X-WR-TIMEZONE", "")))
    if "X-WR-TIMEZONE" in calendar and wall_zone is None:
        problems.append(f"unknown X-WR-TIMEZONE {str(calendar['X-WR-TIMEZONE'])!r} ignored")
    own_zones = _own_zones(calendar)
    groups: dict[str, list[icalendar.Event]] = {}
    defects: dict[str, list[str]] = {}
    for number, event in enumerate((c for c in calendar.subcomponents if c.name == "VEVENT"), 1):
        uid = str(event.get("UID", "")).strip()
        if not uid:
            problems.append(f"VEVENT #{number}: no UID")
            continue
        groups.setdefault(uid, []).append(event)
        defect = _unreadable(event)
        if defect is None:
            _apply_zones(event, own_zones)
            defect = _defect(event)
        if defect:
            defects.setdefault(uid, []).append(defect)
    occurrences: list[MeetingOccurrence] = []
    for uid, events in groups.items():
        # The unit that is skipped is the whole UID: without a broken override we would call the
        # instance it moved or cancelled, and without a broken master its overrides mean little.
        if uid in defects:
            problems.append(f"{uid}: {'; '.join(defects[uid])}")
            continue
        try:  # list() first: a series that fails half-way contributes nothing, not half its instances
            found = list(_occurrences(uid, events, addresses, start, end, wall_zone, floating, cancel))
        except Exception as exc:  # a library error on one object must not stop the rest (SPEC §5)
            problems.append(f"{uid}: {exc}")
            continue
        if len(found) > MAX_INSTANCES:
            problems.append(
                f"{uid}: {len(found)} instances in the window; only the first {MAX_INSTANCES} are called"
            )
            found = found[:MAX_INSTANCES]
        occurrences.extend(found)
    occurrences.sort(key=lambda o: (o.start, o.key))
    return Interpretation(tuple(occurrences), tuple(problems), tuple(groups))


def _occurrences(
    uid: str,
    events: list[icalendar.Event],
    addresses: MeetingAddresses,
    start: datetime,
    end: datetime,
    wall_zone: tzinfo | None,
    floating: tzinfo,
    cancel: bool,
) -> Iterator[MeetingOccurrence]:
    single = icalendar.Calendar()
    for event in events:
        single.add_component(event)
    if wall_zone is not None:
        single = x_wr_timezone.to_standard(single, timezone=wall_zone)
    for event in single.subcomponents:
        _localize_floating(event, floating)
    recurring = any(name in event for event in events for name in ("RRULE", "RDATE", "RECURRENCE-ID"))
    # A cancelled instance is reported even when its override lost the attendees, as long as the
    # object invited a meeting address somewhere: the scheduler must hear about the cancellation.
    invited = [m for event in events for a in _attendees(event) if (m := addresses.match(a))[0]]
    object_pin = next((pin for _, pin in invited if pin), None)
    organizer = _first_organizer(events)
    for component in recurring_ical_events.of(single).between(start, end):
        begins = component["DTSTART"].dt
        if not isinstance(begins, datetime):
            continue  # all-day events get no call
        begins = begins.astimezone(UTC)
        if not start <= begins < end:
            continue  # the library also returns events still running at `start`
        cancelled = cancel or str(component.get("STATUS", "")).strip().upper() == "CANCELLED"
        everyone = _attendees(component)
        matches = [addresses.match(a) for a in everyone]
        if not any(ok for ok, _ in matches) and not (cancelled and invited):
            continue
        recurrence_id = _recurrence_id(component, floating) if recurring else None
        ends = component["DTEND"].dt
        yield MeetingOccurrence(
            key=uid if recurrence_id is None else f"{uid}|{recurrence_id:%Y-%m-%dT%H:%M:%SZ}",
            uid=uid,
            recurrence_id=recurrence_id,
            start=begins,
            end=ends.astimezone(UTC) if isinstance(ends, datetime) else begins,
            summary=str(component.get("SUMMARY", "")),
            organizer=_organizer(component) or organizer,
            attendees=tuple(a for a, (ok, _) in zip(everyone, matches, strict=True) if not ok),
            pin=next((pin for ok, pin in matches if ok and pin), None) or object_pin,
            sequence=_sequence(component),
            cancelled=cancelled,
        )


def _recurrence_id(component: icalendar.Event, floating: tzinfo) -> datetime:
    value = component["RECURRENCE-ID"].dt
    if not isinstance(value, datetime):  # a timed instance of an all-day series
        value = datetime(value.year, value.month, value.day, tzinfo=floating)
    return value.astimezone(UTC)


def _unreadable(event: icalendar.Event) -> str | None:
    # icalendar 7 keeps a value it could not parse as vBroken and lists it in `errors` (a line it
    # could not split at all has no name): such an event would otherwise fail later, or worse, not.
    found = [
        f"{name or 'a line'}: {message}" for name, message in event.errors if name in _ESSENTIAL or not name
    ]
    return f"unreadable {'; '.join(found)}" if found else None


def _defect(event: icalendar.Event) -> str | None:
    if "DTSTART" not in event:
        return "no DTSTART"
    for value, tzid in _date_values(event):
        # icalendar gives an unknown TZID back as a naive (floating) time; never guess its zone.
        if tzid and any(t.tzinfo is None for t in _times(value.dt) if isinstance(t, datetime)):
            return f"unknown time zone {tzid!r}"
    rules = event.get("RRULE")
    for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
        # A meeting every minute is a mistake or an attack; either way nobody should be called for it.
        if str((rule.get("FREQ") or [""])[0]).upper() in ("SECONDLY", "MINUTELY"):
            return "meetings repeating more often than hourly are not called"
    recurrence_id = event.get("RECURRENCE-ID")
    if recurrence_id is not None and str(recurrence_id.params.get("RANGE", "")).upper() == "THISANDFUTURE":
        return "RECURRENCE-ID;RANGE=THISANDFUTURE is not supported"
    begins, ends = event["DTSTART"].dt, event.get("DTEND")
    if (
        ends is not None
        and type(begins) is type(ends.dt)
        and (not isinstance(begins, datetime) or (begins.tzinfo is None) == (ends.dt.tzinfo is None))
        and ends.dt < begins
    ):
        return "DTEND is before DTSTART"
    return None


def _own_zones(calendar: icalendar.Calendar) -> dict[str, tzinfo]:
    # icalendar caches a VTIMEZONE process-wide under its TZID, first definition wins, and resolves
    # TZIDs through that cache: two Outlook calendars that both say "Customized Time Zone" would share
    # the first one's rules. So a TZID that is not an IANA name is rebuilt from this object's own
    # VTIMEZONE (IANA names keep tzdata, which icalendar prefers over an embedded definition too).
    zones: dict[str, tzinfo] = {}
    for component in calendar.subcomponents:
        tzid = str(component.get("TZID", "")) if component.name == "VTIMEZONE" else ""
        if tzid and _iana(tzid) is None:
            try:
                zones[tzid] = component.to_tz(lookup_tzid=False)
            except Exception:  # noqa: S112 - a broken VTIMEZONE: icalendar's own resolution stands
                continue
    return zones


def _apply_zones(event: icalendar.Event, zones: dict[str, tzinfo]) -> None:
    for value, tzid in _date_values(event):
        if tzid in zones:
            value.dt = _map_times(value.dt, lambda t, zone=zones[tzid]: t.replace(tzinfo=zone))


def _localize_floating(event: icalendar.Event, zone: tzinfo) -> None:
    for value, _ in _date_values(event):
        value.dt = _map_times(value.dt, lambda t: t if t.tzinfo else t.replace(tzinfo=zone))
    # A floating UNTIL next to a zoned DTSTART is invalid (RFC 5545 wants UTC); read it in the event's
    # own zone, as its author did, rather than as UTC as the recurrence library would.
    begins = event["DTSTART"].dt
    until_zone = begins.tzinfo if isinstance(begins, datetime) and begins.tzinfo else zone
    rules = event.get("RRULE", [])
    for rule in rules if isinstance(rules, list) else [rules]:
        if "UNTIL" in rule:
            rule["UNTIL"] = [_map_times(until, lambda t: _in_zone(t, until_zone)) for until in rule["UNTIL"]]


def _in_zone(moment: datetime, zone: tzinfo) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def _date_values(event: icalendar.Event) -> Iterator[tuple[icalendar.vDDDTypes, str | None]]:
    """Every date-time value that places the event, with the TZID it was written with."""
    for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        value = event.get(name)
        if value is not None:
            yield value, value.params.get("TZID")
    for name in ("EXDATE", "RDATE"):
        lists = event.get(name, [])
        for values in lists if isinstance(lists, list) else [lists]:
            for value in values.dts:
                yield value, values.params.get("TZID")


def _times(value: object) -> tuple[object, ...]:
    return value if isinstance(value, tuple) else (value,)  # an RDATE PERIOD is (start, end|duration)


def _map_times(value: object, change) -> object:
    changed = tuple(change(part) if isinstance(part, datetime) else part for part in _times(value))
    return changed if isinstance(value, tuple) else changed[0]


def _attendees(component: icalendar.Event) -> list[str]:
    values = component.get("ATTENDEE", [])
    found = [_address(value) for value in (values if isinstance(values, list) else [values])]
    return list(dict.fromkeys(address for address in found if address))


def _first_organizer(events: list[icalendar.Event]) -> str | None:
    """The master's ORGANIZER, else an override's."""
    for event in sorted(events, key=lambda event: "RECURRENCE-ID" in event):
        if organizer := _organizer(event):
            return organizer
    return None


def _organizer(component: icalendar.Event) -> str | None:
    value = component.get("ORGANIZER")
    return _address(value) if value is not None else None


def _address(value: icalendar.vCalAddress) -> str | None:
    address = _MAILTO.sub("", str(value)).strip().lower()
    if "@" not in address:
        # iCloud writes principals (urn:uuid:…, /123/principal/) and gives the mail in EMAIL (RFC 7986).
        address = str(value.params.get("EMAIL", "")).strip().lower()
    return address or None


def _sequence(component: icalendar.Event) -> int:
    try:
        return max(int(component.get("SEQUENCE", 0)), 0)
    except (TypeError, ValueError):
        return 0


def _iana(name: str) -> tzinfo | None:
    try:
        return zoneinfo.ZoneInfo(name.strip().strip("/")) if name.strip() else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def _aware_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
    return moment.astimezone(UTC)


def _calendar_part(message: Message) -> Message | None:
    """The text/calendar part with a method= parameter, else any calendar part or .ics attachment."""
    candidates = [
        part
        for part in message.walk()
        if not part.is_multipart()
        and (
            part.get_content_type() in ("text/calendar", "application/ics")
            or (part.get_filename() or "").lower().endswith(".ics")
        )
    ]
    with_method = [p for p in candidates if p.get_content_type() == "text/calendar" and p.get_param("method")]
    return (with_method or candidates or [None])[0]


def _part_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True) or b""
    charset = (part.get_content_charset() or "utf-8").lower()
    if charset not in ("utf-8", "utf8", "us-ascii"):
        try:
            return payload.decode(charset).encode("utf-8")
        except (LookupError, UnicodeDecodeError):
            return payload  # an unknown charset: let the parser try UTF-8
    return payload
