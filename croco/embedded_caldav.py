"""A Radicale CalDAV server in a subprocess on a free loopback port, for the demo and the tests.

Real Radicale, real HTTP: the same code path as a user's own server. Basic auth with a plain htpasswd file
so a wrong password is refused with 401, like iCloud refuses a revoked app-specific password.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_http(url: str, *, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until the server answers at all (any HTTP status), bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # readiness polling of a process we just started


@dataclass
class EmbeddedRadicale:
    """`with EmbeddedRadicale(folder, users={"john": "pw"}) as server:` then `server.url`."""

    folder: Path
    users: dict[str, str]
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def __enter__(self) -> EmbeddedRadicale:
        self.folder.mkdir(parents=True, exist_ok=True)
        htpasswd = self.folder / "users"
        htpasswd.write_text("".join(f"{user}:{password}\n" for user, password in self.users.items()))
        self._process = subprocess.Popen(
            [
                sys.executable, "-m", "radicale", "--config", "",
                "--server-hosts", f"{self.host}:{self.port}",
                "--storage-filesystem-folder", str(self.folder / "collections"),
                "--auth-type", "htpasswd", "--auth-htpasswd-filename", str(htpasswd),
                "--auth-htpasswd-encryption", "plain", "--auth-delay", "0", "--rights-type", "owner_only",
                "--logging-level", "warning",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_http(self.url, process=self._process)
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def make_calendar(self, user: str, name: str) -> str:
        """Create an empty calendar collection with MKCALENDAR and return its URL."""
        url = f"{self.url}{user}/{name}/"
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"<D:set><D:prop><D:displayname>{name}</D:displayname></D:prop></D:set></C:mkcalendar>"
        )
        self._request("MKCALENDAR", url, user, body.encode("utf-8"), "application/xml")
        return url

    def put_event(self, user: str, calendar_url: str, name: str, ics: str) -> None:
        self._request("PUT", f"{calendar_url}{name}", user, ics.encode("utf-8"), "text/calendar; charset=utf-8")

    def _request(self, method: str, url: str, user: str, body: bytes, content_type: str) -> None:
        token = base64.b64encode(f"{user}:{self.users[user]}".encode()).decode("ascii")
        headers = {"Content-Type": content_type, "Authorization": f"Basic {token}"}
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        urllib.request.urlopen(request, timeout=10).close()
