"""The one table that turns exceptions into HTTP responses, in Glance's error format.

Body: `{"message": ..., "code": "404 Not Found", "title": "Not Found"}` when the client accepts
JSON (Glance's format); see `error_response` for the others. Glance sends an HTML page to clients
that accept anything; Glimpse never sends HTML.
Routes raise and never catch; anything not in the table is a bug and becomes a logged 500.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from glimpse.domain import errors as domain
from glimpse.stores import errors as stores

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error only the HTTP edge knows about (media types, bodies, headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


TABLE: dict[type[BaseException], int] = {
    domain.NotFound: 404,
    domain.Forbidden: 403,
    domain.Conflict: 409,
    domain.Invalid: 400,
    domain.TooLarge: 413,
    domain.RangeNotSatisfiable: 416,
    domain.Gone: 410,
    stores.ObjectNotFound: 404,
    stores.InvalidKey: 400,
    stores.InvalidRange: 416,
    stores.StoreFull: 413,
    stores.WriteDenied: 503,
    stores.StoreUnavailable: 503,
    ClientDisconnect: 400,
}


def status_of(exc: BaseException) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    for cls in type(exc).__mro__:
        if cls in TABLE:
            return TABLE[cls]
    return 500


def message_of(exc: BaseException, status: int) -> str:
    if isinstance(exc, HTTPException):
        return exc.detail if exc.detail != HTTPStatus(status).phrase else _default_message(status)
    return str(getattr(exc, "message", None) or exc)


def _default_message(status: int) -> str:
    return {
        404: "The resource could not be found.",
        405: "The method is not allowed for this resource.",
    }.get(status, HTTPStatus(status).phrase)


def _accepted(accept: str) -> set[str]:
    """Media types the Accept header admits with a non-zero quality."""
    kinds = set()
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        quality = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            if float(quality) > 0 and kind:
                kinds.add(kind.lower())
        except ValueError:
            continue
    return kinds


def error_response(request: Request, status: int, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    """Glance's flat JSON body for clients that ask for JSON, plain text for those that ask
    for text, and otherwise (no Accept, */*, HTML) the same fields nested under "error": the
    one JSON shape that python-glanceclient and openstacksdk both read a message from."""
    phrase = HTTPStatus(status).phrase
    fields = {"message": message, "code": f"{status} {phrase}", "title": phrase}
    accepted = _accepted(request.headers.get("accept", ""))
    if "application/json" in accepted:
        body, media_type = json.dumps(fields), "application/json"
    elif "text/plain" in accepted:
        body, media_type = f"{status} {phrase}\n\n{message}\n", "text/plain"
    else:
        # Reads as the clients render Glance's HTML page: "404 Not Found: <message>".
        nested = {**fields, "message": f"{status} {phrase}: {message}"}
        body, media_type = json.dumps({"error": nested}), "application/json"
    return Response(body, status_code=status, media_type=media_type, headers=headers)


async def handle(request: Request, exc: Exception) -> Response:
    status = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        headers.update(exc.headers)
    if isinstance(exc, HTTPException) and exc.headers:
        headers.update(exc.headers)
    if isinstance(exc, domain.RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    return error_response(request, status, message_of(exc, status), headers)


HANDLED: tuple[type[Exception], ...] = (
    ApiError, HTTPException, domain.DomainError, stores.StoreError, ClientDisconnect,
)
