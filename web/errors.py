"""One error shape for every failure: {"error": {"code": ..., "message": ...}} (API.md)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from sync.errors import Conflict, DomainError, Invalid, NotFound

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_CODES = {400: "malformed_json", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                 409: "conflict", 413: "too_large", 422: "validation_error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code or _STATUS_CODES.get(status, "error")


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def describe(error: ValidationError) -> str:
    """The first problem, naming the field, in words a person can act on."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    return f"{where}: {first['msg']}"


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except ValidationError as exc:
        return error_response(422, "validation_error", describe(exc))
    except NotFound as exc:
        return error_response(404, exc.code, exc.message)
    except Conflict as exc:
        return error_response(409, exc.code, exc.message)
    except (Invalid, DomainError) as exc:
        return error_response(422, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "error")
        return error_response(exc.status, code, exc.reason or code)
    except Exception:
        log.exception("unexpected error", extra={"path": request.path, "method": request.method})
        return error_response(500, "internal_error", "something went wrong on our side; it has been logged")


async def read_json(request: web.Request) -> object:
    """The body as JSON, or 400 malformed_json."""
    try:
        return json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from exc
