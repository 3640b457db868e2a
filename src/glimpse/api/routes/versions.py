"""The versions document: `GET /` → 300 and `GET /versions` → 200, as Glance sends them; and
`GET /healthcheck` → 200 `OK` in plain text, as oslo.middleware's healthcheck (load balancers
probe it). All three answer without credentials (`identity.PUBLIC_PATHS`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from glimpse.api.bodies import base_url, json_response
from glimpse.api.routing import Operation, Reply, describe, ref, resource
from glimpse.api.wiring import services

CURRENT = "2.17"
SUPPORTED = ("2.15", "2.9", "2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0")
#: With several stores Glance also lists the multi-store versions (2.8 stores, 2.10 delete
#: from a store, 2.11-2.13 their later additions, image tasks in 2.12), as Glimpse then does.
MULTISTORE = ("2.15", "2.13", "2.12", "2.11", "2.10", "2.9", "2.8", "2.7", "2.6", "2.5", "2.4",
              "2.3", "2.2", "2.1", "2.0")


def document(request: Request) -> dict[str, object]:
    svc = services(request)
    href = base_url(request, svc.settings.public_endpoint) + "v2/"
    supported = MULTISTORE if svc.discovery.multistore else SUPPORTED
    entries = [(CURRENT, "CURRENT"), *((v, "SUPPORTED") for v in supported)]
    return {
        "versions": [
            {"id": f"v{v}", "status": status, "links": [{"rel": "self", "href": href}]}
            for v, status in entries
        ]
    }


@describe(Operation(
    "listVersionsRoot", "The API versions, as a 300 Multiple Choices.",
    replies={300: Reply("The versions.", ref("versions"))},
))
async def multiple_choices(request: Request) -> Response:
    return json_response(document(request), status=300)


@describe(Operation(
    "listVersions", "The API versions.",
    replies={200: Reply("The versions.", ref("versions"))},
))
async def versions(request: Request) -> Response:
    return json_response(document(request))


@describe(Operation(
    "healthcheck", "Whether this server answers: `OK`, in plain text, without credentials.",
    replies={200: Reply("The server is up.", {"type": "string", "const": "OK"},
                        media_type="text/plain")},
))
async def healthcheck(_request: Request) -> Response:
    return PlainTextResponse("OK")


routes = [
    resource("/", get=multiple_choices),
    resource("/versions", get=versions),
    resource("/healthcheck", get=healthcheck),
]
