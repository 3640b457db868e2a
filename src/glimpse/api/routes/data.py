"""Image data routes: `PUT /v2/images/{id}/file` (upload) and `GET` (download, ranges)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from glimpse.api.bodies import media_type
from glimpse.api.errors import ApiError
from glimpse.api.routing import resource, takes_body
from glimpse.api.wiring import context, services
from glimpse.stores.base import Reader


def _declared_size(request: Request) -> int | None:
    raw = request.headers.get("x-openstack-image-size")
    if raw is None or raw == "":
        return None
    if not raw.strip().isdigit():
        raise ApiError(400, f"x-openstack-image-size must be a non-negative integer, not {raw!r}.")
    return int(raw)


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


@takes_body
async def upload(request: Request) -> Response:
    if media_type(request) != "application/octet-stream":
        raise ApiError(415, "Image data must be sent as Content-Type: application/octet-stream.")
    declared = _declared_size(request)
    await services(request).uploads.upload(
        context(request), request.path_params["id"], _body(request), declared
    )
    return Response(status_code=204)


async def _stream(reader: Reader) -> AsyncIterator[bytes]:
    try:
        async for chunk in reader.chunks():
            yield chunk
    finally:
        await reader.aclose()


async def download(request: Request) -> Response:
    if "prefer" in request.query_params:
        raise ApiError(400, "The 'prefer' parameter needs multiple stores, which are not "
                       "enabled on this server.")
    opened = await services(request).downloads.open(
        context(request),
        request.path_params["id"],
        request.headers.get("range"),
        request.headers.get("content-range"),
    )
    if opened.reader is None:
        return Response(status_code=204)
    image, reader = opened.image, opened.reader
    headers = {"Content-Type": "application/octet-stream"}
    if opened.range is not None:
        headers["Content-Length"] = str(opened.range.length)
        headers["Content-Range"] = opened.range.content_range(reader.size)
        status = 206
    else:
        headers["Content-Length"] = str(reader.size)
        if image.checksum:
            headers["Content-MD5"] = image.checksum
        status = 200
    return StreamingResponse(_stream(reader), status_code=status, headers=headers)


routes = [resource("/v2/images/{id}/file", put=upload, get=download)]
