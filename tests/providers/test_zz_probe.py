import subprocess, urllib.request, base64
from tests.caldav_servers import CalDAVServer

def curl(server, method, url, body="", depth=None, extra=()):
    args = ["curl", "-s", "-u", f"{server.username}:{server.password}", "-X", method, url, "-w", "\n[%{http_code}]", "-D", "-"]
    if depth is not None: args += ["-H", f"Depth: {depth}"]
    if body: args += ["--data-binary", body] + ([] if any("Content-Type" in h for h in extra) else ["-H", "Content-Type: application/xml"])
    for h in extra: args += ["-H", h]
    return subprocess.run(args, capture_output=True, text=True).stdout

PROPS = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CS="http://calendarserver.org/ns/"><D:prop><D:resourcetype/><D:displayname/><D:current-user-privilege-set/><C:supported-calendar-component-set/><CS:getctag/></D:prop></D:propfind>'
SYNC = '<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:"><D:sync-token>%s</D:sync-token><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>'
ICS = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260302T100000Z\r\nDTEND:20260302T110000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

def test_probe(caldav_server: CalDAVServer):
    s = caldav_server
    print("\n=====", s.name)
    if False:
        print(curl(s, "PROPFIND", s.home, PROPS, 1))
    cal = s.new_calendar()
    pass
    print("bad token:", curl(s, "REPORT", cal, SYNC % "http://example/bogus", 1))
    print("bad token2:", curl(s, "REPORT", cal, SYNC % "abc", 1))
    print("put1:", curl(s, "PUT", cal + "a.ics", ICS % "uid-a", extra=["If-None-Match: *", "Content-Type: text/calendar"]))
    print("put again:", curl(s, "PUT", cal + "a.ics", ICS % "uid-a", extra=["If-None-Match: *", "Content-Type: text/calendar"]))
    print("put same uid other href:", curl(s, "PUT", cal + "b.ics", ICS % "uid-a", extra=["If-None-Match: *", "Content-Type: text/calendar"]))
    print("update stale:", curl(s, "PUT", cal + "a.ics", ICS % "uid-a", extra=['If-Match: "nope"', "Content-Type: text/calendar"]))
    print("update missing:", curl(s, "PUT", cal + "zz.ics", ICS % "uid-z", extra=['If-Match: "nope"', "Content-Type: text/calendar"]))
    print("delete stale:", curl(s, "DELETE", cal + "a.ics", extra=['If-Match: "nope"']))
    print("delete missing:", curl(s, "DELETE", cal + "nope.ics"))
    print("multiget with missing:", curl(s, "REPORT", cal, '<?xml version="1.0"?><C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop><D:href>%sa.ics</D:href><D:href>%snope.ics</D:href></C:calendar-multiget>' % (cal[cal.index("/", 8):], cal[cal.index("/", 8):])))
    s.delete(cal)
    print("sync on deleted:", curl(s, "REPORT", cal, SYNC % "", 1))
    print("propfind on deleted:", curl(s, "PROPFIND", cal, PROPS, 0))
