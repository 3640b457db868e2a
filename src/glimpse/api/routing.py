"""Routes as resources: one path, one handler per method, and a true `Allow` list on 405.

Each handler also carries an `Operation`: a small declarative description (parameters, body,
replies, the errors it can answer) from which `glimpse.api.openapi` builds the OpenAPI document,
so the document is made from the same route table that serves requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glimpse.api.bodies import require_no_body

Handler = Callable[[Request], Awaitable[Response]]
#: A JSON Schema (2020-12) as a plain mapping; `{"$ref": "#/components/schemas/<name>"}` names one
#: of the document's shared schemas (see `glimpse.api.openapi`).
Schema = Mapping[str, Any]


def ref(name: str) -> Schema:
    """A reference to the document's shared schema `name`."""
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter. Path parameters are always required."""

    name: str
    where: Literal["path", "query", "header"]
    description: str
    schema: Schema = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    #: Whether a query parameter may repeat (`?tag=a&tag=b`): its schema is then an array's.
    repeated: bool = False


@dataclass(frozen=True)
class Body:
    """A request body: its schema for each media type the operation reads."""

    content: Mapping[str, Schema]
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: `operation_id` can follow this reply, its parameters taken from it."""

    operation_id: str
    parameters: Mapping[str, str]
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """A success reply. `headers` are names of `openapi.HEADERS`; `schema` None means no body."""

    description: str
    schema: Schema | None = None
    media_type: str = "application/json"
    headers: tuple[str, ...] = ()
    links: Mapping[str, Link] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """What one method of one path does, as the OpenAPI document tells it.

    `errors` maps each error status the operation can answer to when it does; every operation
    also answers 400 (a body where none is taken) and 405 (another method), added by the builder.
    `error_headers` adds headers (names of `openapi.HEADERS`) to an error status.
    """

    operation_id: str
    summary: str
    replies: Mapping[int, Reply]
    params: tuple[Param, ...] = ()
    body: Body | None = None
    errors: Mapping[int, str] = field(default_factory=dict)
    error_headers: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""


def describe(operation: Operation) -> Callable[[Handler], Handler]:
    """Attach `operation` to a handler (read back by `operation_of`)."""

    def mark(handler: Handler) -> Handler:
        handler.operation = operation  # type: ignore[attr-defined]
        return handler

    return mark


def operation_of(handler: Handler) -> Operation | None:
    found = getattr(handler, "operation", None)
    return found if isinstance(found, Operation) else None


class Resource(Route):
    """A route serving one path with one handler per method; `handlers` is keyed upper-case."""

    def __init__(self, path: str, handlers: Mapping[str, Handler]) -> None:
        self.handlers = dict(handlers)

        async def dispatch(request: Request) -> Response:
            handler = self.handlers[request.method]
            if not getattr(handler, "takes_body", False):
                require_no_body(request)
            return await handler(request)

        super().__init__(path, dispatch, methods=list(self.handlers))
        self.methods = set(self.handlers)  # Starlette adds HEAD to every GET; Glance does not


def resource(path: str, **handlers: Handler) -> Resource:
    """A route serving `path` with `handlers` keyed by lower-case method name.

    Any other method (HEAD included, as in Glance) gets 405 with the allowed ones in `Allow`.
    A request body is refused with 400 unless the handler is marked with `takes_body`.
    """
    return Resource(path, {method.upper(): handler for method, handler in handlers.items()})


def takes_body(handler: Handler) -> Handler:
    """Mark a handler as one that reads the request body."""
    handler.takes_body = True  # type: ignore[attr-defined]
    return handler
