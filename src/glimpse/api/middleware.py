"""Outermost ASGI layer: request ids, authentication, the access log, version prefixes."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request

from glimpse.api.errors import ApiError, internal_message, render_error, response_of
from glimpse.api.identity import PUBLIC_PATHS, Authenticator, anonymous
from glimpse.domain.context import RequestContext
from glimpse.domain.errors import DomainError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)
#: One line per request: client, method, path, status, duration, request id, user, project.
access = logging.getLogger("glimpse.access")

MAX_REQUEST_ID = 64
_VERSIONED = re.compile(r"^/v2\.(\d+)(/.*)?$")
_OTHER_VERSION = re.compile(r"^/v\d+(\.\d+)?(/.*)?$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class EdgeMiddleware:
    """Stamps `x-openstack-request-id` on every response (adopting a sane incoming one), maps
    `/v2.N/...` to `/v2/...` (other version prefixes get the versions list), builds the
    `RequestContext` with the `authenticator` (a refusal is answered here, through the error
    table: 401 with its challenge, 503, or 400), and writes the access log line.
    `identity.PUBLIC_PATHS` need no credentials in any mode.

    It is also the last stop of an exception nothing mapped (a bug): it logs it once, with the
    request id and the traceback, and swallows it, so the server logs nothing more. The client
    has had (or gets here) a 500 in Glance's format; if the response had already started, it is
    left unfinished, and uvicorn closes the connection: the client sees a truncated body, never
    a silently short one.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator,
                 access_log: bool = True) -> None:
        self._app = app
        self._authenticator = authenticator
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = _header(scope, b"x-openstack-request-id")
        if (incoming and len(incoming) <= MAX_REQUEST_ID and incoming.isascii()
                and incoming.isprintable()):
            request_id = incoming
        else:
            request_id = f"req-{uuid.uuid4()}"
        stamp = (b"x-openstack-request-id", request_id.encode("latin-1"))
        status: int | None = None  # of the response once it has started
        finished = False

        async def send_stamped(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), stamp]
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        path = scope["path"]
        match = _VERSIONED.match(path)
        if match:
            scope = dict(scope, path="/v2" + (match.group(2) or ""))
        elif not path.startswith("/v2/") and path != "/v2" and _OTHER_VERSION.match(path):
            scope = dict(scope, path="/")  # an unknown API version: the versions document
        state = scope.setdefault("state", {})
        try:
            if self._authenticator.requires_credentials and scope["path"] in PUBLIC_PATHS:
                context = anonymous(request_id)
            else:
                context = await self._authenticator.authenticate(scope.get("headers", ()),
                                                                 request_id)
        except (ApiError, DomainError) as refusal:
            state["context"] = anonymous(request_id)
            await response_of(Request(scope), refusal)(scope, receive, send_stamped)
            self._log(scope, status, started, state["context"])
            return
        except Exception:  # a bug in an authenticator: a 500, never a pass
            log.exception("authenticating %s %s (request %s) failed; answered 500",
                          scope.get("method"), path, request_id)
            state["context"] = anonymous(request_id)
            await _internal_error(scope, send_stamped, request_id)
            self._log(scope, status, started, state["context"])
            return
        state["context"] = context
        try:
            await self._app(scope, receive, send_stamped)
        except Exception:
            where = f"{scope.get('method')} {path} (request {request_id})"
            if status is None:
                log.exception("%s failed; answered 500", where)
                await _internal_error(scope, send_stamped, request_id)
            elif finished:
                log.exception("%s failed; answered %d", where, status)
            else:
                log.exception("%s failed after its %d response started; closing the connection",
                              where, status)
        self._log(scope, status, started, context)

    def _log(self, scope: Scope, status: int | None, started: float,
             context: RequestContext) -> None:
        if not (self._access_log and access.isEnabledFor(logging.INFO)):
            return
        # The raw target, escaped: the decoded path could carry a newline into the log.
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        query = scope.get("query_string")
        target = raw.decode("ascii", "backslashreplace")
        if query:
            target += "?" + query.decode("ascii", "backslashreplace")
        client = scope.get("client")
        access.info("%s %s %s %s %.1fms %s user=%s project=%s",
                    client[0] if client else "-", scope.get("method"), target,
                    status if status is not None else "-",
                    (time.perf_counter() - started) * 1000, context.request_id,
                    context.user_id or "-", context.project_id or "-")


async def _internal_error(scope: Scope, send: Send, request_id: str) -> None:
    """A 500 in Glance's format, for a failure before Starlette could answer one."""
    body, media_type = render_error(_header(scope, b"accept") or "", 500,
                                    internal_message(request_id))
    payload = body.encode()
    await send({"type": "http.response.start", "status": 500, "headers": [
        (b"content-type", media_type.encode()), (b"content-length", str(len(payload)).encode()),
    ]})
    await send({"type": "http.response.body", "body": payload})
