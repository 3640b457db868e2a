"""Cross-cutting wire behaviour: request ids, error bodies, routing errors (facts 1.2, 1.6)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.helpers import (
    OCTET,
    PATCH_21,
    REQUEST_ID,
    assert_error,
    create_active,
    create_raw,
    show,
    uid,
)

MISSING_ID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/", {}),
        ("GET", "/versions", {}),
        ("GET", "/v2/images", {}),
        ("GET", "/v2/images?limit=-1", {}),
        ("POST", "/v2/images", {"json": {"name": "reqid"}}),
        ("POST", "/v2/images", {"content": b"{oops", "headers": {"Content-Type":
                                                                "application/json"}}),
        ("GET", f"/v2/images/{MISSING_ID}", {}),
        ("PATCH", f"/v2/images/{MISSING_ID}", {"content": b"[]",
                                               "headers": {"Content-Type": PATCH_21}}),
        ("DELETE", f"/v2/images/{MISSING_ID}", {}),
        ("GET", f"/v2/images/{MISSING_ID}/file", {}),
        ("PUT", f"/v2/images/{MISSING_ID}/file", {"content": b"x", "headers": OCTET}),
        ("PUT", f"/v2/images/{MISSING_ID}/tags/t", {}),
        ("POST", f"/v2/images/{MISSING_ID}/actions/deactivate", {}),
        ("PUT", "/v2/images", {}),
        ("GET", "/v2/schemas/image", {}),
        ("GET", "/v2/info/import", {}),
        ("GET", "/v2/no-such-thing", {}),
    ],
)
def test_every_response_has_request_id(api: httpx.Client, method: str, path: str,
                                       kwargs: dict[str, object]) -> None:
    resp = api.request(method, path, **kwargs)
    assert REQUEST_ID.match(resp.headers.get("x-openstack-request-id", "")), resp.headers


def test_request_ids_are_unique(api: httpx.Client) -> None:
    seen = {api.get("/v2/images", params={"limit": 1}).headers["x-openstack-request-id"]
            for _ in range(5)}
    assert len(seen) == 5


@pytest.mark.parametrize("path", ["/v2/images", f"/v2/images/{MISSING_ID}", "/versions"])
def test_incoming_request_id_is_echoed(api: httpx.Client, path: str) -> None:
    incoming = f"req-{uuid.uuid4()}"
    resp = api.get(path, headers={"X-Openstack-Request-ID": incoming})
    assert resp.headers["x-openstack-request-id"] == incoming


def test_overlong_request_id_is_not_adopted(api: httpx.Client) -> None:
    incoming = "r" * 65  # max_request_id_length is 64
    resp = api.get("/v2/images", headers={"X-Openstack-Request-ID": incoming})
    assert resp.headers["x-openstack-request-id"] != incoming
    assert REQUEST_ID.match(resp.headers["x-openstack-request-id"])
    exact = "r" * 64
    resp = api.get("/v2/images", headers={"X-Openstack-Request-ID": exact})
    assert resp.headers["x-openstack-request-id"] == exact


def test_json_error_body(api: httpx.Client) -> None:
    resp = api.get(f"/v2/images/{MISSING_ID}")
    assert_error(resp, 404)
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["code"] == "404 Not Found"
    assert resp.json()["title"] == "Not Found"


def test_plain_error_body_when_json_not_accepted(api: httpx.Client) -> None:
    resp = api.get(f"/v2/images/{MISSING_ID}", headers={"Accept": "text/plain"})
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/plain")
    assert "404 Not Found" in resp.text


@pytest.mark.parametrize("path", ["/v2/no-such-thing", "/v2/images/x/y/z",
                                  f"/v2/images/{MISSING_ID}/bogus", "/v2/schemas/bogus"])
def test_unknown_path_is_404(api: httpx.Client, path: str) -> None:
    assert_error(api.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v2/images", {"GET", "POST"}),
        ("DELETE", "/v2/images", {"GET", "POST"}),
        ("POST", "/v2/images/{id}", {"GET", "PATCH", "DELETE"}),
        ("PUT", "/v2/images/{id}", {"GET", "PATCH", "DELETE"}),
        ("POST", "/v2/images/{id}/file", {"GET", "PUT"}),
        ("DELETE", "/v2/images/{id}/file", {"GET", "PUT"}),
        ("GET", "/v2/images/{id}/actions/deactivate", {"POST"}),
        ("PUT", "/v2/images/{id}/actions/reactivate", {"POST"}),
        ("GET", "/v2/images/{id}/tags/sometag", {"PUT", "DELETE"}),
        ("POST", "/v2/images/{id}/tags/sometag", {"PUT", "DELETE"}),
        ("POST", "/v2/schemas/image", {"GET"}),
        ("DELETE", "/v2/schemas/images", {"GET"}),
        ("POST", "/v2/info/import", {"GET"}),
    ],
)
def test_wrong_method_is_405_with_allow(api: httpx.Client, method: str, path: str,
                                        allowed: set[str]) -> None:
    image = create_raw(api, name=f"m405-{uid()}")
    resp = api.request(method, path.format(id=image["id"]))
    assert_error(resp, 405)
    assert {m.strip() for m in resp.headers["allow"].split(",")} == allowed
    assert show(api, image["id"])["status"] == "queued"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/images/{id}"),
        ("DELETE", "/v2/images/{id}"),
        ("GET", "/v2/images/{id}/file"),
        ("PUT", "/v2/images/{id}/tags/bodytag"),
        ("DELETE", "/v2/images/{id}/tags/bodytag"),
        ("POST", "/v2/images/{id}/actions/deactivate"),
        ("POST", "/v2/images/{id}/actions/reactivate"),
        ("GET", "/v2/schemas/image"),
        ("GET", "/v2/info/import"),
    ],
)
def test_body_where_none_is_allowed_is_400(api: httpx.Client, method: str, path: str) -> None:
    image = create_active(api, name=f"body-{uid()}", tags=["bodytag"])
    resp = api.request(method, path.format(id=image["id"]), content=b'{"a": 1}',
                       headers={"Content-Type": "application/json"})
    assert_error(resp, 400)
    after = show(api, image["id"])  # nothing happened
    assert after["status"] == "active"
    assert after["tags"] == ["bodytag"]


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2", b"\xff\xfe", b'{"name": "a",}'])
def test_malformed_json_on_create_is_400(api: httpx.Client, body: bytes) -> None:
    resp = api.post("/v2/images", content=body, headers={"Content-Type": "application/json"})
    assert_error(resp, 400)


@pytest.mark.parametrize("body", [b"[]", b'"image"', b"42", b"null", b'[{"name": "a"}]'])
def test_create_body_must_be_object(api: httpx.Client, body: bytes) -> None:
    resp = api.post("/v2/images", content=body, headers={"Content-Type": "application/json"})
    assert_error(resp, 400)


def test_malformed_json_on_patch_is_400(api: httpx.Client) -> None:
    image = create_raw(api, name=f"badjson-{uid()}")
    resp = api.patch(f"/v2/images/{image['id']}", content=b'[{"op": "replace"',
                     headers={"Content-Type": PATCH_21})
    assert_error(resp, 400)


#: Every call addressed to one image: (method, path suffix, request arguments).
PER_IMAGE_CALLS = [
    ("GET", "", {}),
    ("DELETE", "", {}),
    ("PATCH", "", {"content": b'[{"op": "replace", "path": "/name", "value": "x"}]',
                   "headers": {"Content-Type": PATCH_21}}),
    ("GET", "/file", {}),
    ("PUT", "/file", {"content": b"abc", "headers": OCTET}),
    ("PUT", "/tags/t1", {}),
    ("DELETE", "/tags/t1", {}),
    ("POST", "/actions/deactivate", {}),
    ("POST", "/actions/reactivate", {}),
]


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "12345", MISSING_ID[:-1], "x" * 300])
@pytest.mark.parametrize(
    ("method", "suffix", "kwargs"),
    PER_IMAGE_CALLS,
)
def test_non_uuid_image_id_is_404(api: httpx.Client, bad_id: str, method: str, suffix: str,
                                  kwargs: dict[str, object]) -> None:
    resp = api.request(method, f"/v2/images/{bad_id}{suffix}", **kwargs)
    assert_error(resp, 404)


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs"),
    PER_IMAGE_CALLS,
)
def test_missing_image_is_404(api: httpx.Client, method: str, suffix: str,
                              kwargs: dict[str, object]) -> None:
    resp = api.request(method, f"/v2/images/{uuid.uuid4()}{suffix}", **kwargs)
    assert_error(resp, 404)


def test_no_head_on_file(api: httpx.Client) -> None:
    image = create_active(api)
    resp = api.head(f"/v2/images/{image['id']}/file")
    assert resp.status_code == 405
    assert {m.strip() for m in resp.headers["allow"].split(",")} == {"GET", "PUT"}


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
def test_trailing_slash_is_not_redirected(api: httpx.Client, method: str) -> None:
    """`/v2/images/` names an image with an empty id: 404, as Glance (no 307 to the list)."""
    resp = api.request(method, "/v2/images/")
    assert resp.status_code == 404, resp.status_code
    assert "location" not in resp.headers
