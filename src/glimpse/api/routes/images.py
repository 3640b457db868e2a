"""Image metadata routes: create, list, show, patch, delete, actions and tags."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.bodies import base_url, json_response, media_type, read_json
from glimpse.api.errors import ApiError
from glimpse.api.routing import resource, takes_body
from glimpse.api.wiring import context, services
from glimpse.services import patch
from glimpse.services.views import image_document


@takes_body
async def create(request: Request) -> Response:
    svc = services(request)
    body = await read_json(request, svc.settings.max_request_body_size, ("application/json",))
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    image = await svc.images.create(context(request), body)
    location = base_url(request, svc.settings.public_endpoint) + f"v2/images/{image.id}"
    return json_response(image_document(image), status=201, headers={"Location": location})


async def index(request: Request) -> Response:
    svc = services(request)
    params = request.query_params.multi_items()
    page = await svc.images.find(context(request), params)
    kept = [(k, v) for k, v in params if k != "marker"]
    document: dict[str, Any] = {
        "images": [image_document(i) for i in page.images],
        "first": "/v2/images" + (f"?{urlencode(kept)}" if kept else ""),
        "schema": "/v2/schemas/images",
    }
    if page.full:
        document["next"] = "/v2/images?" + urlencode([*kept, ("marker", page.images[-1].id)])
    return json_response(document)


async def show(request: Request) -> Response:
    image = await services(request).images.get(context(request), request.path_params["id"])
    return json_response(image_document(image))


@takes_body
async def update(request: Request) -> Response:
    svc = services(request)
    kind = media_type(request)
    if kind not in patch.MEDIA_TYPES:
        raise ApiError(415, f"Unsupported Content-Type {kind!r} for PATCH; use one of "
                       f"{', '.join(patch.MEDIA_TYPES)}.",
                       headers={"Accept-Patch": ", ".join(patch.MEDIA_TYPES)})
    body = await read_json(request, svc.settings.max_request_body_size, patch.MEDIA_TYPES)
    image = await svc.images.update(context(request), request.path_params["id"], kind, body)
    return json_response(image_document(image))


async def delete(request: Request) -> Response:
    await services(request).images.delete(context(request), request.path_params["id"])
    return Response(status_code=204)


async def deactivate(request: Request) -> Response:
    await services(request).images.deactivate(context(request), request.path_params["id"])
    return Response(status_code=204)


async def reactivate(request: Request) -> Response:
    await services(request).images.reactivate(context(request), request.path_params["id"])
    return Response(status_code=204)


async def add_tag(request: Request) -> Response:
    p = request.path_params
    await services(request).images.add_tag(context(request), p["id"], p["tag"])
    return Response(status_code=204)


async def delete_tag(request: Request) -> Response:
    p = request.path_params
    await services(request).images.delete_tag(context(request), p["id"], p["tag"])
    return Response(status_code=204)


routes = [
    resource("/v2/images", get=index, post=create),
    resource("/v2/images/{id}", get=show, patch=update, delete=delete),
    resource("/v2/images/{id}/actions/deactivate", post=deactivate),
    resource("/v2/images/{id}/actions/reactivate", post=reactivate),
    resource("/v2/images/{id}/tags/{tag}", put=add_tag, delete=delete_tag),
]
