"""`POST /v2/tasks` (the legacy tasks API's create, type `import`) against a real server.

The server (`legacy`) has one filesystem store and lets web-download reach loopback on any
port (`import_allow_private_networks`, `import_allowed_ports = []`) but not the host
169.254.169.254. Image data comes from a loopback HTTP server (tests/http_source.py); the qcow2
is real, made with `qemu-img`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import TIMESTAMP, assert_error, md5, show, uid
from tests.http_source import Source, serving
from tests.servers import Server, start_server

RAW = bytes(range(256)) * 4096 + b"odd tail"  # 1 MiB and a bit


@dataclass(frozen=True)
class Legacy:
    client: httpx.Client
    server: Server
    connect: Callable[..., httpx.Client]

    def as_member(self, project: str) -> httpx.Client:
        return self.connect(self.server.url, **{"X-Project-Id": project, "X-Roles": "member"})

    @property
    def staging(self) -> Path:
        return self.server.data_dir / "staging"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory,
           connect: Callable[..., httpx.Client]) -> Iterator[Legacy]:
    server = start_server(tmp_path_factory.mktemp("legacy-tasks") / "data",
                          import_allow_private_networks="true", import_allowed_ports="",
                          import_disallowed_hosts="169.254.169.254", cleanup_interval=0.2)
    yield Legacy(connect(server.url), server, connect)
    server.stop()


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with serving() as src:
        yield src


@pytest.fixture(scope="module")
def qcow2(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    """A real qcow2 image and its virtual size."""
    if shutil.which("qemu-img") is None:
        pytest.fail("qemu-img is missing: bash scripts/debian-packages qemu-utils")
    work = tmp_path_factory.mktemp("qcow2")
    (work / "source.raw").write_bytes(RAW)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(work / "source.raw"),
                    str(work / "image.qcow2")], check=True, capture_output=True)
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "qcow2", str(work / "image.qcow2")],
        check=True, capture_output=True, text=True).stdout)
    return (work / "image.qcow2").read_bytes(), int(info["virtual-size"])


def task_body(url: str, name: str, disk_format: str = "raw", **properties: Any) -> dict[str, Any]:
    return {"type": "import", "input": {
        "import_from": url, "import_from_format": disk_format,
        "image_properties": {"name": name, "disk_format": disk_format,
                             "container_format": "bare", **properties}}}


def create_task(client: httpx.Client, body: Any) -> dict[str, Any]:
    resp = client.post("/v2/tasks", json=body)
    assert resp.status_code == 201, resp.text
    task: dict[str, Any] = resp.json()
    return task


def wait_task(client: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = client.get(f"/v2/tasks/{task_id}")
        assert resp.status_code == 200, resp.text
        task: dict[str, Any] = resp.json()
        if task["status"] in ("success", "failure"):
            return task
        assert task["status"] in ("pending", "processing"), task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


def images_named(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    resp = client.get("/v2/images", params={"name": name})
    assert resp.status_code == 200, resp.text
    found: list[dict[str, Any]] = resp.json()["images"]
    return found


def wait_gone(client: httpx.Client, image_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v2/images/{image_id}").status_code != 404:
        assert time.monotonic() < deadline, show(client, image_id)
        time.sleep(0.05)


def staged_files(legacy: Legacy) -> list[str]:
    return sorted(p.name for p in legacy.staging.rglob("*") if p.is_file()) \
        if legacy.staging.exists() else []


# -- success ---------------------------------------------------------------------------------------

def test_an_import_task_creates_the_image_and_imports_the_url(legacy: Legacy,
                                                              source: Source) -> None:
    client, name = legacy.client, f"legacy-{uid()}"
    url = source.add(f"{name}.raw", RAW)
    body = task_body(url, name, visibility="public", os_distro="cirros")
    created = create_task(client, body)
    assert created["type"] == "import"
    assert created["status"] in ("pending", "processing")
    assert created["input"] == body["input"]
    assert created["result"] is None and created["message"] == ""
    assert created["expires_at"] is None
    assert created["owner"] == "admin"
    assert created["self"] == f"/v2/tasks/{created['id']}"
    assert created["schema"] == "/v2/schemas/task"
    assert TIMESTAMP.match(created["created_at"])

    done = wait_task(client, created["id"])
    assert done["status"] == "success", done
    assert done["message"] == ""
    image_id = done["result"]["image_id"]
    assert done["result"] == {"image_id": image_id}
    assert done["input"] == body["input"]
    assert TIMESTAMP.match(done["expires_at"]) and done["expires_at"] > done["created_at"]

    image = show(client, image_id)
    assert (image["status"], image["name"], image["disk_format"], image["visibility"],
            image["os_distro"]) == ("active", name, "raw", "public", "cirros")
    assert (image["size"], image["checksum"]) == (len(RAW), md5(RAW))
    assert "os_glance_import_task" not in image
    resp = client.get(f"/v2/images/{image_id}/file")
    assert resp.status_code == 200 and resp.content == RAW
    assert source.gets_of(f"{name}.raw") == 1
    assert staged_files(legacy) == []  # the staged copy is gone once imported

    listed = client.get("/v2/tasks").json()["tasks"]
    assert created["id"] in [t["id"] for t in listed]
    of_image = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
    assert [t["id"] for t in of_image] == [created["id"]]


def test_a_real_qcow2_comes_out_with_its_virtual_size(legacy: Legacy, source: Source,
                                                      qcow2: tuple[bytes, int]) -> None:
    data, virtual_size = qcow2
    name = f"legacy-{uid()}"
    body = task_body(source.add(f"{name}.qcow2", data), name, "qcow2")
    del body["input"]["image_properties"]["disk_format"]  # taken from import_from_format
    done = wait_task(legacy.client, create_task(legacy.client, body)["id"])
    assert done["status"] == "success", done
    image = show(legacy.client, done["result"]["image_id"])
    assert (image["status"], image["disk_format"], image["size"], image["virtual_size"]) == (
        "active", "qcow2", len(data), virtual_size)


# -- failure ---------------------------------------------------------------------------------------

def test_a_missing_source_fails_the_task_and_deletes_its_image(legacy: Legacy,
                                                               source: Source) -> None:
    name = f"legacy-{uid()}"
    created = create_task(legacy.client, task_body(source.url(f"{name}.absent"), name))
    done = wait_task(legacy.client, created["id"])
    assert done["status"] == "failure", done
    assert done["result"] is None
    assert "web-download" in done["message"] and f"{name}.absent" in done["message"], done
    assert TIMESTAMP.match(done["expires_at"])
    wait_gone(legacy.client, done["image_id"])
    assert images_named(legacy.client, name) == []
    assert staged_files(legacy) == []


def test_data_that_is_not_its_format_fails_the_task(legacy: Legacy, source: Source) -> None:
    name = f"legacy-{uid()}"
    url = source.add(f"{name}.qcow2", RAW)  # raw bytes declared qcow2
    done = wait_task(legacy.client, create_task(legacy.client,
                                                task_body(url, name, "qcow2"))["id"])
    assert done["status"] == "failure", done
    assert done["message"].startswith("Image data refused"), done
    wait_gone(legacy.client, done["image_id"])
    assert staged_files(legacy) == []


def test_a_host_that_does_not_resolve_fails_the_task(legacy: Legacy) -> None:
    # Tempest's negative test: accepted (the filters need no network), then the task fails.
    name = f"legacy-{uid()}"
    created = create_task(legacy.client,
                          task_body(f"http://{name}.invalid/image.qcow2", name, "qcow2"))
    done = wait_task(legacy.client, created["id"])
    assert done["status"] == "failure" and done["message"], done
    wait_gone(legacy.client, done["image_id"])


# -- refused at once -------------------------------------------------------------------------------

def _without(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["input"].pop(field)


BAD: dict[str, Callable[[dict[str, Any]], Any]] = {
    "unknown type": lambda body: body.update(type="api_image_import"),
    "type not a string": lambda body: body.update(type=["import"]),
    "no type": lambda body: body.pop("type"),
    "no input": lambda body: body.pop("input"),
    "input not an object": lambda body: body.update(input="import"),
    "unknown attribute": lambda body: body.update(status="success"),
    "no import_from": _without("import_from"),
    "no import_from_format": _without("import_from_format"),
    "no image_properties": _without("image_properties"),
    "image_properties not an object": lambda body: body["input"].update(image_properties=[]),
    "import_from_format not a string": lambda body: body["input"].update(import_from_format=1),
    "formats differ": lambda body: body["input"].update(import_from_format="qcow2"),
    "ftp URL": lambda body: body["input"].update(import_from="ftp://127.0.0.1/image"),
    "URL with credentials": lambda body: body["input"].update(
        import_from="http://user:secret@127.0.0.1/image"),
    "disallowed host": lambda body: body["input"].update(
        import_from="http://169.254.169.254/latest/meta-data"),
    "not a URL": lambda body: body["input"].update(import_from="not a url"),
    "URL not a string": lambda body: body["input"].update(import_from=7),
    "unknown disk format": lambda body: body["input"]["image_properties"].update(
        disk_format="nope"),
    "schema refuses a property": lambda body: body["input"]["image_properties"].update(
        min_ram=-1),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_are_400_and_create_nothing(legacy: Legacy, source: Source,
                                                 case: str) -> None:
    name = f"legacy-{uid()}"
    body = task_body(source.add(f"{name}.raw", RAW), name)
    BAD[case](body)
    if case == "unknown disk format":
        body["input"]["import_from_format"] = "nope"
    resp = legacy.client.post("/v2/tasks", json=body)
    assert_error(resp, 400)
    assert images_named(legacy.client, name) == []
    assert source.gets_of(f"{name}.raw") == 0


def test_a_body_that_is_not_an_object_is_400(legacy: Legacy) -> None:
    assert_error(legacy.client.post("/v2/tasks", json=["import"]), 400)
    assert_error(legacy.client.post("/v2/tasks", content=b"{", headers={
        "Content-Type": "application/json"}), 400)
    assert_error(legacy.client.post("/v2/tasks", content=b"{}", headers={
        "Content-Type": "text/plain"}), 415)


def test_the_error_says_which_input_field_is_missing(legacy: Legacy, source: Source) -> None:
    body = task_body(source.url("x.raw"), f"legacy-{uid()}")
    del body["input"]["import_from_format"]
    resp = legacy.client.post("/v2/tasks", json=body)
    assert_error(resp, 400)
    assert "import_from_format" in resp.text


def test_non_admins_may_not_create_tasks(legacy: Legacy, source: Source) -> None:
    name = f"legacy-{uid()}"
    member = legacy.as_member(f"proj-{uid()}")
    body = task_body(source.add(f"{name}.raw", RAW), name)
    assert_error(member.post("/v2/tasks", json=body), 403)
    assert_error(member.post("/v2/tasks", json={"type": "nope"}), 403)  # before validation
    assert images_named(legacy.client, name) == []
    assert source.gets_of(f"{name}.raw") == 0


def test_reserved_image_attributes_are_refused(legacy: Legacy, source: Source) -> None:
    name = f"legacy-{uid()}"
    body = task_body(source.add(f"{name}.raw", RAW), name, status="active")
    assert_error(legacy.client.post("/v2/tasks", json=body), 403)
    assert images_named(legacy.client, name) == []
