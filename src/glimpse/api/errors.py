"""The one table that turns exceptions into HTTP responses, in Glance's error format.

Body: `{"message": ..., "code": "404 Not Found", "title": "Not Found"}` when the client accepts
JSON (Glance's format); see `error_response` for the others. Glance sends an HTML page to clients
that accept anything; Glimpse never sends HTML.
Routes raise and never catch; anything not in the table is a bug: `handle_unexpected` answers it
with a 500 in the same format, and the edge (`middleware.EdgeMiddleware`) logs it once.
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


#: keystonemiddleware's (and so Glance's) message for a request without valid credentials.
UNAUTHENTICATED = "The request you have made requires authentication."


class Unauthenticated(ApiError):
    """401: no credentials, or ones that did not validate (unknown, expired, revoked).
    `challenge` is the `WWW-Authenticate` value telling the client where to authenticate."""

    def __init__(self, challenge: str, message: str = UNAUTHENTICATED) -> None:
        super().__init__(401, message, {"WWW-Authenticate": challenge})


class IdentityUnavailable(ApiError):
    """503: the credentials cannot be checked now (Keystone down, the token file unreadable).
    Never a pass: the request is refused until the identity source answers again."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


TABLE: dict[type[BaseException], int] = {
    domain.NotFound: 404,
    domain.Forbidden: 403,
    domain.Conflict: 409,
    domain.Invalid: 400,
    domain.TooLarge: 413,
    domain.RefusedData: 415,
    domain.RangeNotSatisfiable: 416,
    domain.Gone: 410,
    stores.ObjectNotFound: 404,
    stores.ObjectExists: 409,
    stores.Unsupported: 400,
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


#: Glance's (webob's) explanation of a 500; the request id is appended.
INTERNAL_MESSAGE = ("The server has either erred or is incapable of performing the requested "
                    "operation.")


def error_fields(status: int, message: str) -> dict[str, str]:
    """Glance's error fields: `{"message", "code": "404 Not Found", "title": "Not Found"}`."""
    phrase = HTTPStatus(status).phrase
    return {"message": message, "code": f"{status} {phrase}", "title": phrase}


def render_error(accept: str, status: int, message: str) -> tuple[str, str]:
    """The error body and its media type for a client sending `accept`: Glance's flat JSON for
    clients that ask for JSON, plain text for those that ask for text, and otherwise (no Accept,
    */*, HTML) the same fields nested under "error": the one JSON shape that python-glanceclient
    and openstacksdk both read a message from."""
    fields = error_fields(status, message)
    accepted = _accepted(accept)
    if "application/json" in accepted:
        return json.dumps(fields), "application/json"
    if "text/plain" in accepted:
        return f"{status} {fields['title']}\n\n{message}\n", "text/plain"
    # Reads as the clients render Glance's HTML page: "404 Not Found: <message>".
    nested = {**fields, "message": f"{status} {fields['title']}: {message}"}
    return json.dumps({"error": nested}), "application/json"


def error_response(request: Request, status: int, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    """The error as a response, negotiated on the request's Accept header (`render_error`)."""
    body, media_type = render_error(request.headers.get("accept", ""), status, message)
    return Response(body, status_code=status, media_type=media_type, headers=headers)


def internal_message(request_id: str | None) -> str:
    return f"{INTERNAL_MESSAGE} (request id {request_id})" if request_id else INTERNAL_MESSAGE


def response_of(request: Request, exc: Exception) -> Response:
    """The table's answer to `exc`, with the headers it carries; logs nothing."""
    status = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        headers.update(exc.headers)
    if isinstance(exc, HTTPException) and exc.headers:
        headers.update(exc.headers)
    if isinstance(exc, domain.RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    return error_response(request, status, message_of(exc, status), headers)


async def handle(request: Request, exc: Exception) -> Response:
    response = response_of(request, exc)
    if response.status_code >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    return response


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A 500 for an exception no row of the table maps (a bug). Starlette's outermost layer calls
    this, sends the answer if no response has started, and re-raises for the edge to log."""
    context = request.scope.get("state", {}).get("context")
    return error_response(request, 500, internal_message(getattr(context, "request_id", None)))


HANDLED: tuple[type[Exception], ...] = (
    ApiError, HTTPException, domain.DomainError, stores.StoreError, ClientDisconnect,
)

#: Starlette's `exception_handlers`: the table's classes, and `Exception` for everything else.
HANDLERS = {**{cls: handle for cls in HANDLED}, Exception: handle_unexpected}
