"""Encryption of credentials at rest with Fernet / MultiFernet.

`CROCO_SECRET_KEY` holds one or more Fernet keys separated by commas. The first key encrypts; every key
decrypts, so a key is rotated by putting the new key first, running `rotate`, then dropping the old one.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretKeyError(ValueError):
    """The configured secret key is missing or not a valid Fernet key."""


class UndecryptableSecret(Exception):
    """Stored credentials were written with a key that is no longer configured."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts small JSON documents (credentials)."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise SecretKeyError("no secret key configured")
        try:
            self._fernet = MultiFernet([Fernet(k.encode("ascii")) for k in parts])
        except (ValueError, UnicodeEncodeError) as exc:
            raise SecretKeyError("a secret key is not a valid Fernet key (32 url-safe base64 bytes)") from exc

    def seal(self, document: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(document, sort_keys=True).encode("utf-8"))

    def open(self, token: bytes) -> dict[str, Any]:
        try:
            raw = self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise UndecryptableSecret("credentials were encrypted with a key that is not configured") from exc
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise UndecryptableSecret("stored credentials are not a JSON object")
        return value

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt with the first (newest) key."""
        return self._fernet.rotate(token)
