"""Outermost ASGI layer: request ids, the no-auth request context, version prefixes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from glimpse.domain.context import RequestContext

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_REQUEST_ID = 64
_VERSIONED = re.compile(r"^/v2\.(\d+)(/.*)?$")
_OTHER_VERSION = re.compile(r"^/v\d+(\.\d+)?(/.*)?$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class EdgeMiddleware:
    """Stamps `x-openstack-request-id` on every response (adopting a sane incoming one), builds the
    `RequestContext` (no-auth: admin of the default project, narrowed by `X-Project-Id` and
    `X-Roles`), and maps `/v2.N/...` to `/v2/...`; other version prefixes get the versions list.
    """

    def __init__(self, app: ASGIApp, default_project: str) -> None:
        self._app = app
        self._default_project = default_project

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        incoming = _header(scope, b"x-openstack-request-id")
        if incoming and len(incoming) <= MAX_REQUEST_ID and incoming.isprintable():
            request_id = incoming
        else:
            request_id = f"req-{uuid.uuid4()}"
        roles_header = _header(scope, b"x-roles")
        roles = (
            frozenset(r.strip().lower() for r in roles_header.split(",") if r.strip())
            if roles_header is not None
            else frozenset({"admin", "member", "reader"})
        )
        project = (_header(scope, b"x-project-id") or _header(scope, b"x-tenant-id")
                   or self._default_project)
        scope.setdefault("state", {})["context"] = RequestContext(
            project_id=project, roles=roles, user_id=_header(scope, b"x-user-id"),
            request_id=request_id,
        )
        stamp = (b"x-openstack-request-id", request_id.encode("latin-1"))

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), stamp]
            await send(message)

        path = scope["path"]
        match = _VERSIONED.match(path)
        if match:
            scope = dict(scope, path="/v2" + (match.group(2) or ""))
        elif not path.startswith("/v2/") and path != "/v2" and _OTHER_VERSION.match(path):
            scope = dict(scope, path="/")  # an unknown API version: the versions document
        await self._app(scope, receive, send_stamped)
