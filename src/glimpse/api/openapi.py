"""The OpenAPI 3.1 document of the API as this server serves it (`GET /v2/openapi.json`).

Built on each request by walking the app's routes: every `Resource` method whose handler carries an
`Operation` (see `glimpse.api.routing`) becomes an operation, and the image schemas are the ones
`Schemas` validates requests with, translated from Glance's draft-4 dialect to JSON Schema 2020-12
(the dialect of OpenAPI 3.1). Nothing here is written twice, so the document cannot drift from the
routes or from validation. Every response carries `x-openstack-request-id`; every operation also
documents `COMMON_ERRORS`: 400 (a body sent where none is taken), 405 (another method, with
`Allow`), and the HTTP layer's 414 and 431.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from starlette.routing import BaseRoute

from glimpse.api.identity import PUBLIC_PATHS
from glimpse.api.routing import Operation, Param, Reply, Resource, operation_of, ref
from glimpse.services import patch
from glimpse.services.bounds import MAX_IDENTITY_LENGTH
from glimpse.services.schemas import Schemas

OPENAPI_VERSION = "3.1.0"
DIALECT = "https://spec.openapis.org/oas/3.1/dialect/base"

#: Response headers an `Operation` names; `x-openstack-request-id` is on every response.
HEADERS: dict[str, dict[str, Any]] = {
    "x-openstack-request-id": {
        "description": "The request id: the caller's, when sane, else a new `req-<uuid>`.",
        "required": True, "schema": {"type": "string", "minLength": 1}},
    "Location": {"description": "Absolute URL of the created image.", "required": True,
                 "schema": {"type": "string", "format": "uri"}},
    "Content-Range": {"description": "`bytes start-end/size` on 206, `bytes */size` on 416.",
                      "required": True, "schema": {"type": "string"}},
    "Content-MD5": {"description": "The image's MD5 checksum, when it has one.",
                    "schema": {"type": "string"}},
    "Allow": {"description": "The methods this path serves.", "required": True,
              "schema": {"type": "string"}},
    "Accept-Patch": {"description": "The JSON-patch media types this server reads.",
                     "required": True, "schema": {"type": "string"}},
    "WWW-Authenticate": {"description": "Where to get credentials: `Keystone uri=\"<url>\"` "
                                        "(keystone mode) or `Bearer realm=\"glimpse\"` "
                                        "(tokens mode).",
                         "required": True, "schema": {"type": "string"}},
}

_ERROR_FIELDS = {
    "type": "object",
    "required": ["message", "code", "title"],
    "properties": {
        "message": {"type": "string"},
        "code": {"type": "string", "pattern": "^[1-5][0-9][0-9] ",
                 "description": "The status code and its phrase, e.g. `404 Not Found`."},
        "title": {"type": "string", "description": "The status phrase."},
    },
}

#: Schema keywords whose value is one schema, a list of schemas, or a mapping of names to schemas.
_ONE = ("additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
        "additionalItems")
_LIST = ("allOf", "anyOf", "oneOf")
_MAP = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas")


def translate(schema: Any) -> Any:
    """A draft-4 schema as JSON Schema 2020-12, meaning the same for every instance.

    `name` becomes `title`; Glance's own keywords (`is_base`, the hyper-schema `links`) become
    `x-` extensions; `definitions` becomes `$defs`; boolean `exclusiveMinimum`/`Maximum` become
    numbers; list-form `items` becomes `prefixItems`. `type` lists, `enum` with null, `readOnly`
    and the rest mean the same in both dialects and are kept. One difference no keyword can
    express: draft-4 validators (and so Glance and Glimpse) refuse `1.0` as an `integer`, which
    2020-12 counts as one; such a body gets 400.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "name" and isinstance(value, str):
            out.setdefault("title", value)
        elif key in ("is_base", "links"):
            out[f"x-{key.replace('_', '-')}"] = value
        elif key in _MAP and isinstance(value, dict):
            out["$defs" if key == "definitions" else key] = {
                name: translate(sub) for name, sub in value.items()}
        elif key in _LIST and isinstance(value, list):
            out[key] = [translate(sub) for sub in value]
        elif key in _ONE:
            out[key] = translate(value)
        elif key == "items":
            if isinstance(value, list):
                out["prefixItems"] = [translate(sub) for sub in value]
            else:
                out["items"] = translate(value)
        elif key == "dependencies" and isinstance(value, dict):
            for name, sub in value.items():
                bucket = "dependentRequired" if isinstance(sub, list) else "dependentSchemas"
                out.setdefault(bucket, {})[name] = translate(sub)
        elif key == "id" and isinstance(value, str):
            out["$id"] = value
        else:
            out[key] = value
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool) and out.pop(bound) and limit in out:
            out[bound] = out.pop(limit)
    return out


def _patch_schemas() -> dict[str, Any]:
    """The two JSON-patch dialects `services.patch.parse` reads, as schemas of their shape."""
    pointer = {"type": "string", "description": "A one-level JSON pointer, e.g. `/name`."}
    valued = [op for op in patch.OPS if op != "remove"]
    v21_item = {"oneOf": [
        {"type": "object", "required": ["op", "path", "value"],
         "properties": {"op": {"enum": valued}, "path": pointer, "value": {}}},
        {"type": "object", "required": ["op", "path"],
         "properties": {"op": {"const": "remove"}, "path": pointer}},
    ]}
    # Exactly one of the operation names is a member; other members are ignored.
    v20_item = {"oneOf": [
        {"type": "object", "required": [op, *(["value"] if op in valued else [])],
         "properties": {op: pointer, **({"value": {}} if op in valued else {})},
         "not": {"anyOf": [{"required": [other]} for other in patch.OPS if other != op]}}
        for op in patch.OPS
    ]}
    return {
        "imagePatchV21": {"title": "image patch (v2.1)", "type": "array", "items": v21_item,
                          "description": "RFC 6902 subset: add, remove and replace."},
        "imagePatchV20": {"title": "image patch (v2.0)", "type": "array", "items": v20_item,
                          "description": "Glance's older form: `{\"replace\": \"/name\", "
                                         "\"value\": ...}`."},
    }


def components(schemas: Schemas) -> dict[str, Any]:
    """The shared schemas every operation refers to by name."""
    link = {"type": "object", "required": ["rel", "href"],
            "properties": {"rel": {"type": "string"}, "href": {"type": "string"}}}
    return {
        **{name: translate(schema) for name, schema in schemas.by_name().items()},
        **_patch_schemas(),
        "error": {
            "title": "error",
            "description": "Glance's error body: flat for clients that accept JSON, nested "
                           "under `error` for those that accept anything (or send no Accept).",
            "anyOf": [
                _ERROR_FIELDS,
                {"type": "object", "required": ["error"], "properties": {"error": _ERROR_FIELDS}},
            ],
        },
        "versions": {
            "title": "versions", "type": "object", "required": ["versions"],
            "properties": {"versions": {"type": "array", "items": {
                "type": "object", "required": ["id", "status", "links"],
                "properties": {
                    "id": {"type": "string", "pattern": "^v2\\.[0-9]+$"},
                    "status": {"enum": ["CURRENT", "SUPPORTED"]},
                    "links": {"type": "array", "items": link},
                },
            }}},
        },
        "importInfo": {
            "title": "import info", "type": "object", "required": ["import-methods"],
            "properties": {"import-methods": {
                "type": "object", "required": ["value"],
                "properties": {"description": {"type": "string"}, "type": {"type": "string"},
                               "value": {"type": "array", "items": {"type": "string"}}},
            }},
        },
        "jsonSchema": {"title": "JSON schema", "type": "object",
                       "description": "A schema in Glance's draft-4 dialect."},
        "openapi": {"title": "OpenAPI document", "type": "object",
                    "required": ["openapi", "info", "paths"]},
    }


_IDENTITY = {"type": "string", "maxLength": MAX_IDENTITY_LENGTH, "pattern": "^[ -~]*$"}
#: Parameters every operation reads (the no-auth request context, the request id).
COMMON_PARAMETERS: dict[str, dict[str, Any]] = {
    "projectId": {"name": "X-Project-Id", "in": "header", "schema": _IDENTITY,
                  "description": "noauth mode: act for this project (default: "
                                 "`default_project`); printable ASCII. Ignored when a token "
                                 "names the caller."},
    "roles": {"name": "X-Roles", "in": "header", "schema": {"type": "string",
                                                              "pattern": "^[ -~]*$"},
              "description": "Comma-separated roles (default: admin, member, reader), each "
                             f"at most {MAX_IDENTITY_LENGTH} characters."},
    "userId": {"name": "X-User-Id", "in": "header", "schema": _IDENTITY,
               "description": "The acting user, recorded in the request context."},
    "authToken": {"name": "X-Auth-Token", "in": "header", "schema": {"type": "string"},
                  "description": "A Keystone token (keystone mode) or an API token (tokens "
                                 "mode; `Authorization: Bearer` works too). Ignored in noauth "
                                 "mode, where the headers below name the caller instead."},
    "requestId": {"name": "x-openstack-request-id", "in": "header",
                  "schema": {"type": "string"},
                  "description": "Adopted as the request id when printable and at most 64 "
                                 "characters long."},
}


def _headers(names: Iterable[str]) -> dict[str, Any]:
    return {name: HEADERS[name] for name in ("x-openstack-request-id", *names)}


def _parameter(param: Param) -> dict[str, Any]:
    schema: Any = dict(param.schema)
    if param.repeated:
        schema = {"type": "array", "items": schema}
    out: dict[str, Any] = {"name": param.name, "in": param.where,
                           "description": param.description, "schema": schema}
    if param.where == "path" or param.required:
        out["required"] = True
    if param.repeated:
        out.update(style="form", explode=True)
    return out


def _reply(reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description, "headers": _headers(reply.headers)}
    if reply.schema is not None:
        out["content"] = {reply.media_type: {"schema": dict(reply.schema)}}
    if reply.links:
        out["links"] = {
            name: {"operationId": link.operation_id, "parameters": dict(link.parameters),
                   **({"description": link.description} if link.description else {})}
            for name, link in reply.links.items()
        }
    return out


def _error(status: int, description: str, headers: Iterable[str]) -> dict[str, Any]:
    return {
        "description": description or HTTPStatus(status).phrase,
        "headers": _headers(headers),
        "content": {"application/json": {"schema": ref("error")},
                    "text/plain": {"schema": {"type": "string"}}},
    }


#: What every operation can answer, whatever it does (`glimpse.api.http` refuses 414 and 431
#: while it parses the request head).
COMMON_ERRORS = {
    400: "A request body was sent to an operation that takes none, or the request is otherwise "
         "malformed.",
    405: "This path does not serve the method; `Allow` lists those it serves.",
    414: "The request line is longer than `max_request_line`.",
    431: "A header line, or the header lines together, are over `max_header_line` / "
         "`max_header_size`, or there are more than `max_header_count`.",
}


#: What every operation that needs credentials can answer besides (in keystone and tokens mode).
CREDENTIAL_ERRORS = {
    401: "No valid credentials: the token is missing, invalid, expired or revoked.",
    503: "The identity service (Keystone, or the token file) cannot be consulted now.",
}


def operation(op: Operation, public: bool = False) -> dict[str, Any]:
    """One operation object: `op` plus the `COMMON_ERRORS` every operation can answer, and the
    `CREDENTIAL_ERRORS` of those that are not `public`."""
    responses: dict[str, Any] = {str(s): _reply(r) for s, r in sorted(op.replies.items())}
    errors = {**COMMON_ERRORS, **({} if public else CREDENTIAL_ERRORS), **op.errors}
    errors[405] = COMMON_ERRORS[405]
    headers = {405: ("Allow",), **({} if public else {401: ("WWW-Authenticate",)}),
               **op.error_headers}
    for status in sorted(errors):
        responses[str(status)] = _error(status, errors[status], headers.get(status, ()))
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.description:
        out["description"] = op.description
    out["parameters"] = [
        *(_parameter(p) for p in op.params),
        *({"$ref": f"#/components/parameters/{name}"} for name in COMMON_PARAMETERS),
    ]
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body.required,
            "content": {kind: {"schema": dict(s)} for kind, s in op.body.content.items()},
            **({"description": op.body.description} if op.body.description else {}),
        }
    out["responses"] = responses
    return out


def operations(routes: Iterable[BaseRoute]) -> dict[str, dict[str, Operation]]:
    """`{path: {method: Operation}}` for every described method of every resource."""
    found: dict[str, dict[str, Operation]] = {}
    for route in routes:
        if not isinstance(route, Resource):
            continue
        for method, handler in route.handlers.items():
            described = operation_of(handler)
            if described is not None:
                found.setdefault(route.path, {})[method] = described
    return found


def document(routes: Iterable[BaseRoute], schemas: Schemas, server_url: str,
             api_version: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for `routes` served at `server_url`."""
    paths: dict[str, Any] = {}
    for path, methods in operations(routes).items():
        paths[path] = {method.lower(): operation(op, public=path in PUBLIC_PATHS)
                       for method, op in sorted(methods.items())}
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": DIALECT,
        "info": {
            "title": "Glimpse Images API",
            "version": api_version,
            "description": "The OpenStack Images API v2 as Glimpse serves it. Error bodies are "
                           "Glance's: JSON for clients that accept JSON (flat) or anything "
                           "(nested under `error`), plain text for those that ask for text.",
        },
        "servers": [{"url": server_url.rstrip("/") or "/"}],
        "paths": paths,
        "components": {"schemas": components(schemas), "parameters": COMMON_PARAMETERS},
    }

