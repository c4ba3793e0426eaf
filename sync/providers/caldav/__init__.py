"""CalDAV and iCloud: the protocol client (`provider`) and the iCalendar mapping it reads and writes (`ical`).

Kept as two modules so that worker processes reading large listings import only the mapping, not the HTTP
client (`ical.read_object` is what they run).
"""
