"""`GET /v2/openapi.json`: a valid OpenAPI 3.1 document that matches the routes the app serves.

The truth is the app's own route table (`create_app`); every route and method in it must be in
the document, and every documented operation must be served by the real server (answering
neither a route-level 404 nor 405) with a status the document lists for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft4Validator, Draft202012Validator
from openapi_spec_validator import validate
from starlette.applications import Starlette

from glimpse.api.app import create_app
from glimpse.api.openapi import translate
from glimpse.api.routing import Resource
from glimpse.config import Settings
from glimpse.services.schemas import Schemas
from tests.api.helpers import PATCH_21, create_raw

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: Starlette's message for a path no route matches (as opposed to "no such image").
ROUTE_NOT_FOUND = "The resource could not be found."


@pytest.fixture(scope="module")
def document(api: httpx.Client) -> dict[str, Any]:
    resp = api.get("/v2/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, Any] = resp.json()
    return body


def served_routes(tmp_path: Path) -> dict[str, set[str]]:
    """`{path: methods}` from the route table of an app built as `glimpse serve` builds it."""
    app = create_app(Settings(data_dir=str(tmp_path)))
    inner = app._app  # type: ignore[attr-defined]  # EdgeMiddleware wraps the Starlette app
    assert isinstance(inner, Starlette)
    table: dict[str, set[str]] = {}
    for route in inner.routes:
        assert isinstance(route, Resource), f"{route!r} is not a Resource: it has no description"
        table[route.path] = set(route.handlers)
    return table


def documented(document: dict[str, Any]) -> dict[str, set[str]]:
    return {path: {m.upper() for m in item} for path, item in document["paths"].items()}


def test_document_validates(document: dict[str, Any]) -> None:
    validate(document)  # OpenAPI 3.1, schemas included (2020-12 dialect)
    assert document["openapi"].startswith("3.1.")


def test_every_route_is_documented_and_nothing_else(document: dict[str, Any],
                                                    tmp_path: Path) -> None:
    assert documented(document) == served_routes(tmp_path)


def _keywords(schema: Any) -> set[str]:
    """Every keyword used at a schema position of `schema` (not property names)."""
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key, value in schema.items():
        if key in ("properties", "$defs", "patternProperties"):
            for sub in value.values():
                found |= _keywords(sub)
        elif key in ("allOf", "anyOf", "oneOf", "prefixItems"):
            for sub in value:
                found |= _keywords(sub)
        elif key in ("items", "additionalProperties", "not", "if", "then", "else"):
            found |= _keywords(value)
    return found


def test_every_schema_is_2020_12(document: dict[str, Any]) -> None:
    for name, schema in document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        # Draft-4 hyper-schema and Glance's own keywords only as `x-` extensions.
        assert not _keywords(schema) & {"is_base", "links", "name", "definitions"}, name


def test_translated_image_schema_judges_as_the_draft4_one(document: dict[str, Any]) -> None:
    settings = Settings()
    source = Schemas(settings.disk_formats, settings.container_formats).image
    assert document["components"]["schemas"]["image"] == translate(source)
    old, new = Draft4Validator(source), Draft202012Validator(translate(source))
    samples: list[Any] = [
        {}, {"name": None}, {"name": "x" * 256}, {"disk_format": None}, {"disk_format": "nope"},
        {"min_ram": -1}, {"min_ram": 1.5}, {"tags": ["a", 1]}, {"kernel_id": None},
        {"kernel_id": "not-a-uuid"}, {"extra": "text"}, {"extra": 1},
        {"locations": [{"url": "u"}]}, {"id": "00000000-0000-0000-0000-000000000000"},
    ]
    for sample in samples:
        assert old.is_valid(sample) == new.is_valid(sample), sample
    assert translate(source)["properties"]["kernel_id"]["x-is-base"] is False


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for item in document["paths"].values() for op in item.values()}


def test_every_response_names_its_headers(document: dict[str, Any]) -> None:
    for op_id, op in _operations(document).items():
        for status, response in op["responses"].items():
            assert "x-openstack-request-id" in response["headers"], (op_id, status)
        assert "Allow" in op["responses"]["405"]["headers"], op_id
        assert {"400", "405", "414", "431"} <= set(op["responses"]), op_id
    create = _operations(document)["createImage"]["responses"]["201"]
    assert "Location" in create["headers"]
    download = _operations(document)["downloadImageData"]["responses"]
    assert "Content-Range" in download["206"]["headers"]
    assert "Content-Range" in download["416"]["headers"]


def test_links_reach_real_operations_and_parameters(document: dict[str, Any]) -> None:
    operations = _operations(document)
    linked = set()
    for op in operations.values():
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                target = operations[link["operationId"]]
                names = {p["name"] for p in target["parameters"] if "name" in p}
                assert set(link["parameters"]) <= names, link
                linked.add(link["operationId"])
    for op_id in ("showImage", "updateImage", "uploadImageData", "downloadImageData",
                  "addImageTag", "deleteImageTag", "deactivateImage", "deleteImage"):
        assert op_id in linked, op_id


def test_patch_takes_both_json_patch_media_types(document: dict[str, Any]) -> None:
    body = _operations(document)["updateImage"]["requestBody"]["content"]
    assert set(body) == {"application/openstack-images-v2.1-json-patch",
                         "application/openstack-images-v2.0-json-patch"}


class _Values(dict[str, str]):
    """Path parameter values: the given ones, and a plain word for any other."""

    def __missing__(self, key: str) -> str:
        return "documented"


def _request_for(method: str, op: dict[str, Any]) -> dict[str, Any]:
    """A minimal well-formed request for a documented operation."""
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        return {"json": {"name": "documented"}}
    if PATCH_21 in content:
        return {"content": b"[]", "headers": {"Content-Type": PATCH_21}}
    if "application/octet-stream" in content:
        return {"content": b"data", "headers": {"Content-Type": "application/octet-stream"}}
    return {}


def test_every_documented_operation_is_served(document: dict[str, Any],
                                              api: httpx.Client) -> None:
    image = create_raw(api, name="documented")
    values = _Values(id=image["id"], name="image")
    calls = [(path, method.upper(), op) for path, item in document["paths"].items()
             for method, op in item.items()]
    calls.sort(key=lambda call: call[1] == "DELETE")  # deletes last, so the image is there
    for path, method, op in calls:
        url = path.format_map(values)
        resp = api.request(method, url, **_request_for(method, op))
        where = f"{method} {path} -> {resp.status_code} {resp.text[:200]}"
        assert resp.status_code != 405, where
        assert not (resp.status_code == 404 and ROUTE_NOT_FOUND in resp.text), where
        assert str(resp.status_code) in op["responses"], where


def test_undocumented_methods_answer_405_with_allow(document: dict[str, Any],
                                                    api: httpx.Client) -> None:
    for path, methods in documented(document).items():
        url = path.format_map(_Values(id="00000000-0000-0000-0000-000000000000", name="image"))
        for method in sorted(set(METHODS) - methods):
            resp = api.request(method, url)
            assert resp.status_code == 405, (method, path, resp.status_code)
            allowed = {m.strip() for m in resp.headers["allow"].split(",")}
            assert allowed == methods, (method, path)
