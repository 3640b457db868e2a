"""The versions document: `GET /` → 300 and `GET /versions` → 200, as Glance sends them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.bodies import base_url, json_response
from glimpse.api.routing import resource
from glimpse.api.wiring import services

CURRENT = "2.17"
SUPPORTED = ("2.15", "2.9", "2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0")


def document(request: Request) -> dict[str, object]:
    href = base_url(request, services(request).settings.public_endpoint) + "v2/"
    entries = [(CURRENT, "CURRENT"), *((v, "SUPPORTED") for v in SUPPORTED)]
    return {
        "versions": [
            {"id": f"v{v}", "status": status, "links": [{"rel": "self", "href": href}]}
            for v, status in entries
        ]
    }


async def multiple_choices(request: Request) -> Response:
    return json_response(document(request), status=300)


async def versions(request: Request) -> Response:
    return json_response(document(request))


routes = [
    resource("/", get=multiple_choices),
    resource("/versions", get=versions),
]
