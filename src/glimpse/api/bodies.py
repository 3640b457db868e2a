"""Reading request bodies and headers the way Glance expects them."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.errors import ApiError


def media_type(request: Request) -> str | None:
    raw = request.headers.get("content-type")
    return raw.split(";", 1)[0].strip().lower() if raw else None


def require_no_body(request: Request) -> None:
    if request.headers.get("content-length", "0") not in ("", "0") or (
        "chunked" in request.headers.get("transfer-encoding", "").lower()
    ):
        raise ApiError(400, "This operation does not accept a request body.")


async def read_json(request: Request, limit: int, allowed: tuple[str, ...]) -> Any:
    """The decoded JSON body; 415 for another media type, 413 past `limit` bytes, 400 if bad."""
    kind = media_type(request)
    if kind is not None and kind not in allowed:
        raise ApiError(415, f"Unsupported Content-Type {kind!r}; use {', '.join(allowed)}.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request body is larger than {limit} bytes.")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ApiError(413, f"Request body is larger than {limit} bytes.")
    if not raw:
        raise ApiError(400, "This operation requires a JSON request body.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Malformed JSON in request body: {exc}") from exc


def json_response(document: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def base_url(request: Request, public_endpoint: str) -> str:
    """The root every absolute link starts with, ending in '/'."""
    if public_endpoint:
        return public_endpoint.rstrip("/") + "/"
    return str(request.base_url)
