"""`GET /v2/schemas/{name}` and the discovery documents that are plain facts of this server:
`/v2/info/import` and the OpenAPI document `/v2/openapi.json` (beyond Glance, which has none)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from glimpse.api import openapi
from glimpse.api.bodies import base_url, json_response
from glimpse.api.routes.versions import CURRENT
from glimpse.api.routing import Operation, Param, Reply, describe, ref, resource
from glimpse.api.wiring import services


@describe(Operation(
    "showSchema", "Show one of the JSON schemas that validate requests.",
    params=(Param("name", "path", "The schema's name.",
                  {"type": "string", "pattern": "^[^/]+$"}),),
    replies={200: Reply("The schema (draft-4, as Glance serves it).", ref("jsonSchema"))},
    errors={404: "No schema of that name."},
))
async def schema(request: Request) -> Response:
    found = services(request).schemas.by_name().get(request.path_params["name"])
    if found is None:
        raise HTTPException(404, f"No schema named {request.path_params['name']!r}.")
    return json_response(found)


@describe(Operation(
    "showImportInfo", "The interoperable image import methods this server offers.",
    replies={200: Reply("The import methods.", ref("importInfo"))},
))
async def import_info(request: Request) -> Response:
    methods = list(services(request).imports.methods)
    return json_response({"import-methods": {
        "description": "Import methods available.", "type": "array", "value": methods}})


@describe(Operation(
    "showOpenApi", "This OpenAPI 3.1 document, built from the routes and the schemas.",
    replies={200: Reply("The document.", ref("openapi"))},
))
async def openapi_document(request: Request) -> Response:
    svc = services(request)
    root = base_url(request, svc.settings.public_endpoint)
    return json_response(openapi.document(request.app.routes, svc.schemas, root, CURRENT))


routes = [
    resource("/v2/schemas/{name}", get=schema),
    resource("/v2/info/import", get=import_info),
    resource("/v2/openapi.json", get=openapi_document),
]
