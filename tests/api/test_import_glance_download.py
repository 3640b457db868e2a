"""glance-download between two real Glimpse servers in keystone mode, through a real Keystone's
catalog: the source server is the image endpoint of a region made for this module, and the
destination imports from it with the caller's token (services/glance_download.py)."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.keystone import Keystone, start_keystone
from tests.servers import Server, start_server

METHODS = "glance-direct,web-download,copy-image,glance-download"
USER = "alpha-member"


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    """The Keystone `GLIMPSE_TEST_KEYSTONE` names, or one of this module's own."""
    shared = os.environ.get("GLIMPSE_TEST_KEYSTONE")
    if shared:
        yield Keystone.from_facts(Path(shared))
        return
    ks = start_keystone(tmp_path_factory.mktemp("keystone"))
    yield ks
    ks.stop()


def _settings(keystone: Keystone, **extra: object) -> dict[str, object]:
    service = keystone.accounts["glimpse"]
    return {"auth": "keystone", "keystone_auth_url": keystone.auth_url,
            "keystone_username": service.username, "keystone_password": service.password,
            "keystone_project_name": service.project_name, **extra}


@pytest.fixture(scope="module")
def source(keystone: Keystone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("gd-source") / "data", **_settings(keystone))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def target(keystone: Keystone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("gd-target") / "data",
                           **_settings(keystone, enabled_import_methods=METHODS))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def region(keystone: Keystone, source: Server) -> Iterator[str]:
    """A region of this module whose public image endpoint is the source server."""
    admin = {"X-Auth-Token": keystone.token("admin")}
    name = f"glance-download-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=keystone.auth_url, headers=admin, timeout=60) as ks:
        ks.post("/regions", json={"region": {"id": name}}).raise_for_status()
        [service] = ks.get("/services", params={"type": "image"}).json()["services"]
        created = ks.post("/endpoints", json={"endpoint": {
            "service_id": service["id"], "interface": "public", "region_id": name,
            "url": source.url, "enabled": True}})
        created.raise_for_status()
        try:
            yield name
        finally:
            ks.delete(f"/endpoints/{created.json()['endpoint']['id']}")
            ks.delete(f"/regions/{name}")


def _client(server: Server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60,
                        headers={"X-Auth-Token": token, "Accept": "application/json"})


def _create(c: httpx.Client, **body: Any) -> str:
    body = {"name": "gd", "disk_format": "raw", "container_format": "bare", **body}
    resp = c.post("/v2/images", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _patch(c: httpx.Client, image_id: str, **props: str) -> None:
    ops = [{"op": "add", "path": f"/{k}", "value": v} for k, v in props.items()]
    resp = c.patch(f"/v2/images/{image_id}", json=ops,
                   headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert resp.status_code == 200, resp.text


def _import(c: httpx.Client, image_id: str, **method: str) -> httpx.Response:
    return c.post(f"/v2/images/{image_id}/import",
                  json={"method": {"name": "glance-download", **method}})


def _task(c: httpx.Client, image_id: str, timeout: float = 60) -> dict[str, Any]:
    """The image's one task, once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = c.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        if tasks and tasks[0]["status"] in ("success", "failure"):
            assert len(tasks) == 1
            return dict(tasks[0])
        time.sleep(0.1)
    raise AssertionError(f"the import of {image_id} did not finish")


@pytest.fixture(scope="module")
def remote(keystone: Keystone, source: Server) -> tuple[str, bytes]:
    """An active raw image on the source server, with properties some of which are copied."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    with _client(source, keystone.token(USER)) as c:
        image_id = _create(c)
        resp = c.put(f"/v2/images/{image_id}/file", content=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 204, resp.text
        _patch(c, image_id, hw_cpu_cores="5", **{"trait:STORAGE_DISK_SSD": "required"},
               os_distro="rhel", speed="88mph")
    return image_id, data


def test_import_copies_data_formats_and_chosen_properties(
        keystone: Keystone, target: Server, region: str, remote: tuple[str, bytes]) -> None:
    remote_id, data = remote
    with _client(target, keystone.token(USER)) as c:
        info = c.get("/v2/info/import").json()
        assert "glance-download" in info["import-methods"]["value"]
        image_id = _create(c, disk_format="iso", container_format="ovf")
        _patch(c, image_id, hw_cpu_cores="1", os_distro="windows", mine="kept")
        resp = _import(c, image_id, glance_image_id=remote_id, glance_region=region,
                       glance_service_interface="public")
        assert resp.status_code == 202, resp.text
        task = _task(c, image_id)
        assert task["status"] == "success", task["message"]
        shown = task["input"]["import_req"]["method"]
        assert shown == {"name": "glance-download", "glance_image_id": remote_id,
                         "glance_region": region, "glance_service_interface": "public"}
        assert not any("token" in key for key in task["input"])
        image = c.get(f"/v2/images/{image_id}").json()
        assert image["status"] == "active"
        assert (image["disk_format"], image["container_format"]) == ("raw", "bare")
        assert image["hw_cpu_cores"] == "5"
        assert image["trait:STORAGE_DISK_SSD"] == "required"
        assert image["os_distro"] == "rhel"
        assert "speed" not in image
        assert image["mine"] == "kept"
        assert image["size"] == len(data)
        assert image["checksum"] == hashlib.md5(data).hexdigest()
        got = c.get(f"/v2/images/{image_id}/file")
        assert got.status_code == 200
        assert got.content == data


def test_interface_defaults_to_public(keystone: Keystone, target: Server, region: str,
                                      remote: tuple[str, bytes]) -> None:
    with _client(target, keystone.token(USER)) as c:
        image_id = _create(c)
        resp = _import(c, image_id, glance_image_id=remote[0], glance_region=region)
        assert resp.status_code == 202, resp.text
        assert _task(c, image_id)["status"] == "success"


def test_image_id_not_a_uuid_is_400_at_once(keystone: Keystone, target: Server,
                                            region: str) -> None:
    with _client(target, keystone.token(USER)) as c:
        image_id = _create(c)
        resp = _import(c, image_id, glance_image_id="foo", glance_region=region,
                       glance_service_interface="public")
        assert resp.status_code == 400
        assert "image id does not look like a UUID" in resp.text
        assert c.get(f"/v2/images/{image_id}/tasks").json()["tasks"] == []
        assert c.get(f"/v2/images/{image_id}").json()["status"] == "queued"


def test_missing_region_is_400(keystone: Keystone, target: Server) -> None:
    with _client(target, keystone.token(USER)) as c:
        image_id = _create(c)
        resp = _import(c, image_id, glance_image_id=str(uuid.uuid4()))
        assert resp.status_code == 400
        assert "glance_region" in resp.text


def test_bad_region_fails_the_task_and_keeps_the_image(keystone: Keystone, target: Server,
                                                       remote: tuple[str, bytes]) -> None:
    with _client(target, keystone.token(USER)) as c:
        image_id = _create(c, disk_format="qcow2")
        _patch(c, image_id, hw_cpu_cores="1", os_distro="windows")
        resp = _import(c, image_id, glance_image_id=remote[0], glance_region="not a region",
                       glance_service_interface="not an interface")
        assert resp.status_code == 202, resp.text
        task = _task(c, image_id)
        assert task["status"] == "failure"
        assert "no image endpoint in region 'not a region'" in task["message"]
        image = c.get(f"/v2/images/{image_id}").json()
        assert image["status"] == "queued"
        assert (image["hw_cpu_cores"], image["os_distro"]) == ("1", "windows")
        assert image["disk_format"] == "qcow2"
        assert "os_glance_import_task" not in image
        # the lock is gone: the image can be imported again
        resp = _import(c, image_id, glance_image_id=remote[0], glance_region="not a region")
        assert resp.status_code == 202, resp.text


def test_missing_remote_image_fails_the_task(keystone: Keystone, target: Server,
                                             region: str) -> None:
    missing = str(uuid.uuid4())
    with _client(target, keystone.token(USER)) as c:
        image_id = _create(c)
        _patch(c, image_id, os_distro="windows")
        resp = _import(c, image_id, glance_image_id=missing, glance_region=region,
                       glance_service_interface="public")
        assert resp.status_code == 202, resp.text
        task = _task(c, image_id)
        assert task["status"] == "failure"
        assert f"image {missing}" in task["message"] and "not found" in task["message"]
        image = c.get(f"/v2/images/{image_id}").json()
        assert image["status"] == "queued"
        assert image["os_distro"] == "windows"


def test_image_of_another_project_is_not_found(keystone: Keystone, target: Server,
                                               region: str, remote: tuple[str, bytes]) -> None:
    """The remote image is read as the caller: beta may not see alpha's private image."""
    with _client(target, keystone.token("beta-member")) as c:
        image_id = _create(c)
        resp = _import(c, image_id, glance_image_id=remote[0], glance_region=region)
        assert resp.status_code == 202, resp.text
        task = _task(c, image_id)
        assert task["status"] == "failure"
        assert "not found" in task["message"]
        assert c.get(f"/v2/images/{image_id}").json()["status"] == "queued"


def test_noauth_server_does_not_offer_glance_download(tmp_path: Path) -> None:
    running = start_server(tmp_path / "data", enabled_import_methods=METHODS)
    try:
        with httpx.Client(base_url=running.url, timeout=60) as c:
            methods = c.get("/v2/info/import").json()["import-methods"]["value"]
            assert "glance-download" not in methods and "glance-direct" in methods
            image_id = _create(c)
            resp = _import(c, image_id, glance_image_id=str(uuid.uuid4()),
                           glance_region="RegionOne")
            assert resp.status_code == 400
            assert "not one of this server's" in resp.text
    finally:
        running.stop()
