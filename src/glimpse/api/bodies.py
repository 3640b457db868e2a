"""Reading request bodies and headers the way Glance expects them."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.errors import ApiError
from glimpse.api.inputs import check_document, header_integer
from glimpse.services.bounds import MAX_JSON_DEPTH


def media_type(request: Request) -> str | None:
    raw = request.headers.get("content-type")
    return raw.split(";", 1)[0].strip().lower() if raw else None


def require_no_body(request: Request) -> None:
    if request.headers.get("content-length", "0") not in ("", "0") or (
        "chunked" in request.headers.get("transfer-encoding", "").lower()
    ):
        raise ApiError(400, "This operation does not accept a request body.")


async def read_json(request: Request, limit: int, allowed: tuple[str, ...]) -> Any:
    """The decoded JSON body; 415 for another media type, 413 past `limit` bytes, 400 if bad
    (malformed, nested too deep, or holding text no registry stores: `inputs.check_document`)."""
    kind = media_type(request)
    if kind is not None and kind not in allowed:
        raise ApiError(415, f"Unsupported Content-Type {kind!r}; use {', '.join(allowed)}.")
    # ASCII digits only ("²".isdigit() is true, int("²") raises); past `limit` it is a 413 anyway.
    declared = header_integer(request, "content-length", 2**63 - 1)
    if declared is not None and declared > limit:
        raise ApiError(413, f"Request body is larger than {limit} bytes.")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ApiError(413, f"Request body is larger than {limit} bytes.")
    if not raw:
        raise ApiError(400, "This operation requires a JSON request body.")
    try:
        document = json.loads(raw)
    except RecursionError as exc:  # the decoder recurses once per level of nesting
        raise ApiError(400, f"JSON request body nests deeper than {MAX_JSON_DEPTH} "
                       "levels.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Malformed JSON in request body: {exc}") from exc
    return check_document(document)


def json_response(document: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def base_url(request: Request, public_endpoint: str) -> str:
    """The root every absolute link starts with, ending in '/'."""
    if public_endpoint:
        return public_endpoint.rstrip("/") + "/"
    return str(request.base_url)
