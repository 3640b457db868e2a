"""Routes as resources: one path, one handler per method, and a true `Allow` list on 405."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glimpse.api.bodies import require_no_body

Handler = Callable[[Request], Awaitable[Response]]


def resource(path: str, **handlers: Handler) -> Route:
    """A route serving `path` with `handlers` keyed by lower-case method name.

    Any other method (HEAD included, as in Glance) gets 405 with the allowed ones in `Allow`.
    A request body is refused with 400 unless the handler is marked with `takes_body`.
    """
    by_method = {method.upper(): handler for method, handler in handlers.items()}

    async def dispatch(request: Request) -> Response:
        handler = by_method[request.method]
        if not getattr(handler, "takes_body", False):
            require_no_body(request)
        return await handler(request)

    route = Route(path, dispatch, methods=list(by_method))
    route.methods = set(by_method)  # Starlette adds HEAD to every GET; Glance does not
    return route


def takes_body(handler: Handler) -> Handler:
    """Mark a handler as one that reads the request body."""
    handler.takes_body = True  # type: ignore[attr-defined]
    return handler
