"""PUT/GET /v2/images/{id}/file (facts 1.5, 1.9)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    DATA,
    OCTET,
    assert_error,
    create,
    create_active,
    create_raw,
    md5,
    show,
    upload,
)
from tests.servers import Server, start_server

SIZE = len(DATA)


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def assert_back_in_queued(client: httpx.Client, image_id: str) -> None:
    image = show(client, image_id)
    assert image["status"] == "queued"
    assert image["size"] is None
    assert image["checksum"] is None
    assert image["os_hash_value"] is None


def assert_active_with(client: httpx.Client, image_id: str, data: bytes) -> None:
    image = show(client, image_id)
    assert image["status"] == "active"
    assert image["size"] == len(data)
    assert image["checksum"] == md5(data)
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    resp = client.get(f"/v2/images/{image_id}/file")
    assert resp.status_code == 200
    assert resp.content == data


# --- upload --------------------------------------------------------------------------------------

def test_upload_with_content_length(api: httpx.Client) -> None:
    image = create_raw(api)
    resp = upload(api, image["id"])
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    assert_active_with(api, image["id"], DATA)


def test_upload_chunked(api: httpx.Client) -> None:
    image = create_raw(api)
    resp = api.put(f"/v2/images/{image['id']}/file", content=chunks(DATA), headers=OCTET)
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    assert resp.status_code == 204, resp.text
    assert_active_with(api, image["id"], DATA)


def test_upload_empty_image(api: httpx.Client) -> None:
    image = create_raw(api)
    assert upload(api, image["id"], b"").status_code == 204
    after = show(api, image["id"])
    assert (after["status"], after["size"], after["checksum"]) == ("active", 0, md5(b""))


@pytest.mark.parametrize("chunked", [False, True])
def test_upload_with_matching_size_header(api: httpx.Client, chunked: bool) -> None:
    image = create_raw(api)
    content: Any = chunks(DATA) if chunked else DATA
    resp = api.put(f"/v2/images/{image['id']}/file", content=content,
                   headers={**OCTET, "x-openstack-image-size": str(SIZE)})
    assert resp.status_code == 204, resp.text
    assert_active_with(api, image["id"], DATA)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("declared", [SIZE - 1, SIZE + 1, 1, SIZE * 2])
def test_upload_size_header_mismatch_is_400(api: httpx.Client, chunked: bool,
                                            declared: int) -> None:
    image = create_raw(api)
    content: Any = chunks(DATA) if chunked else DATA
    resp = api.put(f"/v2/images/{image['id']}/file", content=content,
                   headers={**OCTET, "x-openstack-image-size": str(declared)})
    assert_error(resp, 400)
    assert_back_in_queued(api, image["id"])
    # the image is usable again afterwards
    assert upload(api, image["id"]).status_code == 204
    assert_active_with(api, image["id"], DATA)


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory,
           connect: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    """A server with image_size_cap=1024 (started once for the module; a start costs ~1 s)."""
    srv = start_server(tmp_path_factory.mktemp("capped") / "data", image_size_cap=1024)
    yield connect(srv.url)
    srv.stop()


@pytest.mark.parametrize(
    ("chunked", "headers"),
    [(False, {}), (True, {}), (True, {"x-openstack-image-size": "2048"}),
     (False, {"x-openstack-image-size": "2048"})],
    ids=["content-length", "chunked", "chunked-declared", "declared"],
)
def test_upload_over_size_cap_is_413(capped: httpx.Client, chunked: bool,
                                     headers: dict[str, str]) -> None:
    image = create_raw(capped)
    too_big = b"b" * 2048
    content: Any = chunks(too_big, 256) if chunked else too_big
    resp = capped.put(f"/v2/images/{image['id']}/file", content=content,
                      headers={**OCTET, **headers})
    assert_error(resp, 413)
    assert_back_in_queued(capped, image["id"])
    exact = b"e" * 1024  # the cap itself is allowed
    assert upload(capped, image["id"], exact).status_code == 204
    assert_active_with(capped, image["id"], exact)


def test_size_cap_via_make_server(make_server: Callable[..., Server],
                                  connect: Callable[..., httpx.Client]) -> None:
    client = connect(make_server(image_size_cap=100).url)
    image = create_raw(client)
    assert_error(upload(client, image["id"], b"x" * 101), 413)
    assert_back_in_queued(client, image["id"])
    assert upload(client, image["id"], b"x" * 100).status_code == 204


def test_upload_to_active_image_is_409(api: httpx.Client) -> None:
    image = create_active(api)
    assert_error(upload(api, image["id"], b"other data"), 409)
    assert_active_with(api, image["id"], DATA)


def test_upload_to_deactivated_image_is_409(api: httpx.Client) -> None:
    image = create_active(api)
    assert api.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 204
    assert_error(upload(api, image["id"], b"other data"), 409)
    assert show(api, image["id"])["status"] == "deactivated"


@pytest.mark.parametrize("content_type", ["application/json", "text/plain",
                                          "application/x-www-form-urlencoded", None])
def test_upload_wrong_content_type_is_415(api: httpx.Client, content_type: str | None) -> None:
    image = create_raw(api)
    headers = {"Content-Type": content_type} if content_type else {}
    resp = api.put(f"/v2/images/{image['id']}/file", content=DATA, headers=headers)
    assert_error(resp, 415)
    assert_back_in_queued(api, image["id"])


@pytest.mark.parametrize("body", [{}, {"disk_format": "raw"}, {"container_format": "bare"}],
                         ids=str)
def test_upload_before_formats_set_is_400(api: httpx.Client, body: dict[str, str]) -> None:
    image = create(api, **body)
    assert_error(upload(api, image["id"]), 400)
    assert_back_in_queued(api, image["id"])


def test_upload_by_non_owner_is_refused(api: httpx.Client, member: httpx.Client) -> None:
    public = create_raw(api, visibility="public")
    assert_error(upload(member, public["id"]), 403)
    assert_back_in_queued(api, public["id"])
    private = create_raw(api, visibility="private")
    assert_error(upload(member, private["id"]), 404)


# --- download ------------------------------------------------------------------------------------

def test_download_headers(api: httpx.Client) -> None:
    image = create_active(api)
    resp = api.get(f"/v2/images/{image['id']}/file")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["content-length"] == str(SIZE)
    assert resp.headers["content-md5"] == md5(DATA)  # hex, not base64
    assert resp.content == DATA


def test_download_of_queued_image_is_204(api: httpx.Client) -> None:
    image = create_raw(api)
    resp = api.get(f"/v2/images/{image['id']}/file")
    assert resp.status_code == 204
    assert resp.content == b""


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=100-199", 100, 199),
        ("bytes=0-0", 0, 0),
        (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE - 1),
        ("bytes=100-", 100, SIZE - 1),
        ("bytes=0-", 0, SIZE - 1),
        ("bytes=-10", SIZE - 10, SIZE - 1),
        (f"bytes=-{SIZE}", 0, SIZE - 1),
    ],
)
def test_single_range_is_206(api: httpx.Client, range_header: str, start: int,
                             end: int) -> None:
    image = create_active(api)
    resp = api.get(f"/v2/images/{image['id']}/file", headers={"Range": range_header})
    assert resp.status_code == 206, resp.text
    assert resp.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert resp.headers["content-length"] == str(end - start + 1)
    assert resp.content == DATA[start:end + 1]


def test_legacy_request_content_range_is_honoured(api: httpx.Client) -> None:
    image = create_active(api)
    resp = api.get(f"/v2/images/{image['id']}/file",
                   headers={"Content-Range": f"bytes 2-5/{SIZE}"})
    assert resp.status_code == 206, resp.text
    assert resp.headers["content-range"] == f"bytes 2-5/{SIZE}"
    assert resp.content == DATA[2:6]


@pytest.mark.parametrize("range_header", ["bytes=0-1,5-6", "bytes=0-9,20-", "bytes=-5,0-1"])
def test_multiple_ranges_is_400(api: httpx.Client, range_header: str) -> None:
    image = create_active(api)
    resp = api.get(f"/v2/images/{image['id']}/file", headers={"Range": range_header})
    assert_error(resp, 400)


@pytest.mark.parametrize("range_header", [f"bytes={SIZE}-", f"bytes={SIZE}-{SIZE + 10}",
                                          f"bytes={SIZE + 100}-{SIZE + 200}"])
def test_range_starting_past_end_is_416(api: httpx.Client, range_header: str) -> None:
    image = create_active(api)
    resp = api.get(f"/v2/images/{image['id']}/file", headers={"Range": range_header})
    assert_error(resp, 416)
    assert resp.headers["content-range"] == f"bytes */{SIZE}"


def test_deactivated_image_download(api: httpx.Client, member: httpx.Client) -> None:
    image = create_active(api, visibility="public")
    assert member.get(f"/v2/images/{image['id']}/file").content == DATA
    assert api.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 204
    assert_error(member.get(f"/v2/images/{image['id']}/file"), 403)
    admin = api.get(f"/v2/images/{image['id']}/file")  # admins may still download
    assert admin.status_code == 200
    assert admin.content == DATA
    assert api.post(f"/v2/images/{image['id']}/actions/reactivate").status_code == 204
    assert member.get(f"/v2/images/{image['id']}/file").content == DATA


def test_owner_non_admin_cannot_download_deactivated(member: httpx.Client,
                                                     api: httpx.Client) -> None:
    image = create_raw(member)
    assert upload(member, image["id"]).status_code == 204
    assert api.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 204
    assert_error(member.get(f"/v2/images/{image['id']}/file"), 403)


def test_download_invisible_image_is_404(api: httpx.Client, member: httpx.Client) -> None:
    image = create_active(api, visibility="private")
    assert_error(member.get(f"/v2/images/{image['id']}/file"), 404)


def test_download_after_failed_upload_is_204(api: httpx.Client) -> None:
    image = create_raw(api)
    resp = upload(api, image["id"], DATA, **{"x-openstack-image-size": str(SIZE + 5)})
    assert_error(resp, 400)
    download = api.get(f"/v2/images/{image['id']}/file")
    assert download.status_code == 204
    assert download.content == b""


@pytest.mark.parametrize("prefer", ["file", "nope", "file,nope"])
def test_prefer_without_multistore_is_400(api: httpx.Client, prefer: str) -> None:
    image = create_active(api)
    resp = api.get(f"/v2/images/{image['id']}/file", params={"prefer": prefer})
    assert_error(resp, 400)


# --- uploads interrupted by other requests --------------------------------------------------------

def wait_for_status(client: httpx.Client, image_id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if show(client, image_id)["status"] == status:
            return
        time.sleep(0.02)
    raise AssertionError(f"image never reached {status!r} while its upload was in flight")


def test_second_upload_while_saving_is_409(api: httpx.Client) -> None:
    image = create_raw(api)
    second: list[httpx.Response] = []

    def body() -> Iterator[bytes]:
        yield DATA[:1024]
        wait_for_status(api, image["id"], "saving")
        second.append(upload(api, image["id"], b"intruder"))
        yield DATA[1024:]

    resp = api.put(f"/v2/images/{image['id']}/file", content=body(), headers=OCTET)
    assert resp.status_code == 204, resp.text
    assert_error(second[0], 409)
    assert_active_with(api, image["id"], DATA)


def test_delete_during_upload_is_410(api: httpx.Client) -> None:
    image = create_raw(api)

    def body() -> Iterator[bytes]:
        yield DATA[:1024]
        wait_for_status(api, image["id"], "saving")
        assert api.delete(f"/v2/images/{image['id']}").status_code == 204
        yield DATA[1024:]

    resp = api.put(f"/v2/images/{image['id']}/file", content=body(), headers=OCTET)
    assert_error(resp, 410)
    assert_error(api.get(f"/v2/images/{image['id']}"), 404)
    assert_error(api.get(f"/v2/images/{image['id']}/file"), 404)
