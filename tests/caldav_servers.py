"""Real CalDAV servers for the tests: Radicale and Xandikos, each a subprocess on a free loopback port.

One server of each kind per test session (starting one costs well under a second); every test takes a
fresh calendar collection with `server.new_calendar()`, so tests never see each other's events.

Radicale checks passwords (plain htpasswd, no auth delay), so a wrong password gives 401 as iCloud does for a
revoked app-specific password. Its rights file also shares two calendars with the account at lower access:
`shared-read` (read only) and `shared-freebusy` (free/busy only), and so is every `freebusy-*` calendar in the
account's home, which a colleague's account (`COLLEAGUE`) fills: `server.freebusy_calendar()`. Xandikos runs
without authentication: its own `--htpasswd` requires TLS with a self-signed certificate, which the provider
would have to be told to trust, so wrong-credential and access-level tests run on Radicale only
(`server.checks_passwords`).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from croco.embedded_caldav import free_port, wait_for_http

USER, PASSWORD = "john", "app-specific-pass"
SHARED = {"shared-read": "r", "shared-freebusy": "f"}
"""Calendars in the account's home that Radicale grants it only these permissions on."""
COLLEAGUE = ("colleague", "colleague-pass")
"""A second Radicale account: it writes the calendars the account may only read the free/busy time of."""


@dataclass(frozen=True)
class CalDAVServer:
    """A running server and the one account on it; `url` is what a user would type into a form."""

    name: str
    url: str
    username: str
    password: str
    home: str  # the account's calendar home: new collections go there
    checks_passwords: bool

    def new_calendar(self, name: str | None = None) -> str:
        """Create an empty calendar collection (MKCALENDAR) and return its URL."""
        name = name or f"cal-{uuid.uuid4().hex[:10]}"
        url = f"{self.home}{name}/"
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"<D:set><D:prop><D:displayname>{name}</D:displayname></D:prop></D:set></C:mkcalendar>"
        )
        self.request("MKCALENDAR", url, body, "application/xml")
        return url

    def freebusy_calendar(self) -> tuple[str, CalDAVServer]:
        """A new calendar in the account's home that the account may read the free/busy time of only (Radicale's
        `f` right), and the server as the colleague who may write events into it."""
        assert self.name == "radicale", "only Radicale grants free/busy-only access"
        colleague = dataclasses.replace(self, username=COLLEAGUE[0], password=COLLEAGUE[1])
        return colleague.new_calendar(f"freebusy-{uuid.uuid4().hex[:10]}"), colleague

    def put(self, calendar_url: str, name: str, ics: str) -> str:
        """Store a raw iCalendar object as `name`, as another client would; returns its href (path)."""
        url = f"{calendar_url}{name}"
        self.request("PUT", url, ics, "text/calendar; charset=utf-8")
        return urllib.parse.urlsplit(url).path

    def delete(self, url: str) -> None:
        """Delete an object or a whole collection behind the provider's back."""
        self.request("DELETE", url)

    def request(self, method: str, url: str, body: str = "", content_type: str | None = None) -> int:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        headers = {"Authorization": f"Basic {token}"} | ({"Content-Type": content_type} if content_type else {})
        request = urllib.request.Request(url, data=body.encode("utf-8") or None, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)


CalDAVAccount = CalDAVServer  # the name tests/integration/test_caldav_provider.py imports


@contextmanager
def _serve(command: list[str], url: str) -> Iterator[None]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(url, process=process)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def _radicale_files(folder: Path) -> list[str]:
    """Users, rights and the two shared calendars (created on disk: the account may not MKCALENDAR them)."""
    (folder / "users").write_text(f"{USER}:{PASSWORD}\n{COLLEAGUE[0]}:{COLLEAGUE[1]}\n")
    rules = [("root", ".+", "", "R"), *((name, USER, f"{USER}/{name}(/.*)?", p) for name, p in SHARED.items()),
             ("colleague", COLLEAGUE[0], f"{USER}/freebusy-[^/]+(/.*)?", "RrWw"),
             ("freebusy", USER, f"{USER}/freebusy-[^/]+(/.*)?", "f"), ("owner", ".+", "{user}(/.*)?", "RrWw")]
    (folder / "rights").write_text(
        "".join(f"[{name}]\nuser: {user}\ncollection: {collection}\npermissions: {p}\n\n"
                for name, user, collection, p in rules)
    )
    for name in SHARED:
        collection = folder / "collections" / "collection-root" / USER / name
        collection.mkdir(parents=True)
        (collection / ".Radicale.props").write_text(json.dumps({"tag": "VCALENDAR", "D:displayname": name}))
    return [
        "--storage-filesystem-folder", str(folder / "collections"),
        "--auth-type", "htpasswd", "--auth-htpasswd-filename", str(folder / "users"),
        "--auth-htpasswd-encryption", "plain", "--auth-delay", "0",
        "--rights-type", "from_file", "--rights-file", str(folder / "rights"),
    ]


def _radicale(folder: Path) -> Iterator[CalDAVServer]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [
        sys.executable, "-m", "radicale", "--config", "", "--server-hosts", f"127.0.0.1:{port}",
        "--logging-level", "warning", *_radicale_files(folder),
    ]
    with _serve(command, url):
        yield CalDAVServer("radicale", url, USER, PASSWORD, f"{url}{USER}/", checks_passwords=True)


@pytest.fixture(scope="session")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    yield from _radicale(tmp_path_factory.mktemp("radicale"))


@pytest.fixture
def own_radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    """A Radicale of the test's own, for a test that connects the whole account and reads what it lists (the
    session's server holds every other test's calendars)."""
    yield from _radicale(tmp_path_factory.mktemp("own-radicale"))


@pytest.fixture(scope="session")
def xandikos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    folder, port = tmp_path_factory.mktemp("xandikos"), free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [
        sys.executable, "-m", "xandikos", "serve", "--directory", str(folder / "data"), "--autocreate",
        "--state-dir", str(folder / "state"), "--listen-address", "127.0.0.1", "--port", str(port),
        "--current-user-principal", f"/{USER}/", "--no-detect-systemd",
    ]
    with _serve(command, url):
        yield CalDAVServer("xandikos", url, USER, PASSWORD, f"{url}{USER}/calendars/", checks_passwords=False)


@pytest.fixture(scope="session")
def open_xandikos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    """Xandikos for many users, as run behind a reverse proxy that signs users in (X-Remote-User from
    loopback): it answers discovery without credentials, with RFC 5397's `<unauthenticated/>` principal.
    `url` is the server itself; a test puts a `dav_proxy` whose `signs_in` says who is signed in in front of it."""
    folder, port = tmp_path_factory.mktemp("xandikos-multi"), free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [
        sys.executable, "-m", "xandikos", "multi-user", "--directory", str(folder / "data"), "--defaults",
        "--state-dir", str(folder / "state"), "--listen-address", "127.0.0.1", "--port", str(port),
        "--trust-x-remote-user-from", "127.0.0.1", "--no-detect-systemd",
    ]
    with _serve(command, url):
        yield CalDAVServer("xandikos", url, USER, PASSWORD, f"{url}{USER}/calendars/", checks_passwords=False)


@pytest.fixture(params=["radicale", "xandikos"])
def caldav_server(request: pytest.FixtureRequest) -> CalDAVServer:
    """Each test using this runs once against Radicale and once against Xandikos."""
    server: CalDAVServer = request.getfixturevalue(str(request.param))
    return server
