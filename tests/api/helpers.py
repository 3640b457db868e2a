"""Small HTTP helpers shared by the API tests (no mocks: everything goes over the wire)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

import httpx

PATCH_21 = "application/openstack-images-v2.1-json-patch"
PATCH_20 = "application/openstack-images-v2.0-json-patch"
OCTET = {"Content-Type": "application/octet-stream"}
DATA = bytes(range(256)) * 16  # 4 KiB
REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MISSING = object()


def uid() -> str:
    return uuid.uuid4().hex[:12]


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    """POST /v2/images and insist on 201."""
    resp = client.post("/v2/images", json=body)
    assert resp.status_code == 201, resp.text
    image: dict[str, Any] = resp.json()
    return image


def create_raw(client: httpx.Client, **body: Any) -> dict[str, Any]:
    """A queued image with raw/bare formats (uploadable)."""
    return create(client, **{"disk_format": "raw", "container_format": "bare", **body})


def upload(client: httpx.Client, image_id: str, data: bytes = DATA,
           **headers: str) -> httpx.Response:
    return client.put(f"/v2/images/{image_id}/file", content=data, headers={**OCTET, **headers})


def create_active(client: httpx.Client, data: bytes = DATA, **body: Any) -> dict[str, Any]:
    """A raw/bare image with `data` uploaded; returns the image as shown afterwards."""
    image = create_raw(client, **body)
    resp = upload(client, image["id"], data)
    assert resp.status_code == 204, resp.text
    return show(client, image["id"])


def show(client: httpx.Client, image_id: str) -> dict[str, Any]:
    resp = client.get(f"/v2/images/{image_id}")
    assert resp.status_code == 200, resp.text
    image: dict[str, Any] = resp.json()
    return image


def patch(client: httpx.Client, image_id: str, ops: Any, media: str = PATCH_21,
          **headers: str) -> httpx.Response:
    return client.patch(f"/v2/images/{image_id}", content=json.dumps(ops),
                        headers={"Content-Type": media, **headers})


def op(media: str, kind: str, path: str, value: Any = MISSING) -> dict[str, Any]:
    """One JSON-patch operation in its media type's form (v2.1: op/path, v2.0: kind: path)."""
    change: dict[str, Any] = {"op": kind, "path": path} if media == PATCH_21 else {kind: path}
    if value is not MISSING:
        change["value"] = value
    return change


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def assert_error(resp: httpx.Response, status: int) -> None:
    """A JSON error body in Glance's WebOb shape: {"message", "code": "404 Not Found", "title"}."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text[:300]!r}"
    body = resp.json()
    assert set(body) >= {"message", "code", "title"}, body
    assert body["code"].startswith(f"{status} "), body
    assert body["title"] == body["code"].split(" ", 1)[1], body


def list_images(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.get("/v2/images", params=params)


def ids(client: httpx.Client, **params: Any) -> list[str]:
    """Ids of one listing page (asserting 200)."""
    resp = list_images(client, **params)
    assert resp.status_code == 200, resp.text
    return [image["id"] for image in resp.json()["images"]]


def list_all(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Follow `next` links until absent; every page must be 200."""
    resp = list_images(client, **params)
    images: list[dict[str, Any]] = []
    for _ in range(1000):
        assert resp.status_code == 200, resp.text
        body = resp.json()
        images.extend(body["images"])
        if "next" not in body:
            return images
        assert body["next"].startswith("/v2/images?"), body["next"]
        resp = client.get(body["next"])
    raise AssertionError("paging did not terminate")
