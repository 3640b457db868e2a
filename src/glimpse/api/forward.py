"""Handing a request to the server of the deployment that holds what it needs: an import (or a
delete) of data another server staged, when the servers do not share `staging_dir` (Glance's
`worker_self_reference_url`; docs/import.md).

The request goes as it came (method, path, query, body, the caller's headers and so their
token), marked `X-Glimpse-Forwarded` so that the server it reaches never forwards it again, and
the answer comes back as that server gave it. TLS certificates are verified.
"""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.errors import ApiError

FORWARDED = "x-glimpse-forwarded"
TIMEOUT = 60.0
# Not the caller's to pass on: hop-by-hop headers, and those httpx sets for the new request.
_NOT_PASSED = frozenset({"host", "content-length", "transfer-encoding", "connection",
                         "keep-alive", "te", "trailer", "upgrade", "expect", FORWARDED})
_NOT_RETURNED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                           "date", "server"})


def forwarded(request: Request) -> bool:
    """Whether another server of the deployment sent this request here."""
    return FORWARDED in request.headers


async def forward(request: Request, base_url: str, body: bytes = b"") -> Response:
    """The answer of the server at `base_url` to `request`; 503 if it cannot be reached."""
    target = base_url.rstrip("/") + request.url.path
    if request.url.query:
        target += "?" + request.url.query
    headers = {name: value for name, value in request.headers.items()
               if name not in _NOT_PASSED}
    headers[FORWARDED] = "1"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            answer = await client.request(request.method, target, content=body,
                                          headers=headers)
    except httpx.HTTPError as exc:
        raise ApiError(503, f"The server holding this image's staged data ({base_url}) "
                            f"cannot be reached: {exc or type(exc).__name__}") from exc
    return Response(answer.content, answer.status_code, headers={
        name: value for name, value in answer.headers.items() if name not in _NOT_RETURNED})
