"""The location API of 2.17 (`POST/GET /v2/images/{id}/locations`) and the tasks routes: the
tasks of an image (2.12) and the admin tasks API (`GET /v2/tasks`, `GET /v2/tasks/{id}`, and
`POST /v2/tasks` for `import` tasks)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.bodies import json_response, read_json
from glimpse.api.errors import ApiError
from glimpse.api.forward import forward, forwarded
from glimpse.api.inputs import image_id
from glimpse.api.routes.images import IMAGE_ID, NOT_FOUND
from glimpse.api.routing import Body, Operation, Param, Reply, describe, ref, resource, takes_body
from glimpse.api.wiring import context, services
from glimpse.services.imports import StagedElsewhere
from glimpse.services.tasks import task_document

_HASH = {"type": "object", "additionalProperties": False,
         "properties": {"os_hash_algo": {"type": "string"},
                        "os_hash_value": {"type": "string"}}}
LOCATION_BODY = {
    "type": "object", "required": ["url"], "additionalProperties": False,
    "properties": {"url": {"type": "string", "minLength": 1, "maxLength": 2048},
                   "validation_data": _HASH},
}
LOCATIONS = {"type": "array", "items": {
    "type": "object", "required": ["url", "metadata"],
    "properties": {"url": {"type": "string"}, "metadata": {"type": "object"}}}}
TASK_ID = Param("task_id", "path", "The task id.", {"type": "string", "pattern": "^[^/]+$"})


@takes_body
@describe(Operation(
    "addImageLocation", "Add the first location of a queued image (API 2.17); with "
    "`do_secure_hash`, a `location_import` task hashes its data before the image is active.",
    params=(IMAGE_ID,),
    body=Body({"application/json": LOCATION_BODY}, "The URL, and optionally its hashes."),
    replies={202: Reply("Accepted: the image is importing (or active without hashing).")},
    errors={400: "The URL names no store of this server, no data is there, or validation_data "
                 "is malformed.",
            403: "Only the image's owner or a service may add a location.",
            404: NOT_FOUND,
            409: "The image is not queued.",
            415: "The body is not `application/json`."},
))
async def add(request: Request) -> Response:
    svc = services(request)
    body = await read_json(request, svc.settings.max_request_body_size, ("application/json",))
    await svc.locations.add(context(request), image_id(request), body)
    return Response(status_code=202)


@describe(Operation(
    "listImageLocations", "The locations of an image (API 2.17), for services and admins.",
    params=(IMAGE_ID,),
    replies={200: Reply("The locations, `{url, metadata}` each.", LOCATIONS)},
    errors={403: "Only services and admins may read locations.", 404: NOT_FOUND},
))
async def index(request: Request) -> Response:
    svc = services(request)
    return json_response(await svc.locations.list(context(request), image_id(request)))


@describe(Operation(
    "listImageTasks", "The tasks of an image, oldest first (API 2.12).", params=(IMAGE_ID,),
    replies={200: Reply("The tasks.", {"type": "object", "required": ["tasks"],
                                       "properties": {"tasks": {"type": "array",
                                                                "items": ref("task")}}})},
    errors={404: NOT_FOUND},
))
async def image_tasks(request: Request) -> Response:
    svc = services(request)
    tasks = await svc.tasks.of_image(context(request), image_id(request))
    return json_response({"tasks": [task_document(t) for t in tasks]})


@describe(Operation(
    "listTasks", "Tasks, newest first (admin).",
    params=(Param("limit", "query", "Page size.", {"type": "integer", "minimum": 0}),
            Param("marker", "query", "Id of the last task of the previous page.")),
    replies={200: Reply("A page of tasks.", ref("tasks"))},
    errors={400: "A bad limit.", 403: "Only admins may use the tasks API.",
            404: "The marker names no task."},
))
async def tasks_index(request: Request) -> Response:
    svc = services(request)
    raw = request.query_params.get("limit", "")
    limit = svc.settings.limit_param_default
    if raw:
        if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
            raise ApiError(400, "limit param must be a non-negative integer")
        limit = min(int(raw), svc.settings.api_limit_max)
    tasks = await svc.tasks.find(context(request), limit, request.query_params.get("marker"))
    document: dict[str, object] = {"tasks": [task_document(t) for t in tasks],
                                   "first": "/v2/tasks", "schema": "/v2/schemas/tasks"}
    if tasks and len(tasks) == limit:
        kept = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        document["next"] = "/v2/tasks?" + urlencode([*kept, ("marker", tasks[-1].id)])
    return json_response(document)


TASK_BODY = {
    "type": "object", "required": ["type", "input"],
    "properties": {
        "type": {"type": "string", "enum": ["import"]},
        "input": {"type": "object",
                  "required": ["import_from", "import_from_format", "image_properties"],
                  "properties": {"import_from": {"type": "string"},
                                 "import_from_format": {"type": "string"},
                                 "image_properties": {"type": "object"}}},
    },
}


@takes_body
@describe(Operation(
    "createTask", "Create an `import` task (the legacy tasks API, admin): creates an image from "
    "`input.image_properties` and imports its data from `input.import_from` as web-download "
    "does; the task's `result` names the image once it succeeds.",
    body=Body({"application/json": TASK_BODY}, "The task's type and input."),
    replies={201: Reply("The task, pending.", ref("task"))},
    errors={400: "Another type, an input field missing or mistyped, a URL the import filters "
                 "refuse, or image properties the image schema refuses.",
            403: "Only admins may use the tasks API (or a reserved image attribute).",
            409: "The new image could not be locked for the import.",
            413: "The body, or the image's number of properties or tags, is over a limit.",
            415: "The body is not `application/json`."},
))
async def create_task(request: Request) -> Response:
    svc = services(request)
    body = await read_json(request, svc.settings.max_request_body_size, ("application/json",))
    task = await svc.legacy_tasks.create(context(request), body)
    return json_response(task_document(task), status=201)


@describe(Operation(
    "showTask", "Show a task (admin).", params=(TASK_ID,),
    replies={200: Reply("The task.", ref("task"))},
    errors={403: "Only admins may use the tasks API.", 404: "No such task."},
))
async def show_task(request: Request) -> Response:
    svc = services(request)
    task = await svc.tasks.get(context(request), request.path_params["task_id"])
    return json_response(task_document(task))


IMPORT_BODY = {
    "type": "object", "required": ["method"],
    "properties": {
        "method": {"type": "object", "required": ["name"],
                   "properties": {"name": {"type": "string"}, "uri": {"type": "string"}}},
        "stores": {"type": "array", "items": {"type": "string"}},
        "all_stores": {"type": "boolean"},
        "all_stores_must_succeed": {"type": "boolean"},
    },
}


@takes_body
@describe(Operation(
    "importImage", "Import the image's data (interoperable import): glance-direct (staged "
    "data), web-download (`method.uri`) or copy-image (to more stores); runs as a task.",
    params=(IMAGE_ID,),
    body=Body({"application/json": IMPORT_BODY}, "The method and the target stores."),
    replies={202: Reply("Accepted: an `api_image_import` task runs it (see the image's "
                        "tasks); the image is importing.")},
    errors={400: "The method is unknown or not enabled, the URI does not pass filtering, or "
                 "a store is unknown or read-only.",
            403: "The caller may not import to (or copy) this image.",
            404: NOT_FOUND,
            409: "The image is not in the status the method needs, or an import is running.",
            415: "The body is not `application/json`.",
            503: "The server of the deployment that holds the staged data cannot be reached "
                 "(docs/import.md)."},
))
async def import_image(request: Request) -> Response:
    svc = services(request)
    body = await read_json(request, svc.settings.max_request_body_size, ("application/json",))
    try:
        await svc.imports.begin(context(request), image_id(request), body, forwarded(request))
    except StagedElsewhere as elsewhere:
        return await forward(request, elsewhere.url, json.dumps(body).encode())
    return Response(status_code=202)


routes = [
    resource("/v2/images/{id}/import", post=import_image),
    resource("/v2/images/{id}/locations", get=index, post=add),
    resource("/v2/images/{id}/tasks", get=image_tasks),
    resource("/v2/tasks", get=tasks_index, post=create_task),
    resource("/v2/tasks/{task_id}", get=show_task),
]
