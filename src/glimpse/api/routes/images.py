"""Image metadata routes: create, list, show, patch, delete, actions and tags."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.bodies import base_url, json_response, media_type, read_json
from glimpse.api.errors import ApiError
from glimpse.api.forward import forward, forwarded
from glimpse.api.inputs import image_id, tag
from glimpse.api.routing import (
    Body,
    Link,
    Operation,
    Param,
    Reply,
    describe,
    ref,
    resource,
    takes_body,
)
from glimpse.api.wiring import context, services
from glimpse.domain.images import Image, LocationStatus
from glimpse.services import patch
from glimpse.services.bounds import INT32_MAX, INT64_MAX
from glimpse.services.images import CREATE_FORBIDDEN, CREATE_READ_ONLY
from glimpse.services.imports import StagedElsewhere
from glimpse.services.protections import PropertyAccess
from glimpse.services.query import SORT_KEYS
from glimpse.services.views import image_document

IMAGE_ID = Param("id", "path", "The image id.", {"type": "string", "pattern": "^[^/]+$"})
TAG = Param("tag", "path", "The tag: 1 to 255 characters.",
            {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^/]+$"})
NOT_FOUND = "No image with this id is visible to the caller."
NOT_OWNER = "The caller may not change this image (not its owner, or not admin)."
CONCURRENT = "The image was changed concurrently past the retries, or a state rule refused it."
#: The operations a client can chain on an image it has: the id is in the body (a created or
#: patched image) or in the path (after an action on it).
_BY_BODY = {"id": "$response.body#/id"}
_BY_PATH = {"id": "$request.path.id"}


def view(request: Request, image: Image, access: PropertyAccess) -> dict[str, Any]:
    """The image as the caller sees it; with several stores, also the `stores` that hold its
    data, as Glance shows them (comma-separated ids)."""
    svc = services(request)
    document = image_document(image, access)
    shown = [loc for loc in image.locations if loc.status != LocationStatus.STAGED]
    if svc.discovery.multistore and shown:
        document["stores"] = ",".join(dict.fromkeys(loc.store for loc in shown))
    svc.locations.add_to_document(image, document)
    return document


def _links(source: dict[str, str], *operation_ids: str) -> dict[str, Link]:
    return {op: Link(op, source) for op in operation_ids}


#: A create body: an object the image schema accepts, naming no attribute the server refuses.
CREATE_BODY = {
    **ref("image"),
    "type": "object",
    "propertyNames": {"maxLength": 255, "not": {"anyOf": [
        {"enum": sorted(CREATE_FORBIDDEN | CREATE_READ_ONLY | patch.RESERVED)},
        {"pattern": f"^{patch.RESERVED_PREFIX}"},
    ]}},
}
_ANY_ID_LINKS = ("showImage", "updateImage", "deleteImage", "uploadImageData",
                 "downloadImageData", "addImageTag", "deleteImageTag", "deactivateImage",
                 "reactivateImage")
_FILTER = "Only images whose {} equals this value (`in:a,b` for several, where noted)."
_STRING_FILTERS = ("name", "id", "status", "owner", "checksum", "os_hash_value", "os_hash_algo",
                   "container_format", "disk_format")
_INT = {"type": "integer", "minimum": 0}
#: Filters on integer columns hold what the column holds.
_INT32 = {**_INT, "maximum": INT32_MAX}
_INT64 = {**_INT, "maximum": INT64_MAX}
LIST_PARAMS = (
    Param("limit", "query", "Page size (capped at `api_limit_max`).", _INT),
    Param("marker", "query", "Id of the last image of the previous page."),
    Param("sort_key", "query", "Sort key (repeatable).", {"enum": list(SORT_KEYS)},
          repeated=True),
    Param("sort_dir", "query", "Sort direction, one or one per `sort_key`.",
          {"enum": ["asc", "desc"]}, repeated=True),
    Param("sort", "query", "`key[:dir],...`; not with `sort_key`/`sort_dir`."),
    Param("visibility", "query", "Visibility scope.",
          {"enum": ["public", "private", "shared", "community", "all"]}),
    Param("member_status", "query", "Member status of shared images.",
          {"enum": ["accepted", "pending", "rejected", "all"]}),
    Param("tag", "query", "Only images with all these tags.", repeated=True),
    *(Param(name, "query", _FILTER.format(name)) for name in _STRING_FILTERS),
    Param("protected", "query", _FILTER.format("protected"), {"type": "boolean"}),
    Param("os_hidden", "query", "Include hidden images (`true`) or only them.",
          {"type": "boolean"}),
    *(Param(name, "query", _FILTER.format(name), _INT64)
      for name in ("size_min", "size_max", "size", "virtual_size")),
    *(Param(name, "query", _FILTER.format(name), _INT32) for name in ("min_ram", "min_disk")),
    *(Param(name, "query", f"`[gt|gte|eq|neq|lt|lte:]<ISO 8601 time>` on {name}.")
      for name in ("created_at", "updated_at")),
)


@takes_body
@describe(Operation(
    "createImage", "Create an image record (queued, no data yet).",
    body=Body({"application/json": CREATE_BODY}, "Settable attributes and extra properties."),
    replies={201: Reply("The created image.", ref("image"), headers=("Location",),
                        links=_links(_BY_BODY, *_ANY_ID_LINKS))},
    errors={400: "The body is not a JSON object matching the image schema.",
            403: "A read-only or reserved attribute, a protected property, or a change only "
                 "admins may make.",
            409: "An image with this id exists.",
            413: "The body, or its number of properties or tags, is over a limit.",
            415: "The body is not `application/json`."},
))
async def create(request: Request) -> Response:
    svc = services(request)
    body = await read_json(request, svc.settings.max_request_body_size, ("application/json",))
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    ctx = context(request)
    image = await svc.images.create(ctx, body)
    location = base_url(request, svc.settings.public_endpoint) + f"v2/images/{image.id}"
    headers = {"Location": location}
    if svc.discovery.multistore:
        headers["OpenStack-image-store-ids"] = ",".join(svc.discovery.writable())
    if svc.imports.methods:
        headers["OpenStack-image-import-methods"] = ",".join(svc.imports.methods)
    return json_response(view(request, image, svc.images.access(ctx)), status=201,
                         headers=headers)


@describe(Operation(
    "listImages", "List the images visible to the caller, a page at a time.",
    params=LIST_PARAMS,
    replies={200: Reply("A page of images, with `next` when another may follow.",
                        ref("images"))},
    errors={400: "A filter, sort, limit or marker is invalid.",
            403: "The caller's roles do not allow listing images."},
))
async def index(request: Request) -> Response:
    svc = services(request)
    params = request.query_params.multi_items()
    ctx = context(request)
    page = await svc.images.find(ctx, params)
    access = svc.images.access(ctx)
    kept = [(k, v) for k, v in params if k != "marker"]
    document: dict[str, Any] = {
        "images": [view(request, i, access) for i in page.images],
        "first": "/v2/images" + (f"?{urlencode(kept)}" if kept else ""),
        "schema": "/v2/schemas/images",
    }
    if page.full:
        document["next"] = "/v2/images?" + urlencode([*kept, ("marker", page.images[-1].id)])
    return json_response(document)


@describe(Operation(
    "showImage", "Show an image.", params=(IMAGE_ID,),
    replies={200: Reply("The image.", ref("image"))},
    errors={404: NOT_FOUND},
))
async def show(request: Request) -> Response:
    images, ctx = services(request).images, context(request)
    image = await images.get(ctx, image_id(request))
    return json_response(view(request, image, images.access(ctx)))


@takes_body
@describe(Operation(
    "updateImage", "Change an image with a JSON patch.", params=(IMAGE_ID,),
    body=Body({media: ref(name) for media, name in zip(
        patch.MEDIA_TYPES, ("imagePatchV21", "imagePatchV20"), strict=True)}),
    replies={200: Reply("The changed image.", ref("image"),
                        links=_links(_BY_BODY, "showImage", "deleteImage", "uploadImageData"))},
    errors={400: "The patch is malformed or its result does not match the image schema.",
            403: "A read-only, reserved or base attribute, a protected property, or a change "
                 "only admins may make.",
            404: NOT_FOUND,
            409: "The property to replace or remove is absent (or present, for a v2.0 add), "
                 "or the image was changed concurrently past the retries.",
            413: "The body, or its number of properties or tags, is over a limit.",
            415: "The body is not one of the JSON-patch media types; `Accept-Patch` lists them."},
    error_headers={415: ("Accept-Patch",)},
))
async def update(request: Request) -> Response:
    svc = services(request)
    kind = media_type(request)
    if kind not in patch.MEDIA_TYPES:
        raise ApiError(415, f"Unsupported Content-Type {kind!r} for PATCH; use one of "
                       f"{', '.join(patch.MEDIA_TYPES)}.",
                       headers={"Accept-Patch": ", ".join(patch.MEDIA_TYPES)})
    body = await read_json(request, svc.settings.max_request_body_size, patch.MEDIA_TYPES)
    ctx = context(request)
    image = await svc.images.update(ctx, image_id(request), kind, body)
    return json_response(view(request, image, svc.images.access(ctx)))


@describe(Operation(
    "deleteImage", "Delete an image and its data.", params=(IMAGE_ID,),
    replies={204: Reply("Deleted.")},
    errors={403: "The image is protected, or the caller does not own it.", 404: NOT_FOUND,
            409: CONCURRENT,
            503: "The server of the deployment that holds the image's staged data cannot be "
                 "reached (docs/import.md)."},
))
async def delete(request: Request) -> Response:
    svc, ctx, id_ = services(request), context(request), image_id(request)
    if not forwarded(request):
        try:
            await svc.imports.check_delete_here(ctx, id_)
        except StagedElsewhere as elsewhere:
            return await forward(request, elsewhere.url)
    await svc.images.delete(ctx, id_)
    return Response(status_code=204)


@describe(Operation(
    "deactivateImage", "Deactivate an active image (its data cannot be downloaded).",
    params=(IMAGE_ID,),
    replies={204: Reply("Deactivated.", links=_links(_BY_PATH, "reactivateImage",
                                                     "downloadImageData"))},
    errors={403: "The image is not active or deactivated, or the caller does not own it.",
            404: NOT_FOUND, 409: CONCURRENT},
))
async def deactivate(request: Request) -> Response:
    await services(request).images.deactivate(context(request), image_id(request))
    return Response(status_code=204)


@describe(Operation(
    "reactivateImage", "Reactivate a deactivated image.", params=(IMAGE_ID,),
    replies={204: Reply("Reactivated.", links=_links(_BY_PATH, "deactivateImage",
                                                     "downloadImageData"))},
    errors={403: "The image is not deactivated or active, or the caller does not own it.",
            404: NOT_FOUND, 409: CONCURRENT},
))
async def reactivate(request: Request) -> Response:
    await services(request).images.reactivate(context(request), image_id(request))
    return Response(status_code=204)


@describe(Operation(
    "addImageTag", "Add a tag to an image (idempotent).", params=(IMAGE_ID, TAG),
    replies={204: Reply("Tagged.", links={"deleteImageTag": Link(
        "deleteImageTag", {"id": "$request.path.id", "tag": "$request.path.tag"})})},
    errors={400: "The tag is empty or longer than 255 characters.", 403: NOT_OWNER,
            404: NOT_FOUND, 409: CONCURRENT, 413: "The image has the most tags allowed."},
))
async def add_tag(request: Request) -> Response:
    await services(request).images.add_tag(context(request), image_id(request), tag(request))
    return Response(status_code=204)


@describe(Operation(
    "deleteImageTag", "Remove a tag from an image.", params=(IMAGE_ID, TAG),
    replies={204: Reply("Untagged.")},
    errors={403: NOT_OWNER, 404: "No such image, or it has no such tag.", 409: CONCURRENT},
))
async def delete_tag(request: Request) -> Response:
    await services(request).images.delete_tag(context(request), image_id(request),
                                              tag(request))
    return Response(status_code=204)


routes = [
    resource("/v2/images", get=index, post=create),
    resource("/v2/images/{id}", get=show, patch=update, delete=delete),
    resource("/v2/images/{id}/actions/deactivate", post=deactivate),
    resource("/v2/images/{id}/actions/reactivate", post=reactivate),
    resource("/v2/images/{id}/tags/{tag}", put=add_tag, delete=delete_tag),
]
