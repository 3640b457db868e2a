"""End to end with several stores at once (Glance's multi-store): python-glanceclient and
openstacksdk against one real `glimpse serve` whose stores are a folder (`fs`, the default), the
real Swift (`swift`, tempauth), a moto server of this module's own (`s3`, so that it can be
stopped mid-test) and a loopback HTTP server (`web`, read-only).

Uploads go to the store asked for (`X-Image-Meta-Store`), `stores` says where the data is, a
second copy is added through the legacy location PATCH (`show_multiple_locations`), one copy is
deleted from one store (`DELETE /v2/stores/{store}/{id}`, never the last), and a download falls
back to the next location when a store is down, with 503 (not 404) once none can be read. Every
effect on a backend is checked behind the server's back: the folder, Swift's API, boto3.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import glanceclient
import httpx
import pytest
from glanceclient import exc as gc_exc
from openstack import connection, exceptions

from tests.servers import Server, start_server
from tests.stores import s3_server
from tests.stores.s3_server import S3Endpoint

pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]
MIB = 1024 * 1024
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


# --- the backends ----------------------------------------------------------------------------


class SwiftAccount:
    """Swift's own API (tempauth), to put and look at objects behind the server's back."""

    def __init__(self, facts: dict[str, Any], container: str) -> None:
        self.container = container
        self.prefix = f"swift+{httpx.URL(facts['auth_url']).scheme}://" \
                      f"{httpx.URL(facts['auth_url']).netloc.decode()}/{container}/"
        got = httpx.get(facts["auth_url"], headers={"X-Auth-User": facts["user"],
                                                    "X-Auth-Key": facts["key"]}, timeout=30)
        got.raise_for_status()
        self._storage = got.headers["X-Storage-Url"]
        self._token = got.headers["X-Auth-Token"]

    def _url(self, key: str) -> str:
        return f"{self._storage}/{self.container}/{key}"

    def put(self, key: str, data: bytes) -> str:
        """Store `data` under `key`; returns its location URL as the server writes them."""
        done = httpx.put(self._url(key), content=data, headers={"X-Auth-Token": self._token},
                         timeout=60)
        assert done.status_code == 201, done.text
        return self.prefix + key

    def exists(self, key: str) -> bool:
        status = httpx.head(self._url(key), headers={"X-Auth-Token": self._token},
                            timeout=30).status_code
        assert status in (200, 404), status
        return status == 200


@dataclass
class Moto:
    """This module's moto server: stopped and started again on the same port by the tests."""

    folder: Path
    bucket: str
    endpoint: S3Endpoint = field(init=False)

    def __post_init__(self) -> None:
        self.endpoint = s3_server.start_moto(self.folder / "moto.log")
        self.endpoint.client().create_bucket(Bucket=self.bucket)

    @property
    def port(self) -> int:
        return int(self.endpoint.url.rsplit(":", 1)[1])

    @property
    def prefix(self) -> str:
        return f"s3://127.0.0.1:{self.port}/{self.bucket}/"

    def put(self, key: str, data: bytes) -> str:
        self.endpoint.client().put_object(Bucket=self.bucket, Key=key, Body=data)
        return self.prefix + key

    def exists(self, key: str) -> bool:
        found = self.endpoint.client().list_objects_v2(Bucket=self.bucket, Prefix=key)
        return any(item["Key"] == key for item in found.get("Contents", []))

    def stop(self) -> None:
        self.endpoint.stop()

    def restart(self) -> None:
        """A fresh moto on the same port (moto keeps nothing: the bucket is made again)."""
        self.endpoint.stop()
        self.endpoint = s3_server.start_moto(self.folder / "moto.log", port=self.port)
        self.endpoint.client().create_bucket(Bucket=self.bucket)


class _Files(BaseHTTPRequestHandler):
    files: dict[str, bytes]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, body: bool) -> None:
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, end, status = 0, len(data) - 1, 200
        asked = self.headers.get("Range", "")
        if asked.startswith("bytes="):
            first, _, last = asked[len("bytes="):].partition("-")
            start = int(first)
            end = min(int(last), end) if last else end
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(data[start:end + 1])

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)


class WebServer:
    """Files over HTTP on a loopback port, for the `web` store; stopped and started again."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.port = s3_server.free_port()
        self._httpd: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        handler = type("Files", (_Files,), {"files": self.files})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def put(self, name: str, data: bytes) -> str:
        self.files[f"/{name}"] = data
        return f"http://127.0.0.1:{self.port}/{name}"


@dataclass
class Stores:
    fs: Path
    swift: SwiftAccount
    moto: Moto
    web: WebServer


@pytest.fixture(scope="module")
def stores(swift: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    folder = tmp_path_factory.mktemp("multistore")
    moto = Moto(folder, f"ms-{uuid.uuid4().hex[:12]}")
    web = WebServer()
    yield Stores(folder / "fs", SwiftAccount(swift, f"ms-{uuid.uuid4().hex[:12]}"), moto, web)
    web.stop()
    moto.stop()


@pytest.fixture(scope="module")
def server(stores: Stores, swift: dict[str, Any],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("multistore-server")
    config = folder / "glimpse.toml"
    config.write_text(f'''
default_store = "fs"
show_multiple_locations = true

[stores.fs]
driver = "filesystem"
description = "Local disks"
path = "{stores.fs}"

[stores.swift]
driver = "swift"
auth_url = "{swift["auth_url"]}"
user = "{swift["user"]}"
key = "{swift["key"]}"
container = "{stores.swift.container}"
timeout = 10.0

[stores.s3]
driver = "s3"
endpoint_url = "{stores.moto.endpoint.url}"
access_key = "{stores.moto.endpoint.access_key}"
secret_key = "{stores.moto.endpoint.secret_key}"
bucket = "{stores.moto.bucket}"
max_attempts = 1
connect_timeout = 2.0
read_timeout = 10.0

[stores.web]
driver = "http"
allow_private_networks = true
connect_timeout = 2.0
timeout = 10.0
''')
    srv = start_server(folder / "data", config=config)
    yield srv
    srv.stop()


@pytest.fixture
def gc(server: Server) -> Any:
    return glanceclient.Client("2", endpoint=server.url, token="anything")


@pytest.fixture
def sdk(server: Server) -> Iterator[connection.Connection]:
    conn = connection.Connection(auth_type="none", image_endpoint_override=server.url)
    yield conn
    conn.close()


# --- helpers ---------------------------------------------------------------------------------


def _payload(size: int = MIB + 17) -> bytes:
    return os.urandom(size)


def _key(stores: Stores, store: str, url: str) -> str:
    """The backend key of a location URL of `store` (its URL minus the store's prefix)."""
    prefix = {"fs": f"file://{stores.fs.absolute()}/", "swift": stores.swift.prefix,
              "s3": stores.moto.prefix}[store]
    assert url.startswith(prefix), (store, url)
    return url[len(prefix):]


def _exists(stores: Stores, store: str, key: str) -> bool:
    if store == "fs":
        return (stores.fs / key).is_file()
    if store == "swift":
        return stores.swift.exists(key)
    return stores.moto.exists(key)


def _eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Deletion jobs run right after the change that records them, not before its answer."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def _validation(data: bytes) -> dict[str, str]:
    return {"checksum": hashlib.md5(data).hexdigest(), "os_hash_algo": "sha512",
            "os_hash_value": hashlib.sha512(data).hexdigest()}


def _upload(gc: Any, data: bytes, store: str, name: str = "ms") -> Any:
    image = gc.images.create(name=name, disk_format="raw", container_format="bare")
    gc.images.upload(image.id, io.BytesIO(data), image_size=len(data), backend=store)
    return gc.images.get(image.id)


def _sdk_stores(image: Any) -> str:
    """The SDK's Image has no `stores` attribute: it lands among the extra properties."""
    return str(image.properties["stores"])


def _download(gc: Any, image_id: str) -> bytes:
    """Through glanceclient, which checks the bytes against os_hash_value (sha512)."""
    return b"".join(gc.images.data(image_id))


# --- uploads to each store ---------------------------------------------------------------------


@pytest.mark.parametrize("store", ["fs", "swift", "s3"])
def test_glanceclient_uploads_to_each_writable_store(gc: Any, stores: Stores,
                                                     store: str) -> None:
    data = _payload()
    image = _upload(gc, data, store)
    assert image.status == "active" and image.size == len(data)
    assert image.stores == store
    assert image.checksum == hashlib.md5(data).hexdigest()
    assert image.os_hash_value == hashlib.sha512(data).hexdigest()
    [location] = image.locations
    assert location["metadata"] == {"store": store}
    key = _key(stores, store, location["url"])
    assert _exists(stores, store, key)
    assert _download(gc, image.id) == data

    gc.images.delete(image.id)
    _eventually(lambda: not _exists(stores, store, key), f"{store} object {key} removed")


def test_the_read_only_store_takes_no_upload(gc: Any, server: Server) -> None:
    image = gc.images.create(name="ms-web", disk_format="raw", container_format="bare")
    with pytest.raises(gc_exc.HTTPBadRequest):
        gc.images.upload(image.id, io.BytesIO(b"x" * 1000), image_size=1000, backend="web")
    assert gc.images.get(image.id).status == "queued"
    with pytest.raises(gc_exc.HTTPBadRequest):
        gc.images.upload(image.id, io.BytesIO(b"x" * 1000), image_size=1000, backend="nowhere")
    gc.images.delete(image.id)


def test_openstacksdk_lists_stores_uploads_and_downloads(sdk: connection.Connection,
                                                         stores: Stores, tmp_path: Path) -> None:
    listed = {s.id: s for s in sdk.image.stores()}
    assert set(listed) == {"fs", "swift", "s3", "web"}
    assert listed["fs"].is_default and listed["fs"].description == "Local disks"
    assert not any(listed[s].is_default for s in ("swift", "s3", "web"))

    data = _payload(2 * MIB + 5)
    made = sdk.image.create_image(name="ms-sdk", disk_format="raw", container_format="bare",
                                  data=data, validate_checksum=True, allow_duplicates=True)
    image = sdk.image.get_image(made.id)
    assert image.status == "active" and _sdk_stores(image) == "fs"
    # the SDK's upload has no store option: its own adapter sends the header to an image of it
    other = sdk.image.create_image(name="ms-sdk-swift", disk_format="raw",
                                   container_format="bare", allow_duplicates=True)
    put = sdk.image.put(f"/images/{other.id}/file", data=data,
                        headers={"Content-Type": "application/octet-stream",
                                 "X-Image-Meta-Store": "swift"})
    assert put.status_code == 204, put.text
    other = sdk.image.get_image(other.id)
    assert other.status == "active" and _sdk_stores(other) == "swift"
    for got in (image, other):
        target = tmp_path / got.id
        sdk.image.download_image(got, output=str(target))
        assert target.read_bytes() == data
        sdk.image.delete_image(got)


# --- several locations per image -------------------------------------------------------------


def test_a_second_location_by_the_legacy_patch(gc: Any, stores: Stores) -> None:
    data = _payload()
    image = _upload(gc, data, "s3")
    s3_key = _key(stores, "s3", image.locations[0]["url"])
    swift_url = stores.swift.put(f"extra-{image.id}", data)

    updated = gc.images.add_location(image.id, swift_url, {"note": "copy"},
                                     validation_data=_validation(data))
    assert [loc["url"] for loc in updated.locations] == [image.locations[0]["url"], swift_url]
    assert updated.locations[1]["metadata"] == {"note": "copy", "store": "swift"}
    assert sorted(updated.stores.split(",")) == ["s3", "swift"]
    assert _download(gc, image.id) == data

    # hashes that are not the image's: refused (OSSN-0065), nothing added
    other = stores.swift.put(f"other-{image.id}", data)
    with pytest.raises(gc_exc.HTTPConflict):
        gc.images.add_location(image.id, other, {},
                               validation_data={"checksum": "0" * 32})
    assert len(gc.images.get(image.id).locations) == 2

    # the legacy remove takes the location and its data away; the other copy stays
    gc.images.delete_locations(image.id, {image.locations[0]["url"]})
    shown = gc.images.get(image.id)
    assert shown.stores == "swift" and [loc["url"] for loc in shown.locations] == [swift_url]
    _eventually(lambda: not stores.moto.exists(s3_key), "s3 copy removed")
    assert _download(gc, image.id) == data
    with pytest.raises(gc_exc.HTTPForbidden):  # the last location never goes
        gc.images.delete_locations(image.id, {swift_url})

    gc.images.delete(image.id)
    _eventually(lambda: not stores.swift.exists(f"extra-{image.id}"), "swift copy removed")


def test_an_http_location_downloads_through_the_web_store(gc: Any, sdk: connection.Connection,
                                                          stores: Stores,
                                                          tmp_path: Path) -> None:
    data = _payload()
    url = stores.web.put(f"{uuid.uuid4().hex}.img", data)
    image = gc.images.create(name="ms-http", disk_format="raw", container_format="bare")
    shown = gc.images.add_location(image.id, url, {}, validation_data=_validation(data))
    assert shown.status == "active" and shown.size == len(data)
    assert shown.stores == "web"
    assert shown.locations == [{"url": url, "metadata": {"store": "web"}}]
    assert _download(gc, image.id) == data
    target = tmp_path / "web.img"
    sdk.image.download_image(image.id, output=str(target))
    assert target.read_bytes() == data
    ranged = httpx.get(f"{gc.http_client.endpoint}/v2/images/{image.id}/file",
                       headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == data[100:200]
    gc.images.delete(image.id)
    assert stores.web.files[url[url.index("/", len("http://")):]] == data  # never removed


# --- deleting from one store -----------------------------------------------------------------


def test_delete_from_one_store_with_glanceclient(gc: Any, stores: Stores) -> None:
    data = _payload()
    image = _upload(gc, data, "swift")
    swift_key = _key(stores, "swift", image.locations[0]["url"])
    s3_key = f"copy-{image.id}"
    gc.images.add_location(image.id, stores.moto.put(s3_key, data), {},
                           validation_data=_validation(data))

    with pytest.raises(gc_exc.HTTPNotFound):  # no copy there
        gc.images.delete_from_store("fs", image.id)
    gc.images.delete_from_store("swift", image.id)
    shown = gc.images.get(image.id)
    assert shown.stores == "s3" and len(shown.locations) == 1
    _eventually(lambda: not stores.swift.exists(swift_key), "swift object removed")
    assert stores.moto.exists(s3_key)
    assert _download(gc, image.id) == data

    with pytest.raises(gc_exc.HTTPConflict):  # the last copy
        gc.images.delete_from_store("s3", image.id)
    assert stores.moto.exists(s3_key) and _download(gc, image.id) == data
    gc.images.delete(image.id)
    _eventually(lambda: not stores.moto.exists(s3_key), "s3 object removed")


def test_delete_from_one_store_with_openstacksdk(gc: Any, sdk: connection.Connection,
                                                 stores: Stores, tmp_path: Path) -> None:
    data = _payload()
    image = _upload(gc, data, "fs")
    fs_key = _key(stores, "fs", image.locations[0]["url"])
    gc.images.add_location(image.id, stores.swift.put(f"copy-{image.id}", data), {},
                           validation_data=_validation(data))
    assert sorted(_sdk_stores(sdk.image.get_image(image.id)).split(",")) == ["fs", "swift"]

    sdk.image.delete_image(image.id, store="fs")
    _eventually(lambda: not (stores.fs / fs_key).exists(), "fs file removed")
    assert _sdk_stores(sdk.image.get_image(image.id)) == "swift"
    target = tmp_path / "down"
    sdk.image.download_image(image.id, output=str(target))
    assert target.read_bytes() == data
    with pytest.raises(exceptions.ConflictException):
        sdk.image.delete_image(image.id, store="swift")
    sdk.image.delete_image(image.id)
    _eventually(lambda: not stores.swift.exists(f"copy-{image.id}"), "swift copy removed")


# --- stores that are down --------------------------------------------------------------------


def test_downloads_fall_back_when_a_store_is_down(gc: Any, server: Server,
                                                  stores: Stores) -> None:
    """s3 first, then swift or web; moto stopped: the next location serves (logged); web
    stopped as well: the image whose stores are all down is 503, not 404."""
    to_swift, to_web = _payload(), _payload()
    a = _upload(gc, to_swift, "s3", name="ms-a")
    gc.images.add_location(a.id, stores.swift.put(f"fallback-{a.id}", to_swift), {},
                           validation_data=_validation(to_swift))
    b = _upload(gc, to_web, "s3", name="ms-b")
    gc.images.add_location(b.id, stores.web.put(f"fallback-{b.id}", to_web), {},
                           validation_data=_validation(to_web))
    only_s3 = _upload(gc, _payload(1000), "s3", name="ms-c")
    try:
        stores.moto.stop()
        assert _download(gc, a.id) == to_swift
        assert _download(gc, b.id) == to_web
        log = server.log()
        for image, store in ((a, "swift"), (b, "web")):
            assert f"image {image.id}: read from store {store!r} after: s3:" in log, log[-3000:]

        refused = httpx.get(f"{server.url}/v2/images/{only_s3.id}/file")
        assert refused.status_code == 503, refused.text
        assert "'s3' is unavailable" in refused.text
        stores.web.stop()
        refused = httpx.get(f"{server.url}/v2/images/{b.id}/file")
        assert refused.status_code == 503, refused.text
        with pytest.raises(gc_exc.HTTPServiceUnavailable):
            _download(gc, b.id)
        assert _download(gc, a.id) == to_swift  # Swift is still up
    finally:
        stores.web.start()
        stores.moto.restart()
    assert _download(gc, b.id) == to_web  # the web copy again; moto lost its objects
    for image in (a, b, only_s3):
        gc.images.delete(image.id)
