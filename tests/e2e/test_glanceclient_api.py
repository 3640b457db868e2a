"""End to end: python-glanceclient's Python API against a real `glimpse serve`.

The client is the real one (`glanceclient.Client('2', endpoint=..., token=...)`), talking HTTP to
the session server; nothing is mocked. Facts: shared/reference/glance-v2-facts.md sections
1 and 4 (GC = openstack/python-glanceclient).

glanceclient sends `Accept: */*` on every request (the `requests` default; it never asks for
JSON), so error bodies reach `glanceclient.exc.from_response` in whatever format the server picks
for `*/*`. The error tests compare the exception text with the message the server gives for the
same request when asked for JSON, so they fail if the client ends up with a parse failure or a
bare status line instead of the server's explanation.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path
from typing import Any

import glanceclient
import httpx
import pytest
from glanceclient import exc

from tests.e2e.messages import server_message
from tests.servers import Server

MIB = 1024 * 1024


def _uid() -> str:
    return uuid.uuid4().hex[:12]


def _payload(size: int = 2 * MIB + 12345) -> bytes:
    """Random bytes; the odd size makes the last chunk of every transfer a short one."""
    return os.urandom(size)


def _client(server: Server, **kwargs: Any) -> Any:
    return glanceclient.Client("2", endpoint=server.url, token="anything", **kwargs)


@pytest.fixture
def gc(server: Server) -> Any:
    return _client(server)


def _create(gc: Any, **fields: Any) -> Any:
    fields.setdefault("name", f"gc-{_uid()}")
    fields.setdefault("disk_format", "raw")
    fields.setdefault("container_format", "bare")
    return gc.images.create(**fields)


def _create_active(gc: Any, data: bytes, **fields: Any) -> Any:
    image = _create(gc, **fields)
    gc.images.upload(image.id, io.BytesIO(data))
    return gc.images.get(image.id)


# --- create, upload, show -------------------------------------------------------------------


def test_create_with_properties_then_upload_from_file(gc: Any, tmp_path: Path) -> None:
    data = _payload()
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    name = f"gc-create-{_uid()}"

    image = gc.images.create(
        name=name, disk_format="raw", container_format="bare", min_ram=512, min_disk=2,
        visibility="private", os_distro="cirros", glimpse_e2e_color="red",
        tags=["first", "second"],
    )
    assert image.status == "queued"
    assert image.name == name
    assert image.disk_format == "raw"
    assert image.container_format == "bare"
    assert image.min_ram == 512
    assert image.min_disk == 2
    assert image.visibility == "private"
    assert image.os_distro == "cirros"
    assert image.glimpse_e2e_color == "red"
    assert sorted(image.tags) == ["first", "second"]
    assert image.size is None
    assert image.checksum is None
    assert image.owner == "admin"

    with path.open("rb") as fileobj:
        gc.images.upload(image.id, fileobj)

    shown = gc.images.get(image.id)
    assert shown.id == image.id
    assert shown.status == "active"
    assert shown.size == len(data)
    assert shown.checksum == hashlib.md5(data).hexdigest()
    assert shown.os_hash_algo == "sha512"
    assert shown.os_hash_value == hashlib.sha512(data).hexdigest()
    # create-time properties survive the upload
    assert shown.os_distro == "cirros"
    assert shown.glimpse_e2e_color == "red"
    assert shown.min_ram == 512
    assert sorted(shown.tags) == ["first", "second"]
    assert shown.created_at <= shown.updated_at


def test_upload_with_declared_size(gc: Any) -> None:
    """`image_size` makes glanceclient send `x-openstack-image-size` along with the data."""
    data = _payload(MIB + 7)
    image = _create(gc)
    gc.images.upload(image.id, io.BytesIO(data), image_size=len(data))
    shown = gc.images.get(image.id)
    assert shown.status == "active"
    assert shown.size == len(data)
    assert shown.os_hash_value == hashlib.sha512(data).hexdigest()


def test_show_returns_every_base_property(gc: Any) -> None:
    image = _create(gc, name=f"gc-show-{_uid()}")
    shown = gc.images.get(image.id)
    for key in ("id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
                "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size",
                "container_format", "disk_format", "created_at", "updated_at", "tags",
                "min_ram", "min_disk", "file", "schema"):
        assert key in shown, key
    # item access: on a warlock model `.schema` is the model's own JSON schema
    assert shown["file"] == f"/v2/images/{image.id}/file"
    assert shown["schema"] == "/v2/schemas/image"
    assert shown.status == "queued"
    assert shown.protected is False


# --- listing --------------------------------------------------------------------------------


@pytest.fixture
def listed(gc: Any) -> dict[str, Any]:
    """Five images sharing a fresh tag; two private, three shared; one custom property value."""
    tag = f"gc-list-{_uid()}"
    prop = f"p-{_uid()}"
    names = [f"{tag}-{letter}" for letter in "cadeb"]
    ids: dict[str, str] = {}
    for index, name in enumerate(names):
        fields: dict[str, Any] = {"name": name, "tags": [tag]}
        if index < 2:
            fields["visibility"] = "private"
        if index % 2 == 0:
            fields["glimpse_e2e_group"] = prop
        ids[name] = _create(gc, **fields).id
    return {"tag": tag, "prop": prop, "names": names, "ids": ids}


def _names(images: Any) -> list[str]:
    return [image.name for image in images]


def test_list_by_name(gc: Any, listed: dict[str, Any]) -> None:
    name = listed["names"][2]
    found = list(gc.images.list(filters={"name": name}))
    assert [image.id for image in found] == [listed["ids"][name]]


def test_list_by_tag_and_sort(gc: Any, listed: dict[str, Any]) -> None:
    tag = listed["tag"]
    ascending = _names(gc.images.list(filters={"tag": [tag]}, sort="name:asc"))
    assert ascending == sorted(listed["names"])
    descending = _names(gc.images.list(filters={"tag": [tag]}, sort_key="name",
                                       sort_dir="desc"))
    assert descending == sorted(listed["names"], reverse=True)
    # two tags are ANDed: no image carries both
    assert list(gc.images.list(filters={"tag": [tag, f"other-{_uid()}"]})) == []


def test_list_by_visibility(gc: Any, listed: dict[str, Any]) -> None:
    tag = listed["tag"]
    private = _names(gc.images.list(filters={"tag": [tag], "visibility": "private"}))
    shared = _names(gc.images.list(filters={"tag": [tag], "visibility": "shared"}))
    assert sorted(private) == sorted(listed["names"][:2])
    assert sorted(shared) == sorted(listed["names"][2:])


def test_list_by_custom_property(gc: Any, listed: dict[str, Any]) -> None:
    found = _names(gc.images.list(filters={"glimpse_e2e_group": listed["prop"]}))
    assert sorted(found) == sorted(listed["names"][0::2])


def test_list_pages_follow_next(gc: Any, listed: dict[str, Any]) -> None:
    """page_size=2 becomes `limit=2`; glanceclient then follows each page's `next` link."""
    tag = listed["tag"]
    paged = _names(gc.images.list(filters={"tag": [tag]}, sort="name:asc", page_size=2))
    assert paged == sorted(listed["names"])
    assert len(set(paged)) == len(paged)


def test_list_limit_stops_early(gc: Any, listed: dict[str, Any]) -> None:
    tag = listed["tag"]
    limited = _names(gc.images.list(filters={"tag": [tag]}, sort="name:asc", limit=3,
                                    page_size=2))
    assert limited == sorted(listed["names"])[:3]


def test_list_by_checksum_after_upload(gc: Any) -> None:
    data = _payload(MIB // 2 + 3)
    image = _create_active(gc, data)
    found = list(gc.images.list(filters={"checksum": hashlib.md5(data).hexdigest()}))
    assert [found_image.id for found_image in found] == [image.id]


# --- update ---------------------------------------------------------------------------------


def test_update_adds_replaces_and_removes_properties(gc: Any) -> None:
    image = _create(gc, os_distro="cirros", glimpse_e2e_color="red", glimpse_e2e_gone="bye")

    updated = gc.images.update(
        image.id, remove_props=["glimpse_e2e_gone"], glimpse_e2e_color="blue",
        glimpse_e2e_new="hello", os_distro="fedora", name="gc-renamed", min_ram=64,
    )
    assert updated.glimpse_e2e_color == "blue"
    assert updated.glimpse_e2e_new == "hello"
    assert "glimpse_e2e_gone" not in updated

    shown = gc.images.get(image.id)
    assert shown.glimpse_e2e_color == "blue"
    assert shown.glimpse_e2e_new == "hello"
    assert "glimpse_e2e_gone" not in shown
    assert shown.os_distro == "fedora"
    assert shown.name == "gc-renamed"
    assert shown.min_ram == 64
    assert shown.updated_at >= image.updated_at


def test_update_replaces_tags(gc: Any) -> None:
    image = _create(gc, tags=["old1", "old2"])
    gc.images.update(image.id, tags=["new1", "new2", "new3"])
    assert sorted(gc.images.get(image.id).tags) == ["new1", "new2", "new3"]


def test_tag_update_and_delete(gc: Any) -> None:
    image = _create(gc, tags=["keep"])
    gc.image_tags.update(image.id, "added")
    gc.image_tags.update(image.id, "added")  # set semantics: adding twice is a no-op
    assert sorted(gc.images.get(image.id).tags) == ["added", "keep"]
    gc.image_tags.delete(image.id, "keep")
    assert gc.images.get(image.id).tags == ["added"]


def test_protected_update_round_trip(gc: Any) -> None:
    image = _create(gc)
    assert gc.images.update(image.id, protected=True).protected is True
    assert gc.images.get(image.id).protected is True
    assert gc.images.update(image.id, protected=False).protected is False


# --- download -------------------------------------------------------------------------------


def test_download_verifies_against_os_hash_value(gc: Any) -> None:
    data = _payload()
    image = _create_active(gc, data)
    body = gc.images.data(image.id)
    assert len(body) == len(data)  # from Content-Length
    chunks = list(body)
    assert len(chunks) > 1  # streamed, not one blob
    downloaded = b"".join(chunks)
    assert downloaded == data
    assert hashlib.md5(downloaded).hexdigest() == image.checksum
    assert hashlib.sha512(downloaded).hexdigest() == image.os_hash_value


def test_download_detects_corruption_through_os_hash_value(
        make_server: Any, tmp_path: Path) -> None:
    """The client hashes what it receives with `os_hash_algo` and compares `os_hash_value`.

    The stored object is corrupted behind the server's back (same length), so only the
    client-side check can notice; glanceclient raises IOError at the end of the stream with the
    multihash wording ("Hash was ..."), not the MD5 one ("Checksum was ...").
    """
    srv = make_server(tmp_path / "corrupt")
    client = _client(srv)
    data = _payload(MIB + 99)
    image = _create_active(client, data)

    stored = [p for p in (srv.data_dir / "images").iterdir() if p.name.startswith(image.id)]
    assert len(stored) == 1, stored
    with stored[0].open("r+b") as fh:
        fh.seek(len(data) // 2)
        original = fh.read(16)
        fh.seek(len(data) // 2)
        fh.write(bytes(b ^ 0xFF for b in original))

    body = client.images.data(image.id)
    with pytest.raises(IOError, match="Hash was") as info:
        b"".join(body)
    assert image.os_hash_value in str(info.value)

    # with verification off the client hands back the (corrupt) bytes without complaint
    unchecked = b"".join(client.images.data(image.id, do_checksum=False))
    assert len(unchecked) == len(data)
    assert unchecked != data


def test_download_of_image_without_data_returns_none(gc: Any) -> None:
    """Glance answers 204 for an image with no data; glanceclient turns that into None."""
    image = _create(gc)
    body = gc.images.data(image.id)
    assert body.__wrapped__ is None


# --- deactivate / reactivate ----------------------------------------------------------------


def test_deactivate_and_reactivate(gc: Any, server: Server, api: httpx.Client) -> None:
    data = _payload(MIB + 1)
    image = _create_active(gc, data)

    gc.images.deactivate(image.id)
    assert gc.images.get(image.id).status == "deactivated"

    # an admin may still download a deactivated image (facts 1.9), verified as usual
    assert b"".join(gc.images.data(image.id)) == data

    # a non-admin may not: 403, with the server's explanation in the exception. (No-auth
    # mode narrows the roles from `X-Roles`; glanceclient sends identity_headers verbatim.)
    roles = {"X-Roles": "member,reader"}
    expected = server_message(api, "GET", f"/v2/images/{image.id}/file", 403, headers=roles)
    member = _client(server, identity_headers=dict(roles))
    with pytest.raises(exc.HTTPForbidden) as info:
        b"".join(member.images.data(image.id))
    assert expected in str(info.value)

    gc.images.reactivate(image.id)
    assert gc.images.get(image.id).status == "active"
    assert b"".join(member.images.data(image.id)) == data


def test_deactivate_queued_image_is_forbidden(gc: Any, api: httpx.Client) -> None:
    image = _create(gc)
    expected = server_message(api, "POST", f"/v2/images/{image.id}/actions/deactivate", 403)
    with pytest.raises(exc.HTTPForbidden) as info:
        gc.images.deactivate(image.id)
    assert expected in str(info.value)
    assert gc.images.get(image.id).status == "queued"


# --- delete ---------------------------------------------------------------------------------


def test_delete(gc: Any) -> None:
    tag = f"gc-del-{_uid()}"
    image = _create_active(gc, _payload(1000), tags=[tag])
    gc.images.delete(image.id)
    with pytest.raises(exc.HTTPNotFound):
        gc.images.get(image.id)
    assert list(gc.images.list(filters={"tag": [tag]})) == []
    with pytest.raises(exc.HTTPNotFound):
        gc.images.delete(image.id)


# --- errors: the exception carries the server's message -------------------------------------


def test_get_missing_image_raises_not_found(gc: Any, api: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    expected = server_message(api, "GET", f"/v2/images/{missing}", 404)
    with pytest.raises(exc.HTTPNotFound) as info:
        gc.images.get(missing)
    assert info.value.code == 404
    assert expected in str(info.value)
    assert expected in info.value.details


def test_delete_protected_image_raises_forbidden(gc: Any, api: httpx.Client) -> None:
    image = _create(gc, protected=True)
    expected = server_message(api, "DELETE", f"/v2/images/{image.id}", 403)
    with pytest.raises(exc.HTTPForbidden) as info:
        gc.images.delete(image.id)
    assert expected in str(info.value)
    assert gc.images.get(image.id).status == "queued"  # still there
    gc.images.update(image.id, protected=False)
    gc.images.delete(image.id)


def test_upload_to_active_image_raises_conflict(gc: Any, api: httpx.Client) -> None:
    data = _payload(4096)
    image = _create_active(gc, data)
    expected = server_message(
        api, "PUT", f"/v2/images/{image.id}/file", 409, content=b"again",
        headers={"Content-Type": "application/octet-stream"})
    with pytest.raises(exc.HTTPConflict) as info:
        gc.images.upload(image.id, io.BytesIO(b"second upload"))
    assert expected in str(info.value)
    shown = gc.images.get(image.id)
    assert shown.size == len(data)
    assert shown.checksum == hashlib.md5(data).hexdigest()


def test_create_with_duplicate_id_raises_conflict(gc: Any, api: httpx.Client) -> None:
    image = _create(gc)
    expected = server_message(api, "POST", "/v2/images", 409, json={"id": image.id})
    with pytest.raises(exc.HTTPConflict) as info:
        _create(gc, id=image.id)
    assert expected in str(info.value)


def test_reserved_property_raises_forbidden(gc: Any, api: httpx.Client) -> None:
    expected = server_message(api, "POST", "/v2/images", 403, json={"os_glance_x": "1"})
    with pytest.raises(exc.HTTPForbidden) as info:
        _create(gc, os_glance_x="1")
    assert expected in str(info.value)


def test_delete_missing_tag_raises_not_found(gc: Any, api: httpx.Client) -> None:
    image = _create(gc, tags=["present"])
    expected = server_message(api, "DELETE", f"/v2/images/{image.id}/tags/absent", 404)
    with pytest.raises(exc.HTTPNotFound) as info:
        gc.image_tags.delete(image.id, "absent")
    assert expected in str(info.value)
    assert gc.images.get(image.id).tags == ["present"]
