"""Discovery routes: `GET /v2/info/usage` (API 2.15), the quota usage of the caller's project."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.bodies import json_response
from glimpse.api.routing import Operation, Reply, describe, resource
from glimpse.api.wiring import context, services
from glimpse.domain.quotas import NAMES

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


routes = [resource("/v2/info/usage", get=usage)]
