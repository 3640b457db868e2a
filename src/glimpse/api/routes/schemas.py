"""`GET /v2/schemas/{name}` and the discovery documents that are plain facts of this server."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.bodies import json_response
from glimpse.api.routing import resource
from glimpse.api.wiring import services


async def schema(request: Request) -> Response:
    found = services(request).schemas.by_name().get(request.path_params["name"])
    if found is None:
        raise HTTPException(404, f"No schema named {request.path_params['name']!r}.")
    return json_response(found)


async def import_info(request: Request) -> Response:
    return json_response({"import-methods": {
        "description": "Import methods available.", "type": "array", "value": []}})


routes = [
    resource("/v2/schemas/{name}", get=schema),
    resource("/v2/info/import", get=import_info),
]
