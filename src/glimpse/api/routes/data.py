"""Image data routes: `PUT /v2/images/{id}/file` (upload) and `GET` (download, ranges)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from glimpse.api.bodies import media_type
from glimpse.api.errors import ApiError
from glimpse.api.inputs import header_integer, image_id
from glimpse.api.routing import Body, Link, Operation, Param, Reply, describe, resource, takes_body
from glimpse.api.wiring import context, services
from glimpse.services.bounds import INT64_MAX
from glimpse.stores.base import Chunk, drain


def _declared_size(request: Request) -> int | None:
    return header_integer(request, "x-openstack-image-size", INT64_MAX)


async def _body(request: Request) -> AsyncIterator[Chunk]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


IMAGE_ID = Param("id", "path", "The image id.", {"type": "string", "pattern": "^[^/]+$"})
#: After an upload the image is active: its data can be read and it can be deactivated.
_UPLOADED = {op: Link(op, {"id": "$request.path.id"})
             for op in ("downloadImageData", "deactivateImage", "showImage")}


@takes_body
@describe(Operation(
    "uploadImageData", "Upload the image's data (once, to a queued image).",
    params=(IMAGE_ID, Param("x-openstack-image-size", "header",
                            "The size the client declares; the upload fails if it differs.",
                            {"type": "integer", "minimum": 0, "maximum": INT64_MAX}),
            Param("X-Image-Meta-Store", "header",
                  "With several stores: the store to write to (default: `default_store`).")),
    body=Body({"application/octet-stream": {"type": "string", "format": "binary"}}),
    replies={204: Reply("Stored; the image is active.", links=_UPLOADED)},
    errors={400: "The declared size is not a number or differs from the data received, the "
                 "image has no disk_format/container_format yet, the store named is unknown "
                 "or read-only, or the image is signed and its signature cannot be checked or "
                 "does not match the data (docs/signatures.md).",
            403: "The caller does not own the image.",
            404: "No image with this id is visible to the caller.",
            409: "The image is not queued (data is uploaded once), or it was changed "
                 "concurrently.",
            410: "The image was deleted during the upload; the data was discarded.",
            413: "The data (or the declared size) is over `image_size_cap`, or the store is "
                 "full.",
            415: "The body is not `application/octet-stream`, or the data is refused by format "
                 "inspection: not its disk_format, or unsafe (docs/image-safety.md).",
            503: "The store refused the write or is unavailable."},
))
async def upload(request: Request) -> Response:
    if media_type(request) != "application/octet-stream":
        raise ApiError(415, "Image data must be sent as Content-Type: application/octet-stream.")
    declared = _declared_size(request)
    svc = services(request)
    store = request.headers.get("x-image-meta-store") if svc.discovery.multistore else None
    await svc.uploads.upload(context(request), image_id(request), _body(request), declared,
                             store)
    return Response(status_code=204)


@takes_body
@describe(Operation(
    "stageImageData", "Stage the image's data for a glance-direct import (queued → uploading).",
    params=(IMAGE_ID, Param("x-openstack-image-size", "header",
                            "The size the client declares; the stage fails if it differs.",
                            {"type": "integer", "minimum": 0, "maximum": INT64_MAX})),
    body=Body({"application/octet-stream": {"type": "string", "format": "binary"}}),
    replies={204: Reply("Staged; the image is uploading, ready for `POST /import`.")},
    errors={400: "The declared size is not a number or differs from the data received.",
            403: "The caller does not own the image.",
            404: "No image with this id is visible, or glance-direct is not enabled.",
            409: "The image is not queued, or it was changed concurrently.",
            413: "The data (or the declared size) is over `image_size_cap`.",
            415: "The body is not `application/octet-stream`.",
            503: "The staging area refused the write."},
))
async def stage(request: Request) -> Response:
    if media_type(request) != "application/octet-stream":
        raise ApiError(415, "Image data must be sent as Content-Type: application/octet-stream.")
    declared = _declared_size(request)
    await services(request).imports.stage(context(request), image_id(request), _body(request),
                                          declared)
    return Response(status_code=204)


@describe(Operation(
    "downloadImageData", "Download the image's data, whole or one byte range.",
    params=(IMAGE_ID,
            Param("Range", "header", "One range: `bytes=a-b`, `bytes=a-` or `bytes=-n`."),
            Param("Content-Range", "header", "The legacy form: `bytes a-b/size`.")),
    replies={
        200: Reply("All the data.", {"type": "string", "format": "binary"},
                   "application/octet-stream", headers=("Content-MD5",)),
        204: Reply("The image has no data (yet)."),
        206: Reply("The requested range.", {"type": "string", "format": "binary"},
                   "application/octet-stream", headers=("Content-Range",)),
    },
    errors={400: "The range is malformed or asks for several ranges, or `prefer` was given.",
            403: "The image is deactivated and the caller is not admin.",
            404: "No image with this id is visible, or its data is in no store.",
            416: "The range starts past the end of the data."},
    error_headers={416: ("Content-Range",)},
))
async def download(request: Request) -> Response:
    if "prefer" in request.query_params:
        raise ApiError(400, "The 'prefer' parameter needs multiple stores, which are not "
                       "enabled on this server.")
    opened = await services(request).downloads.open(
        context(request),
        image_id(request),
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
    return StreamingResponse(drain(reader), status_code=status, headers=headers)


routes = [resource("/v2/images/{id}/file", put=upload, get=download),
          resource("/v2/images/{id}/stage", put=stage)]
