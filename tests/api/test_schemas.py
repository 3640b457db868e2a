"""GET /v2/schemas/* and /v2/info/import (facts 1.3, 1.6)."""

from __future__ import annotations

import httpx
import pytest


def test_image_schema(api: httpx.Client) -> None:
    resp = api.get("/v2/schemas/image")
    assert resp.status_code == 200
    schema = resp.json()
    assert schema["name"] == "image"
    props = schema["properties"]
    for key in ("id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
                "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size",
                "container_format", "disk_format", "created_at", "updated_at", "tags",
                "min_ram", "min_disk", "self", "file", "schema", "locations", "direct_url"):
        assert key in props, key
    assert set(props["disk_format"]["enum"]) == {None, "ami", "ari", "aki", "vhd", "vhdx", "vmdk",
                                                 "raw", "qcow2", "vdi", "iso", "ploop"}
    assert set(props["container_format"]["enum"]) == {"ami", "ari", "aki", "bare", "ovf", "ova",
                                                      "docker", "compressed", None}
    assert props["status"]["enum"] == ["queued", "saving", "active", "killed", "deleted",
                                       "uploading", "importing", "pending_delete",
                                       "deactivated"]
    assert schema["additionalProperties"] == {"type": "string"}
    rels = {link["rel"]: link["href"] for link in schema["links"]}
    assert rels == {"self": "{self}", "enclosure": "{file}", "describedby": "{schema}"}


@pytest.mark.parametrize("key", ["kernel_id", "ramdisk_id", "instance_uuid", "architecture",
                                 "os_distro", "os_version", "description",
                                 "cinder_encryption_key_id",
                                 "cinder_encryption_key_deletion_policy"])
def test_operator_properties_are_not_base(api: httpx.Client, key: str) -> None:
    props = api.get("/v2/schemas/image").json()["properties"]
    assert props[key]["is_base"] is False
    assert "is_base" not in props["name"]


def test_images_schema(api: httpx.Client) -> None:
    schema = api.get("/v2/schemas/images").json()
    assert schema["name"] == "images"
    assert schema["properties"]["images"]["items"]["name"] == "image"
    rels = {link["rel"]: link["href"] for link in schema["links"]}
    assert rels == {"first": "{first}", "next": "{next}", "describedby": "{schema}"}


@pytest.mark.parametrize(("path", "name"), [("/v2/schemas/member", "member"),
                                            ("/v2/schemas/members", "members")])
def test_member_schemas(api: httpx.Client, path: str, name: str) -> None:
    resp = api.get(path)
    assert resp.status_code == 200
    assert resp.json()["name"] == name


def test_member_schema_status_enum(api: httpx.Client) -> None:
    props = api.get("/v2/schemas/member").json()["properties"]
    assert set(props["status"]["enum"]) == {"pending", "accepted", "rejected"}
    assert {"member_id", "image_id", "created_at", "updated_at", "schema"} <= set(props)


def test_info_import(api: httpx.Client) -> None:
    resp = api.get("/v2/info/import")
    assert resp.status_code == 200
    body = resp.json()["import-methods"]
    assert body["type"] == "array"
    assert isinstance(body["value"], list)
    assert "description" in body
