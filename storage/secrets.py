"""Encryption of credentials at rest with Fernet / MultiFernet.

`CROCO_SECRET_KEY` holds one or more Fernet keys separated by commas. The first key encrypts; every key
decrypts, so a key is rotated by putting the new key first, running `rotate`, then dropping the old one.
"""

from __future__ import annotations

import hashlib
import hmac
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
        self._mac_keys = [hashlib.sha256(b"croco-mac:" + k.encode("ascii", "replace")).digest() for k in parts]
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
        """Re-encrypt with the first (newest) key; `UndecryptableSecret` if no configured key opens it."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise UndecryptableSecret("a secret was encrypted with a key that is not configured") from None

    def mac(self, purpose: str, value: str) -> str:
        """A signature of `value` for one `purpose` (an OAuth state, a push channel's token), with the newest key.

        Another purpose never verifies: a channel token cannot pass for an OAuth state."""
        return self._mac(self._mac_keys[0], purpose, value)

    def verify_mac(self, purpose: str, value: str, signature: str) -> bool:
        """Checked against every configured key, so a rotation does not void what was signed just before it."""
        return any(hmac.compare_digest(self._mac(key, purpose, value), signature) for key in self._mac_keys)

    @staticmethod
    def _mac(key: bytes, purpose: str, value: str) -> str:
        message = f"{purpose}\x00{value}".encode("utf-8", "surrogatepass")
        return hmac.new(key, message, hashlib.sha256).hexdigest()
