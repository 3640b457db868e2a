"""Discovery routes: `GET /v2/info/usage` (API 2.15), the quota usage of the caller's project."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.bodies import json_response
from glimpse.api.routing import Operation, Reply, describe, resource
from glimpse.api.wiring import context, services
from glimpse.domain.quotas import NAMES
from glimpse.services.discovery import StoreEntry

_QUOTA = {
    "type": "object",
    "properties": {
        "limit": {"type": "integer", "minimum": -1,
                  "description": "The limit; -1 means none."},
        "usage": {"type": "integer", "minimum": 0},
    },
    "required": ["limit", "usage"],
    "additionalProperties": False,
}
USAGE = {
    "type": "object",
    "properties": {"usage": {
        "type": "object",
        "properties": dict.fromkeys(NAMES, _QUOTA),
        "required": list(NAMES),
        "additionalProperties": False,
    }},
    "required": ["usage"],
    "additionalProperties": False,
}


@describe(Operation(
    "getUsage", "Limit and usage of every quota of the caller's project.",
    description="`image_size_total` (bytes of stored image data), `image_stage_total` (bytes "
                "in staging), `image_count_total` (images not deleted) and "
                "`image_count_uploading` (images whose data is on the way in). Sizes are "
                "bytes, where Glance counts MiB.",
    replies={200: Reply("The quotas of the caller's project.", USAGE)},
    errors={403: "The request acts for no project, or with no role on it."},
))
async def usage(request: Request) -> Response:
    report = await services(request).quotas.report(context(request))
    return json_response({"usage": {line.name: {"limit": line.limit, "usage": line.usage}
                                    for line in report}})


_STORE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"}, "description": {"type": "string"},
        "default": {"const": "true"}, "read-only": {"const": "true"},
        "type": {"type": "string"}, "weight": {"type": "integer"},
        "properties": {"type": "object"},
    },
    "required": ["id", "description"],
}
STORES = {"type": "object", "required": ["stores"],
          "properties": {"stores": {"type": "array", "items": _STORE}}}
_OFF = "Multi-store is off: no `[stores.<id>]` tables are configured."


def _store_document(entry: StoreEntry, detail: bool) -> dict[str, object]:
    document: dict[str, object] = {"id": entry.id, "description": entry.description}
    if entry.default:
        document["default"] = "true"
    if entry.read_only:
        document["read-only"] = "true"
    if detail:
        document.update(type=entry.driver, weight=entry.weight, properties=entry.properties)
    return document


@describe(Operation(
    "listStores", "The stores images can be written to (multi-store only).",
    replies={200: Reply("The stores, heaviest weight first.", STORES)},
    errors={404: _OFF},
))
async def stores(request: Request) -> Response:
    found = services(request).discovery.summary(context(request))
    return json_response({"stores": [_store_document(e, False) for e in found]})


@describe(Operation(
    "listStoresDetail", "The stores with their driver, weight and options (admin or service).",
    replies={200: Reply("The stores, heaviest weight first.", STORES)},
    errors={403: "Only admins and services see the details.", 404: _OFF},
))
async def stores_detail(request: Request) -> Response:
    found = services(request).discovery.detail(context(request))
    return json_response({"stores": [_store_document(e, True) for e in found]})


routes = [
    resource("/v2/info/usage", get=usage),
    resource("/v2/info/stores", get=stores),
    resource("/v2/info/stores/detail", get=stores_detail),
]
