"""PATCH /v2/images/{id} with both JSON-patch media types (facts 1.8)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    PATCH_20,
    PATCH_21,
    assert_error,
    create,
    create_active,
    create_raw,
    op,
    patch,
    show,
    uid,
)

MEDIA = [pytest.param(PATCH_21, id="v2.1"), pytest.param(PATCH_20, id="v2.0")]


# --- happy paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("media", MEDIA)
def test_replace_base_properties(api: httpx.Client, media: str) -> None:
    image = create(api, name="old")
    changes = [
        op(media, "replace", "/name", "new"),
        op(media, "replace", "/disk_format", "qcow2"),
        op(media, "replace", "/container_format", "ovf"),
        op(media, "replace", "/min_disk", 3),
        op(media, "replace", "/min_ram", 256),
        op(media, "replace", "/protected", True),
        op(media, "replace", "/os_hidden", True),
        op(media, "replace", "/visibility", "private"),
        op(media, "replace", "/tags", ["t1", "t2"]),
    ]
    resp = patch(api, image["id"], changes, media)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    expected = {"name": "new", "disk_format": "qcow2", "container_format": "ovf",
                "min_disk": 3, "min_ram": 256, "protected": True, "os_hidden": True,
                "visibility": "private"}
    for key, value in expected.items():
        assert body[key] == value, key
    assert sorted(body["tags"]) == ["t1", "t2"]
    assert show(api, image["id"]) == body


@pytest.mark.parametrize("media", MEDIA)
def test_add_replace_remove_extra_property(api: httpx.Client, media: str) -> None:
    image = create(api)
    resp = patch(api, image["id"], [op(media, "add", "/color", "red")], media)
    assert resp.status_code == 200, resp.text
    assert resp.json()["color"] == "red"
    resp = patch(api, image["id"], [op(media, "replace", "/color", "blue")], media)
    assert resp.status_code == 200, resp.text
    assert resp.json()["color"] == "blue"
    resp = patch(api, image["id"], [op(media, "remove", "/color")], media)
    assert resp.status_code == 200, resp.text
    assert "color" not in resp.json()
    assert "color" not in show(api, image["id"])


@pytest.mark.parametrize("media", MEDIA)
def test_replace_name_with_null(api: httpx.Client, media: str) -> None:
    image = create(api, name="named")
    resp = patch(api, image["id"], [op(media, "replace", "/name", None)], media)
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] is None


@pytest.mark.parametrize("media", MEDIA)
def test_replace_unset_base_property(api: httpx.Client, media: str) -> None:
    image = create(api)  # name, disk_format are null but exist
    resp = patch(api, image["id"], [op(media, "replace", "/name", "now-set")], media)
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "now-set"


def test_empty_patch_is_noop(api: httpx.Client) -> None:
    image = create(api, name="same")
    resp = patch(api, image["id"], [])
    assert resp.status_code == 200
    assert resp.json()["name"] == "same"


def test_several_operations_apply_in_order(api: httpx.Client) -> None:
    image = create(api)
    changes = [op(PATCH_21, "add", "/k", "1"), op(PATCH_21, "replace", "/k", "2"),
               op(PATCH_21, "add", "/j", "x"), op(PATCH_21, "remove", "/j")]
    resp = patch(api, image["id"], changes)
    assert resp.status_code == 200, resp.text
    assert resp.json()["k"] == "2"
    assert "j" not in resp.json()


@pytest.mark.parametrize("media", MEDIA)
def test_failed_patch_changes_nothing(api: httpx.Client, media: str) -> None:
    image = create(api, name="before")
    changes = [op(media, "replace", "/name", "after"), op(media, "remove", "/missing")]
    assert_error(patch(api, image["id"], changes, media), 409)
    assert show(api, image["id"])["name"] == "before"


# --- add vs replace semantics per media type -----------------------------------------------------

def test_v21_add_on_existing_base_property_replaces(api: httpx.Client) -> None:
    image = create(api, name="old")
    resp = patch(api, image["id"], [op(PATCH_21, "add", "/name", "new")])
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "new"


def test_v21_add_on_existing_extra_property_replaces(api: httpx.Client) -> None:
    image = create(api, color="red")
    resp = patch(api, image["id"], [op(PATCH_21, "add", "/color", "green")])
    assert resp.status_code == 200, resp.text
    assert resp.json()["color"] == "green"


@pytest.mark.parametrize(("path", "body"), [("/name", {"name": "old"}),
                                            ("/color", {"color": "red"}),
                                            ("/min_ram", {})])
def test_v20_add_on_existing_property_is_409(api: httpx.Client, path: str,
                                              body: dict[str, Any]) -> None:
    image = create(api, **body)
    value: Any = 1 if path == "/min_ram" else "new"
    assert_error(patch(api, image["id"], [op(PATCH_20, "add", path, value)], PATCH_20), 409)
    after = show(api, image["id"])
    assert after == image


@pytest.mark.parametrize("media", MEDIA)
def test_replace_missing_extra_property_is_409(api: httpx.Client, media: str) -> None:
    image = create(api)
    assert_error(patch(api, image["id"], [op(media, "replace", "/nope", "x")], media), 409)
    assert "nope" not in show(api, image["id"])


@pytest.mark.parametrize("media", MEDIA)
def test_remove_missing_property_is_409(api: httpx.Client, media: str) -> None:
    image = create(api)
    assert_error(patch(api, image["id"], [op(media, "remove", "/nope")], media), 409)


@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("path", ["/name", "/disk_format", "/container_format", "/min_disk",
                                  "/min_ram", "/visibility", "/protected", "/os_hidden",
                                  "/tags", "/owner"])
def test_remove_base_property_is_403(api: httpx.Client, media: str, path: str) -> None:
    image = create(api, name="keep", disk_format="raw", container_format="bare", tags=["t"])
    assert_error(patch(api, image["id"], [op(media, "remove", path)], media), 403)
    assert show(api, image["id"]) == image


# --- read-only, reserved and os_glance_* ---------------------------------------------------------

READ_ONLY = ["id", "created_at", "updated_at", "status", "checksum", "size", "virtual_size",
             "os_hash_algo", "os_hash_value", "self", "file", "schema", "direct_url",
             "location", "deleted", "deleted_at", "os_glance_foo", "os_glance_import_task",
             "os_glance_failed_import"]


@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("kind", ["add", "replace", "remove"])
@pytest.mark.parametrize("key", READ_ONLY)
def test_read_only_and_reserved_are_403(api: httpx.Client, media: str, kind: str,
                                        key: str) -> None:
    image = create(api)
    value = "x" if kind != "remove" else None
    change = op(media, kind, f"/{key}") if value is None else op(media, kind, f"/{key}", value)
    assert_error(patch(api, image["id"], [change], media), 403)
    assert show(api, image["id"]) == image


# --- media types and body shape ------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["application/json", "application/json-patch+json",
                                          "text/plain", "application/octet-stream",
                                          "application/openstack-images-v2.2-json-patch",
                                          None])
def test_unsupported_patch_media_type_is_415(api: httpx.Client,
                                             content_type: str | None) -> None:
    image = create(api, name="untouched")
    headers = {"Content-Type": content_type} if content_type else {}
    resp = api.patch(f"/v2/images/{image['id']}",
                     content=b'[{"op": "replace", "path": "/name", "value": "x"}]',
                     headers=headers)
    assert_error(resp, 415)
    offered = {m.strip() for m in resp.headers["accept-patch"].split(",")}
    assert offered == {PATCH_21, PATCH_20}
    assert show(api, image["id"])["name"] == "untouched"


@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("body", [{}, {"op": "replace", "path": "/name", "value": "x"}, "x", 1,
                                  [1], ["replace"], [[]], None])
def test_body_must_be_array_of_objects(api: httpx.Client, media: str, body: Any) -> None:
    image = create(api)
    assert_error(patch(api, image["id"], body, media), 400)


@pytest.mark.parametrize("kind", ["move", "copy", "test", "delete", "bogus", ""])
def test_v21_unknown_op_is_400(api: httpx.Client, kind: str) -> None:
    image = create(api, name="a")
    change = {"op": kind, "path": "/name", "value": "a", "from": "/name"}
    assert_error(patch(api, image["id"], [change]), 400)


@pytest.mark.parametrize(
    "change",
    [
        {"path": "/name", "value": "x"},  # no op
        {"op": "replace", "value": "x"},  # no path
        {"op": "replace", "path": "/name"},  # no value
        {"op": "add", "path": "/foo"},  # no value
        {"replace": "/name", "value": "x"},  # v2.0 form under v2.1
        {"op": "replace", "path": 5, "value": "x"},
    ],
    ids=str,
)
def test_v21_malformed_operation_is_400(api: httpx.Client, change: dict[str, Any]) -> None:
    image = create(api, name="a")
    assert_error(patch(api, image["id"], [change]), 400)
    assert show(api, image["id"])["name"] == "a"


@pytest.mark.parametrize(
    "change",
    [
        {"op": "replace", "path": "/name", "value": "x"},  # v2.1 form under v2.0
        {"replace": "/name", "add": "/name", "value": "x"},  # two op members
        {"move": "/name", "value": "x"},
        {"replace": "/name"},  # no value
        {"add": "/foo"},  # no value
        {"value": "x"},
    ],
    ids=str,
)
def test_v20_malformed_operation_is_400(api: httpx.Client, change: dict[str, Any]) -> None:
    image = create(api, name="a")
    assert_error(patch(api, image["id"], [change], PATCH_20), 400)
    assert show(api, image["id"])["name"] == "a"


# --- JSON pointers -------------------------------------------------------------------------------

@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("path", ["name", "", "//name", "/name/", "/na~2me", "/name~",
                                  "/a~b", "/name/first", "/foo/bar/baz", "/tags/-", "/tags/0",
                                  "/ /"])
def test_bad_json_pointer_is_400(api: httpx.Client, media: str, path: str) -> None:
    image = create(api, name="a")
    assert_error(patch(api, image["id"], [op(media, "replace", path, "x")], media), 400)
    assert show(api, image["id"])["name"] == "a"


@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize(("pointer", "key"), [("/a~1b", "a/b"), ("/c~0d", "c~d"),
                                              ("/~01", "~1"), ("/~10", "/0"),
                                              ("/x~0~1y", "x~/y")])
def test_json_pointer_escapes(api: httpx.Client, media: str, pointer: str, key: str) -> None:
    image = create(api)
    resp = patch(api, image["id"], [op(media, "add", pointer, "v")], media)
    assert resp.status_code == 200, resp.text
    assert resp.json()[key] == "v"
    assert show(api, image["id"])[key] == "v"
    resp = patch(api, image["id"], [op(media, "replace", pointer, "w")], media)
    assert resp.status_code == 200, resp.text
    assert resp.json()[key] == "w"
    resp = patch(api, image["id"], [op(media, "remove", pointer)], media)
    assert resp.status_code == 200, resp.text
    assert key not in resp.json()


# --- value validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/name", 5),
        ("/name", "n" * 256),
        ("/disk_format", "bogus"),
        ("/container_format", "tarball"),
        ("/min_disk", "abc"),
        ("/min_disk", -1),
        ("/min_ram", 1.5),
        ("/protected", "yes"),
        ("/os_hidden", 0),
        ("/visibility", "everyone"),
        ("/tags", "t"),
        ("/tags", [5]),
        ("/tags", ["t" * 256]),
        ("/my_extra", 5),
        ("/my_extra", None),
        ("/my_extra", ["a"]),
    ],
    ids=str,
)
def test_schema_invalid_value_is_400(api: httpx.Client, media: str, path: str,
                                     value: Any) -> None:
    image = create(api, name="a", my_extra="e")
    kind = "replace"
    assert_error(patch(api, image["id"], [op(media, kind, path, value)], media), 400)
    assert show(api, image["id"]) == image


# --- policy and state rules ----------------------------------------------------------------------

@pytest.mark.parametrize("media", MEDIA)
def test_owner_change_by_non_admin_is_403(member: httpx.Client, media: str) -> None:
    image = create(member)
    resp = patch(member, image["id"], [op(media, "replace", "/owner", "someone-else")], media)
    assert_error(resp, 403)
    assert show(member, image["id"])["owner"] == member.headers["X-Project-Id"]


def test_owner_change_by_admin(api: httpx.Client) -> None:
    image = create(api)
    new_owner = f"proj-{uid()}"
    resp = patch(api, image["id"], [op(PATCH_21, "replace", "/owner", new_owner)])
    assert resp.status_code == 200, resp.text
    assert resp.json()["owner"] == new_owner


def test_member_cannot_publicize(member: httpx.Client) -> None:
    image = create(member)
    resp = patch(member, image["id"], [op(PATCH_21, "replace", "/visibility", "public")])
    assert_error(resp, 403)
    assert show(member, image["id"])["visibility"] == "shared"


def test_admin_can_publicize(api: httpx.Client) -> None:
    image = create(api)
    resp = patch(api, image["id"], [op(PATCH_21, "replace", "/visibility", "public")])
    assert resp.status_code == 200
    assert resp.json()["visibility"] == "public"


def test_member_cannot_patch_public_image_of_others(api: httpx.Client,
                                                    member: httpx.Client) -> None:
    image = create(api, visibility="public", name="theirs")
    assert_error(patch(member, image["id"], [op(PATCH_21, "replace", "/name", "mine")]), 403)
    assert show(api, image["id"])["name"] == "theirs"


def test_member_cannot_patch_invisible_image(api: httpx.Client, member: httpx.Client) -> None:
    image = create(api, visibility="private")
    assert_error(patch(member, image["id"], [op(PATCH_21, "replace", "/name", "x")]), 404)


@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize(("path", "value"), [("/disk_format", "qcow2"),
                                             ("/container_format", "ovf")])
def test_format_change_on_active_image_is_403(api: httpx.Client, media: str, path: str,
                                              value: str) -> None:
    image = create_active(api)
    assert_error(patch(api, image["id"], [op(media, "replace", path, value)], media), 403)
    after = show(api, image["id"])
    assert (after["disk_format"], after["container_format"]) == ("raw", "bare")


def test_format_change_on_deactivated_image_is_403(api: httpx.Client) -> None:
    image = create_active(api)
    assert api.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 204
    resp = patch(api, image["id"], [op(PATCH_21, "replace", "/disk_format", "qcow2")])
    assert_error(resp, 403)


def test_format_change_on_queued_image(api: httpx.Client) -> None:
    image = create_raw(api)
    resp = patch(api, image["id"], [op(PATCH_21, "replace", "/disk_format", "iso"),
                                    op(PATCH_21, "replace", "/container_format", "bare")])
    assert resp.status_code == 200, resp.text
    assert resp.json()["disk_format"] == "iso"


def test_other_properties_change_on_active_image(api: httpx.Client) -> None:
    image = create_active(api)
    resp = patch(api, image["id"], [op(PATCH_21, "replace", "/name", "renamed"),
                                    op(PATCH_21, "add", "/os_distro", "debian")])
    assert resp.status_code == 200, resp.text
    assert (resp.json()["name"], resp.json()["os_distro"]) == ("renamed", "debian")
    assert resp.json()["status"] == "active"


def test_property_quota_on_patch_is_413(limited: httpx.Client) -> None:
    image = create(limited, a="1")
    resp = patch(limited, image["id"], [op(PATCH_21, "add", "/b", "2")])
    assert resp.status_code == 200, resp.text
    assert_error(patch(limited, image["id"], [op(PATCH_21, "add", "/c", "3")]), 413)
    assert "c" not in show(limited, image["id"])
    # replacing an existing property does not grow the count
    resp = patch(limited, image["id"], [op(PATCH_21, "replace", "/b", "two")])
    assert resp.status_code == 200, resp.text


def test_tag_quota_on_patch_is_413(limited: httpx.Client) -> None:
    image = create(limited)
    resp = patch(limited, image["id"], [op(PATCH_21, "replace", "/tags", ["a", "b", "c"])])
    assert_error(resp, 413)
    assert show(limited, image["id"])["tags"] == []


def test_patch_missing_image_is_404(api: httpx.Client) -> None:
    resp = patch(api, "00000000-0000-4000-8000-000000000001",
                 [op(PATCH_21, "replace", "/name", "x")])
    assert_error(resp, 404)



def test_null_for_a_nullable_extra_property_removes_it(api: httpx.Client) -> None:
    """kernel_id/ramdisk_id may be null by the schema; extra properties hold strings, so null
    means the property is gone rather than stored as a string or silently kept."""
    kernel = "0a0a0a0a-0000-4000-8000-000000000000"
    image = create(api, kernel_id=kernel)
    assert show(api, image["id"])["kernel_id"] == kernel
    resp = patch(api, image["id"], [{"op": "replace", "path": "/kernel_id", "value": None}])
    assert resp.status_code == 200, resp.text
    assert "kernel_id" not in resp.json()
    assert "kernel_id" not in show(api, image["id"])
