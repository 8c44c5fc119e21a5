"""calendars.invites on real-shaped exports: every expected instant is worked out by hand, in UTC.

DST in 2026: the US moves on 8 March and back on 1 November; Europe on 29 March and back on 25 October.
"""

import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from calendars.invites import InvalidCalendar, MeetingAddresses, interpret, read_imip

FIXTURES = Path(__file__).parent / "fixtures" / "calendars"
ADDRESSES = MeetingAddresses("chime.example.org")
START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
OUTLOOK_UID = (
    "040000008200E00074C5B7101A82E00800000000D0C3F1A5B2A6DC01000000000000000010000000"
    "A1B2C3D4E5F60718293A4B5C6D7E8F90"
)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def run(data: bytes | str, start: datetime = START, end: datetime = END, zone: str = "UTC"):
    data = read(data) if isinstance(data, str) else data
    return interpret(data, ADDRESSES, start=start, end=end, default_zone=zone)


def starts(result) -> list[datetime]:
    return [o.start for o in result.occurrences]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("mailto:meet@chime.example.org", (True, None)),
        ("MAILTO:Meet@Chime.Example.ORG", (True, None)),
        ("pin+1234567890@chime.example.org", (True, "1234567890")),
        ("mailto:PIN+42@CHIME.example.org", (True, "42")),
        ("pin+abc@chime.example.org", (False, None)),
        ("meeting@chime.example.org", (False, None)),
        ("meet@other.example.org", (False, None)),
        ("meet", (False, None)),
    ],
)
def test_meeting_addresses(address, expected):
    assert ADDRESSES.match(address) == expected


def test_google_export_with_x_wr_timezone_exdate_and_a_moved_instance():
    result = run("google_export.ics")
    weekly, standup = "5q2h7kq0c8l3vfn1m9r4t6bd0s@google.com", "1c7r9bq5jv0d3k8e2m6p4h1n7t@google.com"
    assert [(o.uid, o.start) for o in result.occurrences] == [
        (weekly, at(2026, 3, 17, 9)),  # Tue 10:00 CET; 24 March is an EXDATE
        (standup, at(2026, 3, 26, 8)),  # written 08:00Z = 09:00 CET
        (weekly, at(2026, 3, 31, 8)),  # 10:00 CEST, after the 29 March change
        (standup, at(2026, 4, 2, 7)),  # X-WR-TIMEZONE keeps it at 09:00 local, now CEST
        (weekly, at(2026, 4, 8, 13)),  # the 7 April instance, moved to Wed 15:00 CEST
        (weekly, at(2026, 4, 14, 8)),  # last before UNTIL
    ]
    assert result.problems == ()  # the dentist names no meeting address: not an occurrence, not a problem
    moved = result.occurrences[4]
    assert moved.key == f"{weekly}|2026-04-07T08:00:00Z"
    assert moved.recurrence_id == at(2026, 4, 7, 8)
    assert (moved.end, moved.summary, moved.sequence) == (at(2026, 4, 8, 13, 30), "Weekly sync (moved)", 1)
    first = result.occurrences[0]
    assert first.key == f"{weekly}|2026-03-17T09:00:00Z"
    assert (first.organizer, first.attendees, first.pin) == (
        "alice@example.com",
        ("alice@example.com", "bob@example.net"),
        None,
    )
    assert result.occurrences[1].pin == "1234567890"
    assert result.occurrences[1].attendees == ("alice@example.com",)


OUTLOOK_STARTS = [at(2026, 3, 2, 17), at(2026, 3, 9, 16), at(2026, 3, 16, 16)]  # Mon 09:00 PST, then PDT


def test_outlook_invitation_with_a_windows_zone():
    result = run("outlook_request.ics")
    assert starts(result) == OUTLOOK_STARTS
    assert [o.end - o.start for o in result.occurrences] == [timedelta(minutes=30)] * 3
    second = result.occurrences[1]
    assert second.key == f"{OUTLOOK_UID}|2026-03-09T16:00:00Z"
    assert second.organizer == "carol.jones@contoso.example"
    # Meet@Chime.Example.ORG matched whatever its case; MAILTO: in capitals is stripped too.
    assert second.attendees == ("dan.lee@contoso.example", "room412@contoso.example")
    assert (second.summary, second.sequence, second.cancelled) == ("Planning", 0, False)


def test_a_windows_zone_without_vtimezone_uses_the_cldr_mapping():
    data = re.sub(rb"BEGIN:VTIMEZONE.*?END:VTIMEZONE\r\n", b"", read("outlook_request.ics"), flags=re.S)
    assert b"VTIMEZONE" not in data
    assert starts(run(data)) == OUTLOOK_STARTS  # Pacific Standard Time -> America/Los_Angeles


def test_each_calendar_keeps_its_own_customized_time_zone():
    # icalendar caches VTIMEZONEs process-wide by TZID; Outlook reuses "Customized Time Zone" for any
    # zone the user edited, so the second calendar must not inherit the first one's rules.
    pacific = read("outlook_request.ics").replace(b"Pacific Standard Time", b"Customized Time Zone")
    eastern = pacific.replace(b"-0800", b"-0500").replace(b"-0700", b"-0400")
    assert starts(run(pacific)) == OUTLOOK_STARTS
    assert starts(run(eastern)) == [at(2026, 3, 2, 14), at(2026, 3, 9, 13), at(2026, 3, 16, 13)]
    assert starts(run(pacific)) == OUTLOOK_STARTS


def test_the_window_holds_occurrences_that_start_in_it_end_excluded():
    result = run("outlook_request.ics", start=at(2026, 3, 9, 16), end=at(2026, 3, 16, 16))
    assert starts(result) == [at(2026, 3, 9, 16)]
    assert starts(run("outlook_request.ics", start=at(2026, 3, 2, 17, 10))) == OUTLOOK_STARTS[1:]


def test_apple_event_with_rdate_and_icloud_principals():
    result = run("apple_event.ics")
    assert starts(result) == [
        at(2026, 3, 5, 15),  # Thu 10:00 EST
        at(2026, 3, 12, 14),  # 10:00 EDT after 8 March
        at(2026, 3, 19, 14),
        at(2026, 3, 23, 19),  # the RDATE, Mon 15:00 EDT, with the series' 30 minutes
    ]
    assert result.occurrences[3].end == at(2026, 3, 23, 19, 30)
    assert result.occurrences[3].key == "6F1A3C2E-8B4D-4E7A-9C15-2D3E4F5A6B7C|2026-03-23T19:00:00Z"
    # The organizer is an iCloud principal URL; its address is in the EMAIL parameter.
    assert result.occurrences[0].organizer == "erin@icloud.example"
    assert result.occurrences[0].attendees == ("erin@icloud.example", "frank@example.net")


def test_thunderbird_floating_times_take_the_default_zone():
    berlin = run("thunderbird_event.ics", zone="Europe/Berlin")
    assert [(o.summary, o.start) for o in berlin.occurrences] == [
        ("Quick call", at(2026, 10, 20, 12)),  # written in UTC: no zone applies
        ("Retro", at(2026, 10, 22, 12)),  # 14:00 CEST
        ("Retro", at(2026, 10, 29, 13)),  # 14:00 CET after 25 October
    ]
    assert berlin.occurrences[0].key == "7e6d5c4b-3a29-4180-b7f6-e5d4c3b2a190"
    assert berlin.occurrences[1].pin == "9876543210"
    assert berlin.occurrences[1].organizer == "gina@example.org"
    new_york = run("thunderbird_event.ics", zone="America/New_York")
    assert starts(new_york) == [at(2026, 10, 20, 12), at(2026, 10, 22, 18), at(2026, 10, 29, 18)]  # EDT
    # A floating UNTIL is local time too: 14:00 in New York is 18:00Z, so the 29th is still in.
    until = read("thunderbird_event.ics").replace(b"COUNT=2", b"UNTIL=20261029T140000")
    assert starts(run(until, zone="America/New_York")) == starts(new_york)


def test_nextcloud_instance_cancelled_by_an_override():
    result = run("nextcloud_cancelled_instance.ics")
    assert [(o.start, o.cancelled) for o in result.occurrences] == [
        (at(2026, 10, 19, 9), False),  # Mon 11:00 CEST
        (at(2026, 10, 26, 10), True),  # 11:00 CET, the day after the change back
        (at(2026, 11, 2, 10), False),
    ]
    uid = "2f9b5e1c-8d4a-4c3b-a7e6-1b0c9d8e7f6a"
    assert result.occurrences[1].key == f"{uid}|2026-10-26T10:00:00Z"
    assert result.occurrences[1].attendees == ("julia@cloud.example.org",)
    whole = read("nextcloud_cancelled_instance.ics").replace(b"STATUS:CONFIRMED", b"STATUS:CANCELLED")
    assert [o.cancelled for o in run(whole).occurrences] == [True, True, True]  # the master cancels all


def test_the_meeting_address_is_checked_on_every_instance():
    result = run("override_changes_attendees.ics")
    team, one_on_one = (
        "20260301T101500Z-4711-1000-1-7@workstation",
        "20260301T101800Z-4711-1000-1-8@workstation",
    )
    assert [(o.uid, o.start, o.cancelled) for o in result.occurrences] == [
        (team, at(2026, 3, 4, 15), False),
        # 11 March: the override dropped meet@, so no call. 5 March: the 1:1 never named one.
        (one_on_one, at(2026, 3, 12, 16), False),  # this override added pin+…@
        (team, at(2026, 3, 18, 15), True),  # cancelled; reported although it lists no attendees
        (team, at(2026, 3, 25, 15), False),
    ]
    assert result.occurrences[1].pin == "5550001234"
    assert result.occurrences[1].summary == "1:1 (remote)"
    assert (result.occurrences[2].attendees, result.occurrences[2].pin) == ((), None)


def test_all_day_events_are_ignored():
    result = run("all_day.ics")
    assert (result.occurrences, result.problems) == ((), ())


def test_malformed_events_are_reported_and_do_not_hide_the_good_one():
    result = run("malformed.ics")
    assert [o.key for o in result.occurrences] == ["good-1@example.org"]
    expected = {
        "broken-start@example.org": "DTSTART",
        "unknown-zone@example.org": "'Mars/Olympus_Mons'",
        "bad-rule@example.org": "RRULE",
        "no-start@example.org": "no DTSTART",
        "backwards@example.org": "DTEND is before DTSTART",
        # The whole series goes: without its override we would call the instance it moved.
        "broken-override@example.org": "DTSTART",
        "VEVENT #9": "no UID",
    }
    assert len(result.problems) == len(expected)
    for prefix, fragment in expected.items():
        assert any(p.startswith(prefix) and fragment in p for p in result.problems), (prefix, result.problems)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not a calendar",
        read("google_export.ics")[:900],  # cut off before END:VCALENDAR
        b"BEGIN:VEVENT\r\nUID:x\r\nDTSTART:20260310T090000Z\r\nEND:VEVENT\r\n",
    ],
)
def test_unreadable_objects_raise_invalid_calendar(data):
    with pytest.raises(InvalidCalendar) as raised:
        run(data)
    assert raised.value.reason


def test_the_window_must_be_aware():
    with pytest.raises(ValueError, match="aware"):
        run("outlook_request.ics", start=datetime(2026, 3, 1))  # naive


def test_imip_request_from_google():
    invite = read_imip(read("imip_request.eml"), ADDRESSES, start=START, end=END)
    uid = "3v8m2k1q9p0r7s6t5u4w3x2y1z@google.com"
    assert (invite.method, invite.uid, invite.organizer, invite.sequence) == (
        "REQUEST",
        uid,
        "alice@example.com",
        0,
    )
    (occurrence,) = invite.interpretation.occurrences
    assert (occurrence.key, occurrence.recurrence_id) == (uid, None)  # a single event: the UID alone
    assert (occurrence.start, occurrence.end) == (at(2026, 3, 10, 13), at(2026, 3, 10, 14))
    assert (occurrence.pin, occurrence.cancelled) == ("1234567890", False)
    assert occurrence.attendees == ("alice@example.com", "bob@example.net")


def test_imip_cancel_of_one_outlook_instance():
    invite = read_imip(read("imip_cancel.eml"), ADDRESSES, start=START, end=END)
    assert (invite.method, invite.organizer, invite.sequence) == ("CANCEL", "carol.jones@contoso.example", 2)
    (occurrence,) = invite.interpretation.occurrences
    # W. Europe Standard Time, 10:00 on 29 October: CET, four days after the change back.
    assert occurrence.key == f"{invite.uid}|2026-10-29T09:00:00Z"
    assert (occurrence.start, occurrence.cancelled) == (at(2026, 10, 29, 9), True)


def test_imip_reads_an_ics_attachment():
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "carol@contoso.example",
        "meet@chime.example.org",
        "Hi",
    )
    message.set_content("The invitation is attached.")
    message.add_attachment(
        read("outlook_request.ics"), maintype="application", subtype="octet-stream", filename="Planning.ics"
    )
    invite = read_imip(message.as_bytes(), ADDRESSES, start=START, end=END)
    assert invite.method == "REQUEST"  # from METHOD inside: the attachment has no method= parameter
    assert starts(invite.interpretation) == OUTLOOK_STARTS


def test_imip_without_an_invitation_is_refused():
    message = EmailMessage()
    message.set_content("no calendar here")
    with pytest.raises(InvalidCalendar, match=r"text/calendar"):
        read_imip(message.as_bytes(), ADDRESSES, start=START, end=END)
    reply = read("imip_request.eml").replace(b"method=REQUEST", b"method=REPLY")
    reply = reply.replace(b"METHOD:REQUEST", b"METHOD:REPLY")
    with pytest.raises(InvalidCalendar, match="REPLY"):
        read_imip(reply, ADDRESSES, start=START, end=END)
