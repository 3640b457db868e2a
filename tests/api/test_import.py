"""Interoperable import against real servers: `PUT /stage`, `POST /import` with glance-direct,
web-download and copy-image, to one, some or all stores, and what a failed import leaves.

Servers:
- the shared `server` (`api`): one filesystem store, the default import settings (the filters
  refuse loopback and link-local addresses);
- `multi`: filesystem stores `fast` (weight 100), `cheap` (10) and `flaky` (1, whose folder a
  test replaces with a file to make its writes fail); web-download may reach loopback on any
  port (`import_allow_private_networks`, `import_allowed_ports = []`) but not the host
  169.254.169.254; deletion jobs run every 0.2 s;
- `limits`: one store, only web-download and copy-image enabled, `web_download_timeout` 1 s and
  an `image_size_cap` of 1 MiB.

Web-download sources are a loopback HTTP server (tests/http_source.py) that can stall half-way
and redirect. Images are real: qcow2 made with `qemu-img`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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
    show,
    uid,
)
from tests.http_source import Source, serving
from tests.servers import Server, start_server
from tests.stores.s3_server import new_bucket, start_moto

MiB = 1024 * 1024
FAST = {"cleanup_interval": 0.2}
#: Raw bytes with data in them, odd-sized (not a multiple of any chunk size).
RAW = bytes(range(256)) * (MiB // 256) + b"odd tail"


# -- servers and images ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Multi:
    client: httpx.Client
    server: Server
    root: Path

    def folder(self, store: str) -> Path:
        return self.root / store

    @property
    def staging(self) -> Path:
        return self.server.data_dir / "staging"

    @property
    def folders(self) -> list[Path]:
        return [self.folder(s) for s in ("fast", "cheap", "flaky")] + [self.staging]


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory,
          connect: Callable[..., httpx.Client]) -> Iterator[Multi]:
    root = tmp_path_factory.mktemp("import")
    config = root / "glimpse.toml"
    config.write_text("default_store = \"fast\"\n" + "".join(
        f'\n[stores.{name}]\ndriver = "filesystem"\nweight = {weight}\n'
        f'path = "{root / name}"\n'
        for name, weight in (("fast", 100), ("cheap", 10), ("flaky", 1))))
    server = start_server(root / "data", config=config, import_allow_private_networks="true",
                          import_allowed_ports="", import_disallowed_hosts="169.254.169.254",
                          **FAST)
    yield Multi(connect(server.url), server, root)
    server.stop()


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("limits") / "data",
                          enabled_import_methods="web-download,copy-image",
                          import_allow_private_networks="true", import_allowed_ports="",
                          web_download_timeout=1, image_size_cap=MiB, **FAST)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def limits(limits_server: Server, connect: Callable[..., httpx.Client]) -> httpx.Client:
    return connect(limits_server.url)


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with serving() as src:
        yield src


def qemu_img(*args: str) -> str:
    if shutil.which("qemu-img") is None:
        pytest.fail("qemu-img is missing: bash scripts/debian-packages qemu-utils")
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True).stdout


@dataclass(frozen=True)
class Images:
    qcow2: bytes
    virtual_size: int
    backed: bytes  # a qcow2 with a backing file
    random: bytes


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    work = tmp_path_factory.mktemp("images")
    raw = work / "source.raw"
    raw.write_bytes(RAW)
    made = work / "image.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(made))
    info = json.loads(qemu_img("info", "--output=json", "-f", "qcow2", str(made)))
    backed = work / "backed.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(raw), "-F", "raw", str(backed))
    return Images(made.read_bytes(), int(info["virtual-size"]), backed.read_bytes(),
                  os.urandom(MiB // 2 + 17))


# -- helpers ---------------------------------------------------------------------------------------

def stage(client: httpx.Client, image_id: str, data: bytes = DATA,
          **headers: str) -> httpx.Response:
    return client.put(f"/v2/images/{image_id}/stage", content=data,
                      headers={**OCTET, **headers})


def import_(client: httpx.Client, image_id: str, method: str, **body: Any) -> httpx.Response:
    uri = body.pop("uri", None)
    name: dict[str, Any] = {"name": method} if uri is None else {"name": method, "uri": uri}
    return client.post(f"/v2/images/{image_id}/import", json={"method": name, **body})


def tasks_of(client: httpx.Client, image_id: str) -> list[dict[str, Any]]:
    resp = client.get(f"/v2/images/{image_id}/tasks")
    assert resp.status_code == 200, resp.text
    tasks: list[dict[str, Any]] = resp.json()["tasks"]
    return tasks


def finished(client: httpx.Client, image_id: str, known: tuple[str, ...] = (),
             timeout: float = 30) -> dict[str, Any]:
    """Wait for the image's one task not in `known` to finish, and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [t for t in tasks_of(client, image_id) if t["id"] not in known]
        if new and all(t["status"] in ("success", "failure") for t in new):
            [task] = new
            return task
        time.sleep(0.05)
    raise AssertionError(f"the import of {image_id} did not finish: "
                         f"{tasks_of(client, image_id)}")


def succeeded(client: httpx.Client, image_id: str, known: tuple[str, ...] = ()
              ) -> dict[str, Any]:
    task = finished(client, image_id, known)
    assert task["status"] == "success", task
    return task


def failed(client: httpx.Client, image_id: str, known: tuple[str, ...] = ()) -> dict[str, Any]:
    task = finished(client, image_id, known)
    assert task["status"] == "failure", task
    assert task["message"], task
    return task


def files(folder: Path, image_id: str) -> list[Path]:
    """Every file of `image_id` in a store folder, committed or partial."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if image_id in p.name)


def wait_empty(folders: list[Path], image_id: str, timeout: float = 15) -> None:
    """Removal goes through deletion jobs: wait until no folder holds a file of the image."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(files(f, image_id) for f in folders):
            return
        time.sleep(0.05)
    left = [str(p) for f in folders for p in files(f, image_id)]
    raise AssertionError(f"data of {image_id} left behind: {left}")


def committed(folder: Path, image_id: str) -> bytes:
    [path] = [p for p in files(folder, image_id) if not p.name.startswith(".")]
    return path.read_bytes()


def assert_nothing_kept(client: httpx.Client, image_id: str, folders: list[Path]) -> None:
    image = show(client, image_id)
    assert image["status"] == "queued", image
    assert (image["size"], image["checksum"], image["virtual_size"]) == (None, None, None)
    assert not image.get("os_glance_import_task"), image
    assert client.get(f"/v2/images/{image_id}/file").status_code == 204
    wait_empty(folders, image_id)


def raw_image(client: httpx.Client, **body: Any) -> dict[str, Any]:
    return create_raw(client, name=f"import-{uid()}", **body)


def qcow2_image(client: httpx.Client) -> dict[str, Any]:
    return create(client, disk_format="qcow2", container_format="bare")


# -- discovery -------------------------------------------------------------------------------------

def test_import_methods_are_advertised(api: httpx.Client, limits: httpx.Client) -> None:
    info = api.get("/v2/info/import")
    assert info.status_code == 200, info.text
    assert info.json()["import-methods"]["value"] == ["glance-direct", "web-download",
                                                      "copy-image"]
    made = api.post("/v2/images", json={})
    assert made.headers["OpenStack-image-import-methods"] == \
        "glance-direct,web-download,copy-image"
    assert limits.get("/v2/info/import").json()["import-methods"]["value"] == \
        ["web-download", "copy-image"]


# -- stage -----------------------------------------------------------------------------------------

def test_stage_then_glance_direct_to_the_default_store(api: httpx.Client,
                                                       server: Server) -> None:
    image = raw_image(api)
    staged = stage(api, image["id"], RAW, **{"x-openstack-image-size": str(len(RAW))})
    assert staged.status_code == 204, staged.text
    after = show(api, image["id"])
    assert (after["status"], after["size"]) == ("uploading", len(RAW))
    assert after["checksum"] is None
    assert len(files(server.data_dir / "staging", image["id"])) == 1
    assert_error(stage(api, image["id"], RAW), 409)  # staged once

    started = import_(api, image["id"], "glance-direct")
    assert started.status_code == 202, started.text
    task = succeeded(api, image["id"])
    assert task["request_id"] == started.headers["x-openstack-request-id"]
    assert task["type"] == "api_image_import"
    assert task["input"]["import_req"]["method"]["name"] == "glance-direct"
    done = show(api, image["id"])
    assert done["status"] == "active", done
    assert done["checksum"] == hashlib.md5(RAW).hexdigest()
    assert done["os_hash_value"] == hashlib.sha512(RAW).hexdigest()
    assert (done["size"], done["virtual_size"]) == (len(RAW), len(RAW))
    assert not done.get("os_glance_import_task")
    assert api.get(f"/v2/images/{image['id']}/file").content == RAW
    assert committed(server.data_dir / "images", image["id"]) == RAW
    wait_empty([server.data_dir / "staging"], image["id"])


def test_stage_needs_a_queued_image(api: httpx.Client) -> None:
    image = create_active(api)
    assert_error(stage(api, image["id"]), 409)
    assert show(api, image["id"])["status"] == "active"


def test_stage_with_a_wrong_declared_size_is_400(api: httpx.Client, server: Server) -> None:
    image = raw_image(api)
    assert_error(stage(api, image["id"], DATA,
                       **{"x-openstack-image-size": str(len(DATA) + 1)}), 400)
    after = show(api, image["id"])
    assert (after["status"], after["size"]) == ("queued", None)
    wait_empty([server.data_dir / "staging"], image["id"])


def test_glance_direct_disabled(limits: httpx.Client) -> None:
    image = raw_image(limits)
    assert_error(stage(limits, image["id"]), 404)
    refused = import_(limits, image["id"], "glance-direct")
    assert_error(refused, 400)
    assert "glance-direct" in refused.json()["message"]
    assert show(limits, image["id"])["status"] == "queued"


def test_an_interrupted_stage_leaves_the_image_queued(api: httpx.Client,
                                                      server: Server) -> None:
    image = raw_image(api)
    staging = server.data_dir / "staging"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"PUT /v2/images/{image['id']}/stage HTTP/1.1\r\nHost: x\r\n"
                     "Content-Type: application/octet-stream\r\n"
                     "Content-Length: 50000000\r\n\r\n".encode())
        sock.sendall(os.urandom(3 * MiB))
        deadline = time.monotonic() + 10
        while not files(staging, image["id"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert show(api, image["id"])["status"] == "uploading"
    deadline = time.monotonic() + 10
    while show(api, image["id"])["status"] != "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    after = show(api, image["id"])
    assert (after["status"], after["size"]) == ("queued", None)
    wait_empty([staging], image["id"])
    assert stage(api, image["id"]).status_code == 204  # and it can be staged again


def test_glance_direct_with_nothing_staged_is_409(api: httpx.Client) -> None:
    image = raw_image(api)
    assert_error(import_(api, image["id"], "glance-direct"), 409)
    after = show(api, image["id"])
    assert after["status"] == "queued" and not after.get("os_glance_import_task")
    assert tasks_of(api, image["id"]) == []


# -- glance-direct to several stores ---------------------------------------------------------------

@pytest.mark.parametrize(("target", "stores"), [
    ({"stores": ["cheap", "fast"]}, "fast,cheap"),
    ({"all_stores": True}, "fast,cheap,flaky"),
])
def test_glance_direct_to_several_stores(multi: Multi, target: dict[str, Any],
                                         stores: str) -> None:
    client = multi.client
    image = raw_image(client)
    assert stage(client, image["id"], RAW).status_code == 204
    started = import_(client, image["id"], "glance-direct", **target)
    assert started.status_code == 202, started.text
    task = succeeded(client, image["id"])
    assert task["request_id"] == started.headers["x-openstack-request-id"]
    assert task["input"]["import_req"]["method"]["name"] == "glance-direct"
    done = show(client, image["id"])
    assert done["status"] == "active", done
    assert done["stores"] == stores  # heaviest first, whatever order was asked
    assert done["os_glance_importing_to_stores"] == ""
    assert done["os_glance_failed_import"] == ""
    for store in stores.split(","):
        assert committed(multi.folder(store), image["id"]) == RAW
    wait_empty([multi.staging], image["id"])
    assert client.get(f"/v2/images/{image['id']}/file").content == RAW


def test_a_second_import_while_one_runs_is_409(multi: Multi, source: Source,
                                               images: Images) -> None:
    client = multi.client
    image = qcow2_image(client)
    name = f"slow-{uid()}"
    url = source.add(name, images.qcow2)
    source.stall(name)
    try:
        assert import_(client, image["id"], "web-download", uri=url).status_code == 202
        assert source.stalled.wait(15), "the download did not start"
        running = show(client, image["id"])
        assert running["status"] == "importing"
        assert running["os_glance_import_task"]
        assert running["os_glance_importing_to_stores"] == "fast"
        assert_error(import_(client, image["id"], "web-download", uri=url), 409)
        assert_error(stage(client, image["id"]), 409)
    finally:
        source.release()
    succeeded(client, image["id"])
    done = show(client, image["id"])
    assert (done["status"], done["virtual_size"]) == ("active", images.virtual_size)
    assert source.gets_of(name) == 1


# -- web-download ----------------------------------------------------------------------------------

def test_web_download_of_a_real_qcow2(multi: Multi, source: Source, images: Images) -> None:
    client = multi.client
    image = qcow2_image(client)
    url = source.add(f"cirros-{uid()}.qcow2", images.qcow2)
    started = import_(client, image["id"], "web-download", uri=url)
    assert started.status_code == 202, started.text
    task = succeeded(client, image["id"])
    assert task["input"]["import_req"]["method"] == {"name": "web-download", "uri": url}
    done = show(client, image["id"])
    assert done["status"] == "active", done
    assert (done["size"], done["virtual_size"]) == (len(images.qcow2), images.virtual_size)
    assert done["checksum"] == hashlib.md5(images.qcow2).hexdigest()
    assert done["stores"] == "fast"
    assert committed(multi.folder("fast"), image["id"]) == images.qcow2
    wait_empty([multi.staging], image["id"])


@pytest.mark.parametrize(("host", "reason"), [
    ("127.0.0.1", "loopback"), ("169.254.169.254", "link-local")])
def test_web_download_refuses_internal_addresses_by_default(api: httpx.Client, source: Source,
                                                            host: str, reason: str) -> None:
    image = raw_image(api)
    name = f"secret-{uid()}"
    source.add(name, DATA)
    for uri in (f"http://{host}/{name}", source.url(name).replace("127.0.0.1", host)):
        refused = import_(api, image["id"], "web-download", uri=uri)
        assert_error(refused, 400)
        assert "filtering" in refused.json()["message"]
    assert reason in import_(api, image["id"], "web-download",
                             uri=f"http://{host}/{name}").json()["message"]
    assert source.gets_of(name) == 0
    after = show(api, image["id"])
    assert after["status"] == "queued" and not after.get("os_glance_import_task")
    assert tasks_of(api, image["id"]) == []


def test_a_redirect_to_a_forbidden_host_fails_the_task(multi: Multi, source: Source) -> None:
    client = multi.client
    image = raw_image(client)
    url = source.redirect(f"hop-{uid()}", "http://169.254.169.254/latest/meta-data/")
    assert import_(client, image["id"], "web-download", uri=url).status_code == 202
    task = failed(client, image["id"])
    assert "169.254.169.254" in task["message"] and "refused" in task["message"], task
    assert show(client, image["id"])["os_glance_failed_import"] == "fast"
    assert_nothing_kept(client, image["id"], multi.folders)


def test_a_stalling_source_fails_the_task(limits: httpx.Client, limits_server: Server,
                                          source: Source) -> None:
    image = raw_image(limits)
    name = f"stall-{uid()}"
    url = source.add(name, RAW[: MiB // 2])
    source.stall(name)
    try:
        assert import_(limits, image["id"], "web-download", uri=url).status_code == 202
        task = failed(limits, image["id"])
    finally:
        source.release()
    assert "no progress" in task["message"], task
    assert_nothing_kept(limits, image["id"], [limits_server.data_dir / "staging",
                                              limits_server.data_dir / "images"])


def test_a_source_over_the_size_cap_fails_the_task(limits: httpx.Client, limits_server: Server,
                                                   source: Source) -> None:
    image = raw_image(limits)
    url = source.add(f"big-{uid()}", RAW)  # 1 MiB and a bit; the cap is 1 MiB
    assert import_(limits, image["id"], "web-download", uri=url).status_code == 202
    task = failed(limits, image["id"])
    assert str(MiB) in task["message"] or "limit" in task["message"], task
    assert_nothing_kept(limits, image["id"], [limits_server.data_dir / "staging",
                                              limits_server.data_dir / "images"])


@pytest.mark.parametrize(("content", "reason"), [
    ("random", "raw data (no known format header), but its disk_format is 'qcow2'"),
    ("backed", "backing file"),
])
@pytest.mark.parametrize("method", ["web-download", "glance-direct"])
def test_hostile_content_fails_the_import_and_nothing_is_kept(
        multi: Multi, source: Source, images: Images, content: str, reason: str,
        method: str) -> None:
    client = multi.client
    image = qcow2_image(client)
    data: bytes = getattr(images, content)
    if method == "web-download":
        started = import_(client, image["id"], method,
                          uri=source.add(f"hostile-{uid()}", data), all_stores=True)
    else:
        assert stage(client, image["id"], data).status_code == 204
        started = import_(client, image["id"], method, all_stores=True)
    assert started.status_code == 202, started.text
    task = failed(client, image["id"])
    assert reason in task["message"], task
    assert_nothing_kept(client, image["id"], multi.folders)


# -- copy-image ------------------------------------------------------------------------------------

def test_copy_image_to_another_store(multi: Multi) -> None:
    client = multi.client
    image = create_active(client, RAW)
    assert image["stores"] == "fast"
    started = import_(client, image["id"], "copy-image", stores=["cheap"])
    assert started.status_code == 202, started.text
    task = succeeded(client, image["id"])
    assert task["request_id"] == started.headers["x-openstack-request-id"]
    done = show(client, image["id"])
    assert (done["status"], done["stores"]) == ("active", "fast,cheap")
    assert (done["checksum"], done["size"]) == (image["checksum"], image["size"])
    assert done["os_glance_importing_to_stores"] == ""
    assert committed(multi.folder("fast"), image["id"]) == RAW
    assert committed(multi.folder("cheap"), image["id"]) == RAW

    assert_error(import_(client, image["id"], "copy-image", stores=["fast"]), 409)
    assert_error(import_(client, image["id"], "copy-image", stores=["fast", "cheap"]), 409)
    assert len(tasks_of(client, image["id"])) == 1


def test_copy_image_is_for_admins(multi: Multi) -> None:
    project = f"proj-{uid()}"
    owner = {"X-Project-Id": project, "X-Roles": "member"}
    made = multi.client.post("/v2/images", json={"disk_format": "raw",
                                                 "container_format": "bare"}, headers=owner)
    image = made.json()
    assert multi.client.put(f"/v2/images/{image['id']}/file", content=DATA,
                            headers={**OCTET, **owner}).status_code == 204
    refused = multi.client.post(f"/v2/images/{image['id']}/import", headers=owner,
                                json={"method": {"name": "copy-image"}, "stores": ["cheap"]})
    assert_error(refused, 403)
    assert show(multi.client, image["id"])["stores"] == "fast"
    assert not files(multi.folder("cheap"), image["id"])


@pytest.fixture
def broken_flaky(multi: Multi) -> Iterator[None]:
    """The `flaky` store's folder replaced by a file: every write to it fails."""
    folder = multi.folder("flaky")
    kept = multi.root / "flaky-kept"
    folder.rename(kept)
    folder.write_bytes(b"not a folder")
    try:
        yield
    finally:
        folder.unlink()
        kept.rename(folder)


def test_copy_to_a_failing_store_keeps_the_others(multi: Multi, broken_flaky: None) -> None:
    client = multi.client
    image = create_active(client, RAW)
    started = import_(client, image["id"], "copy-image", stores=["cheap", "flaky"],
                      all_stores_must_succeed=False)
    assert started.status_code == 202, started.text
    succeeded(client, image["id"])
    done = show(client, image["id"])
    assert (done["status"], done["stores"]) == ("active", "fast,cheap")
    assert done["os_glance_failed_import"] == "flaky"
    assert done["os_glance_importing_to_stores"] == ""
    assert not done.get("os_glance_import_task")
    assert committed(multi.folder("cheap"), image["id"]) == RAW
    assert client.get(f"/v2/images/{image['id']}/file").content == RAW


def test_all_stores_must_succeed_undoes_every_copy(multi: Multi, broken_flaky: None) -> None:
    client = multi.client
    image = raw_image(client)
    assert stage(client, image["id"], RAW).status_code == 204
    started = import_(client, image["id"], "glance-direct", stores=["fast", "cheap", "flaky"],
                      all_stores_must_succeed=True)
    assert started.status_code == 202, started.text
    task = failed(client, image["id"])
    # the stores go in the order asked: fast and cheap had their copies when flaky failed
    assert task["message"].startswith("Import to store flaky failed"), task
    after = show(client, image["id"])
    assert after["os_glance_failed_import"] == "flaky", after
    assert after["os_glance_importing_to_stores"] == ""
    assert "stores" not in after or not after["stores"], after
    assert_nothing_kept(client, image["id"], multi.folders)


def test_an_s3_store_dying_mid_copy_leaves_the_image_active_in_the_others(
        tmp_path: Path, make_server: Callable[..., Server], connect: Callable[..., httpx.Client],
        source: Source) -> None:
    """copy-image of an image whose data is at an HTTP location (so its reads can stall), to
    `local` and a moto S3 store: the S3 server is killed while the copy to it streams."""
    moto = start_moto(tmp_path / "moto.log")
    try:
        bucket = new_bucket(moto)
        config = tmp_path / "glimpse.toml"
        config.write_text(f'''default_store = "local"

[stores.local]
driver = "filesystem"
weight = 100
path = "{tmp_path / 'local'}"

[stores.s3]
driver = "s3"
weight = 10
endpoint_url = "{moto.url}"
access_key = "{moto.access_key}"
secret_key = "{moto.secret_key}"
bucket = "{bucket}"
max_attempts = 1
connect_timeout = 2.0

[stores.web]
driver = "http"
allow_private_networks = true
''')
        client = connect(make_server(config=config, **FAST).url)
        image = raw_image(client)
        name = f"remote-{uid()}"
        url = source.add(name, RAW)
        added = client.post(f"/v2/images/{image['id']}/locations", json={"url": url})
        assert added.status_code == 202, added.text
        succeeded(client, image["id"])
        reads = source.gets_of(name)  # the location's hashing
        source.stall(name, gets=1, after=1)  # the copy to local reads it whole; s3's stalls
        started = import_(client, image["id"], "copy-image", stores=["local", "s3"],
                          all_stores_must_succeed=False)
        assert started.status_code == 202, started.text
        assert source.stalled.wait(15), "the copy to s3 did not start"
        assert source.gets_of(name) == reads + 2
        moto.stop()
    finally:
        source.release()
        moto.stop()
    known = tuple(t["id"] for t in tasks_of(client, image["id"])
                  if t["type"] == "location_import")
    task = succeeded(client, image["id"], known)
    assert task["result"]["stores"] == ["local"], task
    done = show(client, image["id"])
    assert done["status"] == "active", done
    assert set(done["stores"].split(",")) == {"local", "web"}
    assert done["os_glance_failed_import"] == "s3"
    assert done["os_glance_importing_to_stores"] == ""
    assert not done.get("os_glance_import_task")
    assert committed(tmp_path / "local", image["id"]) == RAW
    assert client.get(f"/v2/images/{image['id']}/file").content == RAW


def test_copy_image_inspects_what_it_copies(tmp_path: Path,
                                            connect: Callable[..., httpx.Client]) -> None:
    """Bytes that reached a store without inspection (a legacy location, which reads no data)
    are inspected when copied: random bytes claiming to be qcow2 never land in a second store."""
    config = tmp_path / "glimpse.toml"
    config.write_text("show_multiple_locations = true\ndefault_store = \"fast\"\n" + "".join(
        f'\n[stores.{name}]\ndriver = "filesystem"\npath = "{tmp_path / name}"\n'
        for name in ("fast", "cheap")))
    server = start_server(tmp_path / "data", config=config, **FAST)
    try:
        client = connect(server.url)
        made = client.post("/v2/images", json={"disk_format": "qcow2",
                                                "container_format": "bare"})
        image = made.json()
        (tmp_path / "fast").mkdir(exist_ok=True)
        lying = tmp_path / "fast" / "planted"
        lying.write_bytes(os.urandom(64 * 1024))
        resp = client.patch(f"/v2/images/{image['id']}", json=[{
            "op": "add", "path": "/locations/-",
            "value": {"url": f"file://{tmp_path / 'fast'}/planted", "metadata": {}}}],
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
        assert resp.status_code == 200, resp.text
        assert show(client, image["id"])["status"] == "active"
        assert import_(client, image["id"], "copy-image",
                       stores=["cheap"]).status_code == 202
        task = failed(client, image["id"])
        assert "qcow2" in task["message"] and "refused" in task["message"].lower(), task
        done = show(client, image["id"])
        assert (done["status"], done["stores"]) == ("active", "fast")
        assert done["os_glance_failed_import"] == "cheap"
        assert not [p for p in (tmp_path / "cheap").glob("*") if p.is_file()]
    finally:
        server.stop()
