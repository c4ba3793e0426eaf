"""Structured logging that never prints a secret.

Records carry context as `extra={"user_id": ..., "calendar_id": ..., "provider": ...}`. Two guards keep
secrets out: values of keys that look secret are replaced, and every registered secret value (the
configured tokens and keys) is masked wherever it appears in the rendered line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_SECRET_KEY_PATTERN = re.compile(r"pass(word)?|secret|token|credential|authorization|api[_-]?key", re.I)
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
MASK = "***"


class SecretMasker:
    """Remembers secret values and scrubs them from text."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def register(self, *values: str) -> None:
        self._values.update(v for v in values if v and len(v) >= 4)

    def scrub(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        return text


masker = SecretMasker()


def _context(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD_ATTRS or key.startswith("_"):
            continue
        fields[key] = MASK if _SECRET_KEY_PATTERN.search(key) else value
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return masker.scrub(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}" + (f"  {context}" if context else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return masker.scrub(line)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "alembic", "apscheduler", "caldav", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
