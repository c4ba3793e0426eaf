"""Domain errors with a stable code; `web/` turns them into the API's error shape."""

from __future__ import annotations


class DomainError(Exception):
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(DomainError):
    code = "not_found"


class Invalid(DomainError):
    """Valid JSON, invalid values (422)."""

    code = "validation_error"


class Conflict(DomainError):
    """The request clashes with the current state (409)."""

    code = "conflict"


class Gone(DomainError):
    """What the request names existed but can no longer be used: an expired or spent link (410)."""

    code = "gone"
