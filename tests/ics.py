"""iCalendar fixtures for tests, written the way calendar apps write them."""

from __future__ import annotations


def vevent(uid: str, *lines: str, component: str = "VEVENT") -> str:
    body = "".join(f"{line}\r\n" for line in lines)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Tests//EN\r\n"
        f"BEGIN:{component}\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{body}END:{component}\r\nEND:VCALENDAR\r\n"
    )


def michel(day: str = "20260302") -> str:
    """John's "Appointment with Dr. Michel", 13:00-14:00 Paris time, Dr. Michel invited."""
    return vevent(
        "michel@example", f"DTSTART;TZID=Europe/Paris:{day}T130000", f"DTEND;TZID=Europe/Paris:{day}T140000",
        "SUMMARY:Appointment with Dr. Michel", "ORGANIZER;CN=John:mailto:john@example.com",
        "ATTENDEE;CN=Dr. Michel;PARTSTAT=ACCEPTED:mailto:michel@example.com",
        "ATTENDEE;CN=John;PARTSTAT=ACCEPTED:mailto:john@example.com",
        "ATTENDEE;CUTYPE=ROOM;CN=Room 1:mailto:room1@example.com",
    )
