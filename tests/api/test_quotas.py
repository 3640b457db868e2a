"""Per-project quotas against real servers: `GET /v2/info/usage`, each quota at its limit and
one over (413, nothing kept), and two real uploads racing for the last bytes of a project.

Each test acts for a project of its own (`X-Project-Id`), so tests share a server freely.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    OCTET,
    assert_error,
    create_raw,
    md5,
    show,
    uid,
    upload,
)
from tests.api.test_locations import wait_tasks
from tests.servers import Server, start_server

QUOTAS = ("image_size_total", "image_stage_total", "image_count_total", "image_count_uploading")
SIZE_LIMIT = 1000
COUNT_LIMIT = 3


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Small limits: 1000 bytes, 3 images, 1 upload at a time, nothing in staging."""
    srv = start_server(tmp_path_factory.mktemp("quotas") / "data",
                       image_size_total=SIZE_LIMIT, image_count_total=COUNT_LIMIT,
                       image_count_uploading=1, image_stage_total=0)
    yield srv
    srv.stop()


@pytest.fixture
def project(quota_server: Server, connect: Callable[..., httpx.Client]) -> httpx.Client:
    """A member of a fresh project on the quota server."""
    return connect(quota_server.url, **{"X-Project-Id": f"q-{uid()}", "X-Roles": "member"})


def usage(client: httpx.Client) -> dict[str, dict[str, int]]:
    resp = client.get("/v2/info/usage")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, dict[str, dict[str, int]]] = resp.json()
    assert set(body) == {"usage"} and set(body["usage"]) == set(QUOTAS), body
    return body["usage"]


def used(client: httpx.Client) -> dict[str, int]:
    return {name: line["usage"] for name, line in usage(client).items()}


def assert_quota_error(resp: httpx.Response, quota: str) -> None:
    assert_error(resp, 413)
    assert f"Resource {quota} is over limit" in resp.json()["message"], resp.text


def assert_queued_without_data(client: httpx.Client, image_id: str) -> None:
    image = show(client, image_id)
    assert (image["status"], image["size"], image["checksum"]) == ("queued", None, None), image
    assert client.get(f"/v2/images/{image_id}/file").status_code == 204


def active(client: httpx.Client, data: bytes) -> dict[str, Any]:
    image = create_raw(client)
    resp = upload(client, image["id"], data)
    assert resp.status_code == 204, resp.text
    return show(client, image["id"])


def wait_for_status(client: httpx.Client, image_id: str, status: str) -> None:
    for _ in range(3000):
        if show(client, image_id)["status"] == status:
            return
        time.sleep(0.01)
    raise AssertionError(f"image {image_id} never reached {status}")


class HeldUpload:
    """An upload in its own thread that sends `first`, then waits for `release()` to send
    `rest`; `response()` waits for the answer."""

    def __init__(self, client: httpx.Client, image_id: str, first: bytes, rest: bytes,
                 **headers: str) -> None:
        self._go = threading.Event()
        self._done: list[httpx.Response | BaseException] = []

        def body() -> Iterator[bytes]:
            yield first
            self._go.wait()
            yield rest

        def run() -> None:
            try:
                self._done.append(client.put(f"/v2/images/{image_id}/file", content=body(),
                                             headers={**OCTET, **headers}))
            except BaseException as exc:  # reported by response()
                self._done.append(exc)

        self._thread = threading.Thread(target=run)
        self._thread.start()

    def release(self) -> None:
        self._go.set()

    def response(self) -> httpx.Response:
        self.release()
        self._thread.join()
        result = self._done[0]
        if isinstance(result, BaseException):
            raise result
        return result


# -- GET /v2/info/usage -----------------------------------------------------------------------


def test_usage_without_limits_shows_minus_one(client_for: Callable[..., httpx.Client]) -> None:
    reader = client_for(f"u-{uid()}", roles="reader")
    assert usage(reader) == {name: {"limit": -1, "usage": 0} for name in QUOTAS}


def test_usage_before_and_after_create_upload_and_delete(project: httpx.Client) -> None:
    limits = {name: line["limit"] for name, line in usage(project).items()}
    assert limits == {"image_size_total": SIZE_LIMIT, "image_stage_total": 0,
                      "image_count_total": COUNT_LIMIT, "image_count_uploading": 1}
    assert used(project) == dict.fromkeys(QUOTAS, 0)
    image = create_raw(project)
    assert used(project) == {**dict.fromkeys(QUOTAS, 0), "image_count_total": 1}
    held = HeldUpload(project, image["id"], b"a" * 100, b"b" * 150)
    wait_for_status(project, image["id"], "saving")
    assert used(project) == {**dict.fromkeys(QUOTAS, 0), "image_count_total": 1,
                             "image_count_uploading": 1}
    assert held.response().status_code == 204
    assert used(project) == {**dict.fromkeys(QUOTAS, 0), "image_count_total": 1,
                             "image_size_total": 250}
    assert project.delete(f"/v2/images/{image['id']}").status_code == 204
    assert used(project) == dict.fromkeys(QUOTAS, 0)


def test_usage_is_the_callers_own_project(project: httpx.Client, quota_server: Server,
                                          connect: Callable[..., httpx.Client]) -> None:
    active(project, b"x" * 10)
    project_id = project.headers["X-Project-Id"]
    reader = connect(quota_server.url, **{"X-Project-Id": project_id, "X-Roles": "reader"})
    assert used(reader)["image_size_total"] == 10
    other = connect(quota_server.url, **{"X-Project-Id": f"q-{uid()}", "X-Roles": "reader"})
    assert used(other)["image_size_total"] == 0


def test_usage_needs_a_role_on_the_project(quota_server: Server,
                                           connect: Callable[..., httpx.Client]) -> None:
    nobody = connect(quota_server.url, **{"X-Project-Id": f"q-{uid()}", "X-Roles": "observer"})
    assert_error(nobody.get("/v2/info/usage"), 403)


def test_usage_answers_under_the_versioned_prefix(project: httpx.Client) -> None:
    resp = project.get("/v2.15/info/usage")
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["image_count_total"] == {"limit": COUNT_LIMIT, "usage": 0}


# -- image_count_total --------------------------------------------------------------------------


def test_create_at_the_count_limit_passes_one_over_is_413(project: httpx.Client) -> None:
    made = [create_raw(project) for _ in range(COUNT_LIMIT)]  # at the limit
    resp = project.post("/v2/images", json={"name": "one too many"})
    assert_quota_error(resp, "image_count_total")
    assert len(project.get("/v2/images").json()["images"]) == COUNT_LIMIT  # none kept
    assert used(project)["image_count_total"] == COUNT_LIMIT
    assert project.delete(f"/v2/images/{made[0]['id']}").status_code == 204
    create_raw(project)  # deleted images no longer count


# -- image_size_total --------------------------------------------------------------------------


def put_headers_only(server: Server, project: str, image_id: str, size: int) -> int:
    """Send an upload's request head declaring `size` bytes and no byte of the body; the
    status of the answer (the server must answer without waiting for the body)."""
    head = (f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
            f"x-openstack-image-size: {size}\r\nX-Project-Id: {project}\r\n"
            f"X-Roles: member\r\nAccept: application/json\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head.encode())
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def test_declared_size_over_the_quota_is_refused_before_any_byte(
        project: httpx.Client, quota_server: Server) -> None:
    active(project, b"s" * 600)
    image = create_raw(project)
    project_id = project.headers["X-Project-Id"]
    assert put_headers_only(quota_server, project_id, image["id"], 401) == 413
    resp = upload(project, image["id"], b"d" * 401, **{"x-openstack-image-size": "401"})
    assert_quota_error(resp, "image_size_total")
    assert_queued_without_data(project, image["id"])
    exact = b"e" * 400  # 600 + 400: at the limit
    assert upload(project, image["id"], exact,
                  **{"x-openstack-image-size": "400"}).status_code == 204
    assert show(project, image["id"])["checksum"] == md5(exact)
    assert used(project)["image_size_total"] == SIZE_LIMIT


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at:at + size]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_undeclared_upload_over_the_quota_stops_with_413(project: httpx.Client,
                                                         chunked: bool) -> None:
    active(project, b"s" * 600)
    image = create_raw(project)
    over = b"o" * 401
    resp = project.put(f"/v2/images/{image['id']}/file",
                       content=chunks(over, 50) if chunked else over, headers=OCTET)
    assert_quota_error(resp, "image_size_total")
    assert_queued_without_data(project, image["id"])
    assert used(project)["image_size_total"] == 600
    exact = b"e" * 400
    content: Any = chunks(exact, 50) if chunked else exact
    assert project.put(f"/v2/images/{image['id']}/file", content=content,
                       headers=OCTET).status_code == 204
    assert used(project)["image_size_total"] == SIZE_LIMIT


def test_a_large_stream_is_stopped_once_past_the_quota(project: httpx.Client) -> None:
    image = create_raw(project)
    resp = project.put(f"/v2/images/{image['id']}/file",
                       content=chunks(b"L" * (8 * 1024 * 1024), 64 * 1024), headers=OCTET)
    assert_quota_error(resp, "image_size_total")
    assert_queued_without_data(project, image["id"])


def test_a_full_project_can_still_store_an_empty_image(project: httpx.Client) -> None:
    active(project, b"f" * SIZE_LIMIT)
    image = create_raw(project)
    assert_quota_error(upload(project, image["id"], b"1"), "image_size_total")
    assert upload(project, image["id"], b"").status_code == 204


# -- image_count_uploading ----------------------------------------------------------------------


def test_uploads_at_the_uploading_limit_pass_one_more_is_413(project: httpx.Client) -> None:
    first, second = create_raw(project), create_raw(project)
    held = HeldUpload(project, first["id"], b"1" * 10, b"2" * 10)  # 1 uploading: the limit
    wait_for_status(project, first["id"], "saving")
    resp = upload(project, second["id"], b"x" * 10)
    assert_quota_error(resp, "image_count_uploading")
    assert_queued_without_data(project, second["id"])
    assert held.response().status_code == 204
    assert upload(project, second["id"], b"x" * 10).status_code == 204  # the first is done


# -- two uploads racing for the last bytes ------------------------------------------------------


@pytest.fixture(scope="module")
def race_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Only a size quota: any number of uploads may run at once."""
    srv = start_server(tmp_path_factory.mktemp("race") / "data", image_size_total=SIZE_LIMIT)
    yield srv
    srv.stop()


def stored_files(server: Server, *image_ids: str) -> list[str]:
    """Files of the store (partial ones included) that belong to `image_ids`."""
    root: Path = server.data_dir / "images"
    return sorted(p.name for p in root.rglob("*") if p.is_file()
                  and any(i in p.name for i in image_ids))


def start_pair(client: httpx.Client) -> tuple[list[dict[str, Any]], list[bytes], list[HeldUpload]]:
    """Two uploads (600 and 500 bytes: each fits, both do not) both past their usage snapshot,
    their last bytes not sent yet."""
    images = [create_raw(client), create_raw(client)]
    data = [b"A" * 600, b"B" * 500]
    held = [HeldUpload(client, image["id"], blob[:100], blob[100:])
            for image, blob in zip(images, data, strict=True)]
    for image in images:  # both saving: both read usage 0 before either finished
        wait_for_status(client, image["id"], "saving")
    return images, data, held


def check_one_kept(client: httpx.Client, server: Server, images: list[dict[str, Any]],
                   data: list[bytes], statuses: list[int]) -> int:
    """Exactly one upload stored, the other refused with nothing kept; returns the kept one."""
    assert sorted(statuses) == [204, 413], statuses
    kept = statuses.index(204)
    refused = 1 - kept
    winner = show(client, images[kept]["id"])
    assert (winner["status"], winner["size"]) == ("active", len(data[kept]))
    assert client.get(f"/v2/images/{images[kept]['id']}/file").content == data[kept]
    assert_queued_without_data(client, images[refused]["id"])
    assert used(client)["image_size_total"] == len(data[kept]) <= SIZE_LIMIT
    assert len(stored_files(server, images[kept]["id"], images[refused]["id"])) == 1
    assert stored_files(server, images[refused]["id"]) == []
    return kept


@pytest.mark.parametrize("round_", range(4))
def test_two_concurrent_uploads_past_the_quota_one_fails(
        race_server: Server, connect: Callable[..., httpx.Client], round_: int) -> None:
    client = connect(race_server.url, **{"X-Project-Id": f"r-{uid()}", "X-Roles": "member"})
    images, data, held = start_pair(client)
    for upload_ in held:
        upload_.release()  # both finish at once
    statuses = [h.response().status_code for h in held]
    check_one_kept(client, race_server, images, data, statuses)


@pytest.mark.parametrize("first", [0, 1])
def test_the_upload_that_finishes_second_is_the_one_refused(
        race_server: Server, connect: Callable[..., httpx.Client], first: int) -> None:
    client = connect(race_server.url, **{"X-Project-Id": f"r-{uid()}", "X-Roles": "member"})
    images, data, held = start_pair(client)
    statuses = [0, 0]
    statuses[first] = held[first].response().status_code
    statuses[1 - first] = held[1 - first].response().status_code
    assert check_one_kept(client, race_server, images, data, statuses) == first
    resp = held[1 - first].response()
    assert_quota_error(resp, "image_size_total")


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("use_keystone_limits", "true", "use_keystone_limits: needs auth = keystone (not noauth)"),
    ("image_size_total", "-2", "image_size_total: must be -1 (no limit), 0 or more"),
    ("image_count_uploading", "many", "image_count_uploading: cannot use 'many'"),
    ("image_location_quota", "-5", "image_location_quota: must be -1 (no limit)"),
])
def test_bad_quota_settings_stop_serve(tmp_path: Path, setting: str, value: str,
                                       message: str) -> None:
    env = {**os.environ, "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
           f"GLIMPSE_{setting.upper()}": value}
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--port", "1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"glimpse: configuration error: {message}"), done.stderr


# -- staging and import ---------------------------------------------------------------------------

def stage(client: httpx.Client, image_id: str, data: bytes) -> httpx.Response:
    return client.put(f"/v2/images/{image_id}/stage", content=data, headers=OCTET)


def test_staging_over_image_stage_total_is_413_and_nothing_is_kept(
        project: httpx.Client, quota_server: Server) -> None:
    image = create_raw(project)  # the quota server allows nothing in staging
    assert_quota_error(stage(project, image["id"], b"s" * 10), "image_stage_total")
    assert_queued_without_data(project, image["id"])
    assert list((quota_server.data_dir / "staging").glob(f"*{image['id']}*")) == []
    assert used(project)["image_stage_total"] == 0


@pytest.fixture(scope="module")
def import_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Room for 1000 bytes in stores but 5000 in staging."""
    srv = start_server(tmp_path_factory.mktemp("import-quota") / "data",
                       image_size_total=SIZE_LIMIT, image_stage_total=5 * SIZE_LIMIT)
    yield srv
    srv.stop()


def test_an_import_past_image_size_total_fails_and_keeps_nothing(
        import_server: Server, connect: Callable[..., httpx.Client]) -> None:
    client = connect(import_server.url, **{"X-Project-Id": f"q-{uid()}", "X-Roles": "member"})
    image = create_raw(client)
    data = b"i" * (SIZE_LIMIT + 1)
    assert stage(client, image["id"], data).status_code == 204
    assert used(client)["image_stage_total"] == len(data)
    resp = client.post(f"/v2/images/{image['id']}/import",
                       json={"method": {"name": "glance-direct"}})
    assert resp.status_code == 202, resp.text
    [task] = wait_tasks(client, image["id"], "failure")
    assert "image_size_total is over limit" in task["message"], task
    assert_queued_without_data(client, image["id"])
    assert used(client)["image_size_total"] == 0
    stored = [p for p in import_server.data_dir.rglob(f"*{image['id']}*") if p.is_file()]
    assert stored == []
    # within the quota the same project imports fine
    small = create_raw(client)
    assert stage(client, small["id"], b"k" * SIZE_LIMIT).status_code == 204
    assert client.post(f"/v2/images/{small['id']}/import",
                       json={"method": {"name": "glance-direct"}}).status_code == 202
    wait_tasks(client, small["id"], "success")
    assert used(client)["image_size_total"] == SIZE_LIMIT
