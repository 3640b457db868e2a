"""End to end: openstacksdk's image proxy (`conn.image`) against a real `glimpse serve`.

No Keystone: `auth_type="none"` (keystoneauth's noauth plugin) plus `image_endpoint_override`.
The SDK still runs keystoneauth version discovery on that endpoint: it GETs the root, gets the
300 versions document and picks the `v2/` href of the newest v2 entry (facts 1.1, section 4).

Headers the SDK sends (observed on the wire with this SDK version): `Accept: application/json` for
discovery and listings, no explicit Accept (so requests' `*/*`) for GET/DELETE of one image, for
actions, tags and downloads, and an empty `Accept:` for PATCH and uploads (SDK
`openstack/image/v2/image.py`). `openstack.exceptions.raise_from_response` extracts a message from
a JSON body (`message` at the top level is accepted) or from an HTML page; for a text/plain body it
keeps only the reason phrase ("Not Found").
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openstack import connection, exceptions

from tests.e2e.messages import server_message
from tests.servers import Server

MIB = 1024 * 1024

# openstacksdk 4.22 raises its own "removed in a future SDK" warnings (PendingDeprecationWarning
# subclasses) from inside its own code paths: on every Connection (InfluxDB: its
# `_parse_section__metrics_influxdb` returns a dict of Nones, which CloudRegion finds truthy),
# and from Resource internals (`_compute_attributes`, the `service_type` parameter). They are the
# library's business, but the project's `filterwarnings = error` would turn them into failures.
pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]


def _uid() -> str:
    return uuid.uuid4().hex[:12]


def _connect(server: Server) -> connection.Connection:
    return connection.Connection(auth_type="none", image_endpoint_override=server.url)


@pytest.fixture
def conn(server: Server) -> Iterator[connection.Connection]:
    c = _connect(server)
    yield c
    c.close()


def _create(conn: connection.Connection, data: bytes | None = None, **attrs: Any) -> Any:
    """conn.image.create_image with data (validated against local md5/sha256) or without."""
    attrs.setdefault("name", f"sdk-{_uid()}")
    attrs.setdefault("disk_format", "raw")
    attrs.setdefault("container_format", "bare")
    if data is not None:
        attrs.update(data=data, validate_checksum=True)
    image = conn.image.create_image(allow_duplicates=True, **attrs)
    return conn.image.get_image(image.id)


# --- discovery ------------------------------------------------------------------------------


def test_discovery_uses_versions_document(conn: connection.Connection, server: Server) -> None:
    endpoint = conn.image.get_endpoint()
    assert endpoint.rstrip("/") == f"{server.url}/v2"
    assert conn.image.get_api_major_version()[0] == 2


# --- create and upload ----------------------------------------------------------------------


def test_create_image_from_file_validates_checksum(
        conn: connection.Connection, tmp_path: Path) -> None:
    """create_image(filename=...) hashes the file (md5+sha256), records the hashes as
    owner_specified.* properties, uploads with PUT /file, then compares the server's checksum
    with its own md5 (and would delete the image on a mismatch)."""
    data = os.urandom(2 * MIB + 4321)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    name = f"sdk-file-{_uid()}"

    created = conn.image.create_image(
        name=name, filename=str(path), disk_format="raw", container_format="bare",
        validate_checksum=True, allow_duplicates=True, tags=["sdk", "file"],
        visibility="private", min_ram=128, os_distro="fedora", glimpse_e2e_origin="sdk",
    )
    image = conn.image.get_image(created.id)
    assert image.name == name
    assert image.status == "active"
    assert image.size == len(data)
    assert image.checksum == hashlib.md5(data).hexdigest()
    assert image.hash_algo == "sha512"
    assert image.hash_value == hashlib.sha512(data).hexdigest()
    assert image.disk_format == "raw"
    assert image.container_format == "bare"
    assert image.visibility == "private"
    assert image.min_ram == 128
    assert image.os_distro == "fedora"
    assert sorted(image.tags) == ["file", "sdk"]
    assert image.properties["glimpse_e2e_origin"] == "sdk"
    assert image.properties["owner_specified.openstack.md5"] == hashlib.md5(data).hexdigest()
    assert image.properties["owner_specified.openstack.sha256"] == \
        hashlib.sha256(data).hexdigest()


def test_create_image_from_bytes(conn: connection.Connection) -> None:
    data = os.urandom(MIB + 17)
    image = _create(conn, data)
    assert image.status == "active"
    assert image.size == len(data)
    assert image.hash_value == hashlib.sha512(data).hexdigest()


def test_create_image_without_data_is_queued(conn: connection.Connection) -> None:
    image = _create(conn)
    assert image.status == "queued"
    assert image.size is None
    assert image.checksum is None
    assert image.hash_value is None


# --- list / get / find ----------------------------------------------------------------------


def test_images_filters_and_paging(conn: connection.Connection) -> None:
    tag = f"sdk-list-{_uid()}"
    names = [f"{tag}-{letter}" for letter in "dbca"]
    ids = {}
    for index, name in enumerate(names):
        data = os.urandom(1000 + index) if index < 2 else None
        ids[name] = _create(conn, data, name=name, tags=[tag],
                            visibility="private" if index == 0 else "shared").id

    # limit=1 makes every page one image long: the SDK follows `next` (minus its /v2 prefix)
    paged = [i.name for i in conn.image.images(tag=tag, sort_key="name", sort_dir="asc",
                                               limit=1)]
    assert paged == sorted(names)

    descending = [i.name for i in conn.image.images(tag=tag, sort="name:desc")]
    assert descending == sorted(names, reverse=True)

    active = sorted(i.name for i in conn.image.images(tag=tag, status="active"))
    assert active == sorted(names[:2])

    private = [i.name for i in conn.image.images(tag=tag, visibility="private")]
    assert private == [names[0]]

    by_name = list(conn.image.images(name=names[2]))
    assert [i.id for i in by_name] == [ids[names[2]]]

    big = sorted(i.name for i in conn.image.images(tag=tag, size_min=1001))
    assert big == [names[1]]


def test_get_and_find_image(conn: connection.Connection) -> None:
    image = _create(conn, name=f"sdk-find-{_uid()}")
    assert conn.image.get_image(image.id).name == image.name
    assert conn.image.find_image(image.name).id == image.id
    assert conn.image.find_image(image.id).id == image.id
    assert conn.image.find_image(f"nothing-{_uid()}") is None


# --- update ---------------------------------------------------------------------------------


def test_update_image_properties(conn: connection.Connection) -> None:
    image = _create(conn, glimpse_e2e_keep="k", glimpse_e2e_change="old",
                    glimpse_e2e_drop="x", os_distro="cirros")
    # The SDK diffs the whole `properties` dict against what it fetched: keys passed here are
    # added/replaced, and extra properties *not* passed are sent as `remove` operations.
    keep = {k: v for k, v in image.properties.items() if k != "glimpse_e2e_drop"}
    keep.update(glimpse_e2e_change="new", glimpse_e2e_add="added")
    updated = conn.image.update_image(image, name="sdk-renamed", min_disk=4,
                                      os_distro="ubuntu", **keep)
    assert updated.name == "sdk-renamed"

    stored = conn.image.get_image(image.id)
    assert stored.name == "sdk-renamed"
    assert stored.min_disk == 4
    assert stored.os_distro == "ubuntu"
    assert stored.properties["glimpse_e2e_keep"] == "k"
    assert stored.properties["glimpse_e2e_change"] == "new"
    assert stored.properties["glimpse_e2e_add"] == "added"
    assert "glimpse_e2e_drop" not in stored.properties


def test_update_image_properties_helper(conn: connection.Connection) -> None:
    """update_image_properties keeps the existing extra properties and adds/changes the new."""
    image = _create(conn, glimpse_e2e_a="1")
    assert conn.image.update_image_properties(image, glimpse_e2e_b="2", min_ram=32) is True
    stored = conn.image.get_image(image.id)
    assert stored.properties["glimpse_e2e_a"] == "1"
    assert stored.properties["glimpse_e2e_b"] == "2"
    assert stored.min_ram == 32


def test_add_and_remove_tag(conn: connection.Connection) -> None:
    image = _create(conn, tags=["one"])
    conn.image.add_tag(image, "two")
    assert sorted(conn.image.get_image(image.id).tags) == ["one", "two"]
    conn.image.remove_tag(image, "one")
    assert conn.image.get_image(image.id).tags == ["two"]


# --- download -------------------------------------------------------------------------------


def test_download_image_verified(conn: connection.Connection, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 3)
    image = _create(conn, data)

    in_memory = conn.image.download_image(image)
    assert in_memory.content == data

    buffer = io.BytesIO()
    conn.image.download_image(image, output=buffer, chunk_size=MIB)
    assert buffer.getvalue() == data

    target = tmp_path / "out.raw"
    conn.image.download_image(image, output=str(target))
    assert target.read_bytes() == data

    streamed = conn.image.download_image(image, stream=True)
    try:
        assert b"".join(streamed.iter_content(MIB)) == data
        assert streamed.headers["Content-MD5"] == hashlib.md5(data).hexdigest()
    finally:
        streamed.close()


def test_download_detects_corruption(make_server: Any, tmp_path: Path) -> None:
    """The SDK checks the bytes against os_hash_value (sha512 here), not just the MD5."""
    srv = make_server(tmp_path / "corrupt")
    c = _connect(srv)
    try:
        data = os.urandom(MIB + 5)
        image = _create(c, data)
        stored = [p for p in (srv.data_dir / "images").iterdir()
                  if p.name.startswith(image.id)]
        assert len(stored) == 1, stored
        with stored[0].open("r+b") as fh:  # flip 8 bytes in place; the length stays the same
            fh.seek(1000)
            original = fh.read(8)
            fh.seek(1000)
            fh.write(bytes(b ^ 0xFF for b in original))

        with pytest.raises(exceptions.InvalidResponse, match=r"checksum mismatch \(sha512\)"):
            c.image.download_image(image)
        with pytest.raises(exceptions.SDKException, match="sha512"):
            c.image.download_image(image, output=io.BytesIO())
    finally:
        c.close()


# --- deactivate / reactivate / delete -------------------------------------------------------


def test_deactivate_and_reactivate(conn: connection.Connection) -> None:
    data = os.urandom(MIB // 2)
    image = _create(conn, data)
    conn.image.deactivate_image(image)
    assert conn.image.get_image(image.id).status == "deactivated"
    # admin download of a deactivated image works (facts 1.9)
    assert conn.image.download_image(image).content == data
    conn.image.reactivate_image(image)
    assert conn.image.get_image(image.id).status == "active"


def test_delete_image(conn: connection.Connection) -> None:
    image = _create(conn, os.urandom(2048))
    conn.image.delete_image(image)
    with pytest.raises(exceptions.NotFoundException):
        conn.image.get_image(image.id)
    assert conn.image.find_image(image.name) is None
    conn.image.delete_image(image)  # ignore_missing defaults to True
    with pytest.raises(exceptions.NotFoundException):
        conn.image.delete_image(image, ignore_missing=False)


# --- errors ---------------------------------------------------------------------------------


def test_get_missing_image_error_carries_server_message(
        conn: connection.Connection, api: httpx.Client) -> None:
    """GET /v2/images/{id} goes out with `Accept: */*`. Glance (WebOb) answers that with an HTML
    error page, from which the SDK strips the tags to get the message; a text/plain body leaves
    the SDK with only the reason phrase."""
    missing = str(uuid.uuid4())
    expected = server_message(api, "GET", f"/v2/images/{missing}", 404)
    with pytest.raises(exceptions.ResourceNotFound) as info:
        conn.image.get_image(missing)
    assert info.value.status_code == 404
    assert expected in str(info.value)


def test_delete_protected_image_error_carries_server_message(
        conn: connection.Connection, api: httpx.Client) -> None:
    image = _create(conn, is_protected=True)
    assert image.is_protected is True
    expected = server_message(api, "DELETE", f"/v2/images/{image.id}", 403)
    with pytest.raises(exceptions.ForbiddenException) as info:
        conn.image.delete_image(image, ignore_missing=False)
    assert conn.image.get_image(image.id).status == "queued"  # still there
    conn.image.update_image(image, is_protected=False)
    assert expected in str(info.value)


def test_list_error_carries_server_message(
        conn: connection.Connection, api: httpx.Client) -> None:
    """Listings ask for JSON; the flat {"message","code","title"} body is understood."""
    expected = server_message(api, "GET", "/v2/images?sort_key=bogus", 400)
    with pytest.raises(exceptions.BadRequestException) as info:
        list(conn.image.images(sort_key="bogus"))
    assert expected in str(info.value)


def test_upload_to_active_image_conflicts(conn: connection.Connection) -> None:
    """The upload PUT carries an empty `Accept:`, for which Glance itself answers text/plain, so
    only the status class is checked here."""
    data = os.urandom(4096)
    image = _create(conn, data)
    response = image.upload(conn.image, data=b"second")
    with pytest.raises(exceptions.ConflictException):
        exceptions.raise_from_response(response)
    stored = conn.image.get_image(image.id)
    assert stored.size == len(data)
    assert stored.hash_value == hashlib.sha512(data).hexdigest()


def test_reserved_property_update_forbidden(conn: connection.Connection) -> None:
    image = _create(conn)
    with pytest.raises(exceptions.ForbiddenException):
        conn.image.update_image(image, os_glance_sneaky="1")
    assert "os_glance_sneaky" not in conn.image.get_image(image.id).properties
