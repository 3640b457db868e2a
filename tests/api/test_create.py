"""POST /v2/images (facts 1.3, 1.4, 1.7)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.helpers import TIMESTAMP, assert_error, create, show, uid
from tests.servers import Server

BASE_NULLS = ["name", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
              "disk_format", "container_format"]
DISK_FORMATS = ["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"]
CONTAINER_FORMATS = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]


def test_create_minimal_defaults(api: httpx.Client, server: Server) -> None:
    resp = api.post("/v2/images", json={})
    assert resp.status_code == 201, resp.text
    image = resp.json()
    image_id = image["id"]
    uuid.UUID(image_id)
    assert resp.headers["location"].endswith(f"/v2/images/{image_id}")
    assert resp.headers["content-type"].startswith("application/json")
    assert image["status"] == "queued"
    assert image["visibility"] == "shared"
    assert image["protected"] is False
    assert image["os_hidden"] is False
    assert image["min_disk"] == 0
    assert image["min_ram"] == 0
    assert image["tags"] == []
    assert image["owner"] == "admin"
    for key in BASE_NULLS:
        assert key in image, key
        assert image[key] is None, key
    assert TIMESTAMP.match(image["created_at"]), image["created_at"]
    assert TIMESTAMP.match(image["updated_at"]), image["updated_at"]
    assert image["self"] == f"/v2/images/{image_id}"
    assert image["file"] == f"/v2/images/{image_id}/file"
    assert image["schema"] == "/v2/schemas/image"
    for absent in ("locations", "direct_url", "stores", "deleted", "deleted_at", "location"):
        assert absent not in image, absent


def test_location_header_points_at_image(api: httpx.Client) -> None:
    resp = api.post("/v2/images", json={"name": f"loc-{uid()}"})
    assert resp.status_code == 201
    fetched = api.get(httpx.URL(resp.headers["location"]).path)
    assert fetched.status_code == 200
    assert fetched.json() == resp.json()


def test_create_full_body_round_trips(api: httpx.Client) -> None:
    name = f"full-{uid()}"
    body: dict[str, Any] = {
        "name": name, "disk_format": "qcow2", "container_format": "bare", "min_disk": 5,
        "min_ram": 512, "visibility": "private", "protected": True, "os_hidden": True,
        "tags": ["a", "b"], "os_distro": "ubuntu", "custom_key": "custom value",
    }
    image = create(api, **body)
    for key, value in body.items():
        if key == "tags":
            assert sorted(image["tags"]) == ["a", "b"]
        else:
            assert image[key] == value, key
    assert show(api, image["id"]) == image


def test_tags_have_set_semantics(api: httpx.Client) -> None:
    image = create(api, tags=["x", "y", "x", "y", "z"])
    assert sorted(image["tags"]) == ["x", "y", "z"]


@pytest.mark.parametrize("disk_format", DISK_FORMATS)
def test_every_default_disk_format_accepted(api: httpx.Client, disk_format: str) -> None:
    assert create(api, disk_format=disk_format)["disk_format"] == disk_format


@pytest.mark.parametrize("container_format", CONTAINER_FORMATS)
def test_every_default_container_format_accepted(api: httpx.Client,
                                                 container_format: str) -> None:
    assert create(api, container_format=container_format)["container_format"] == container_format


@pytest.mark.parametrize(
    "body",
    [
        {"disk_format": "bogus"},
        {"disk_format": "RAW"},
        {"disk_format": "gpt"},  # optional format, not in the default list
        {"container_format": "tarball"},
        {"disk_format": 7},
    ],
    ids=str,
)
def test_bad_format_is_400(api: httpx.Client, body: dict[str, Any]) -> None:
    assert_error(api.post("/v2/images", json=body), 400)


@pytest.mark.parametrize(
    "body",
    [
        {"name": 5},
        {"name": ["a"]},
        {"name": "n" * 256},
        {"min_disk": "1"},
        {"min_disk": -1},
        {"min_disk": 1.5},
        {"min_ram": "big"},
        {"min_ram": -5},
        {"protected": "yes"},
        {"protected": 1},
        {"os_hidden": "true"},
        {"visibility": "everyone"},
        {"visibility": True},
        {"tags": "a"},
        {"tags": [1]},
        {"tags": ["t" * 256]},
        {"id": "not-a-uuid"},
        {"id": 12},
        {"owner": 5},
        {"owner": "o" * 256},
    ],
    ids=str,
)
def test_schema_violation_is_400(api: httpx.Client, body: dict[str, Any]) -> None:
    assert_error(api.post("/v2/images", json=body), 400)


def test_name_of_255_chars_is_accepted(api: httpx.Client) -> None:
    name = "n" * 255
    assert create(api, name=name)["name"] == name


def test_client_chosen_id_and_duplicate_is_409(api: httpx.Client) -> None:
    image_id = str(uuid.uuid4())
    resp = api.post("/v2/images", json={"id": image_id, "name": "first"})
    assert resp.status_code == 201
    assert resp.json()["id"] == image_id
    assert resp.headers["location"].endswith(f"/v2/images/{image_id}")
    dup = api.post("/v2/images", json={"id": image_id, "name": "second"})
    assert_error(dup, 409)
    assert show(api, image_id)["name"] == "first"


def test_id_of_deleted_image_cannot_be_reused(api: httpx.Client) -> None:
    image = create(api)
    assert api.delete(f"/v2/images/{image['id']}").status_code == 204
    assert_error(api.post("/v2/images", json={"id": image["id"]}), 409)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("created_at", "2020-01-01T00:00:00Z"),
        ("updated_at", "2020-01-01T00:00:00Z"),
        ("status", "active"),
        ("checksum", "0" * 32),
        ("size", 1),
        ("virtual_size", 1),
        ("os_hash_algo", "sha512"),
        ("os_hash_value", "0" * 128),
        ("direct_url", "file:///etc/passwd"),
        ("self", "/v2/images/x"),
        ("file", "/v2/images/x/file"),
        ("schema", "/v2/schemas/image"),
        ("stores", "file"),
        ("location", "file:///tmp/x"),
        ("deleted", "true"),
        ("deleted_at", "2020-01-01T00:00:00Z"),
    ],
)
def test_read_only_and_reserved_attributes_are_403(api: httpx.Client, key: str,
                                                   value: Any) -> None:
    name = f"ro-{uid()}"
    assert_error(api.post("/v2/images", json={"name": name, key: value}), 403)
    assert api.get("/v2/images", params={"name": name}).json()["images"] == []


@pytest.mark.parametrize("key", ["os_glance_foo", "os_glance_import_task",
                                 "os_glance_stage_host", "os_glance_failed_import",
                                 "os_glance_"])
def test_os_glance_namespace_is_403(api: httpx.Client, key: str) -> None:
    assert_error(api.post("/v2/images", json={key: "x"}), 403)


def test_property_key_over_255_is_400(api: httpx.Client) -> None:
    assert_error(api.post("/v2/images", json={"k" * 256: "v"}), 400)
    assert create(api, **{"k" * 255: "v"})["k" * 255] == "v"


@pytest.mark.parametrize("value", [1, 1.5, True, None, ["a"], {"a": "b"}], ids=repr)
def test_extra_property_value_must_be_string(api: httpx.Client, value: Any) -> None:
    assert_error(api.post("/v2/images", json={"my_prop": value}), 400)


def test_operator_schema_properties_are_strings(api: httpx.Client) -> None:
    image = create(api, os_distro="fedora", architecture="x86_64", description="d")
    assert (image["os_distro"], image["architecture"], image["description"]) == (
        "fedora", "x86_64", "d")
    assert_error(api.post("/v2/images", json={"os_distro": 3}), 400)


def test_member_creates_image_owned_by_own_project(member: httpx.Client) -> None:
    project = member.headers["X-Project-Id"]
    image = create(member, name=f"mine-{uid()}")
    assert image["owner"] == project
    explicit = create(member, owner=project)
    assert explicit["owner"] == project


def test_member_cannot_create_for_other_project(member: httpx.Client) -> None:
    name = f"foreign-{uid()}"
    assert_error(member.post("/v2/images", json={"name": name, "owner": "someone-else"}), 403)


def test_admin_may_create_for_any_project(api: httpx.Client) -> None:
    owner = f"proj-{uid()}"
    assert create(api, owner=owner)["owner"] == owner


def test_member_cannot_create_public_image(member: httpx.Client, api: httpx.Client) -> None:
    assert_error(member.post("/v2/images", json={"visibility": "public"}), 403)
    assert create(api, visibility="public")["visibility"] == "public"


@pytest.mark.parametrize("visibility", ["private", "shared", "community"])
def test_member_may_create_non_public(member: httpx.Client, visibility: str) -> None:
    assert create(member, visibility=visibility)["visibility"] == visibility


def test_property_quota_on_create_is_413(limited: httpx.Client) -> None:
    name = f"pq-{uid()}"
    assert create(limited, a="1", b="2")["b"] == "2"
    assert_error(limited.post("/v2/images", json={"name": name, "a": "1", "b": "2", "c": "3"}),
                 413)
    assert limited.get("/v2/images", params={"name": name}).json()["images"] == []


def test_tag_quota_on_create_is_413(limited: httpx.Client) -> None:
    name = f"tq-{uid()}"
    assert sorted(create(limited, tags=["a", "b"])["tags"]) == ["a", "b"]
    assert_error(limited.post("/v2/images", json={"name": name, "tags": ["a", "b", "c"]}), 413)
    assert limited.get("/v2/images", params={"name": name}).json()["images"] == []


def test_import_and_store_headers(api: httpx.Client) -> None:
    methods = api.get("/v2/info/import").json()["import-methods"]["value"]
    resp = api.post("/v2/images", json={})
    assert resp.status_code == 201
    if methods:
        assert resp.headers["openstack-image-import-methods"] == ",".join(methods)
    else:
        assert "openstack-image-import-methods" not in resp.headers
    assert "openstack-image-store-ids" not in resp.headers  # multistore is off
