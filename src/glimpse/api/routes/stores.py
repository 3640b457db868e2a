"""`DELETE /v2/stores/{store}/{id}` (API 2.10): remove an image's data from one store."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.inputs import image_id
from glimpse.api.routes.images import IMAGE_ID
from glimpse.api.routing import Operation, Param, Reply, describe, resource
from glimpse.api.wiring import context, services
from glimpse.domain.errors import NotFound

STORE = Param("store", "path", "The store's id.", {"type": "string", "pattern": "^[^/]+$"})


@describe(Operation(
    "deleteImageFromStore", "Remove an active image's data from one store (multi-store only).",
    params=(STORE, IMAGE_ID),
    replies={204: Reply("The store no longer holds the image's data.")},
    errors={403: "Only admins may remove an image's data from a store.",
            404: "Multi-store is off, or no such image visible to the caller, or the store "
                 "holds none of its data.",
            409: "The image is not active, the store holds its last copy, or it was changed "
                 "concurrently."},
))
async def delete(request: Request) -> Response:
    svc = services(request)
    if not svc.discovery.multistore:
        raise NotFound("Multi backend is not supported at this site.")
    await svc.images.delete_from_store(context(request), request.path_params["store"],
                                       image_id(request))
    return Response(status_code=204)


routes = [resource("/v2/stores/{store}/{id}", delete=delete)]
