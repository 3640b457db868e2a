"""Conversion on import (docs/conversion.md) against a real server and the real qemu-img:
staged qcow2 and vmdk become raw images whose size, virtual size, hashes and bytes are those of
`qemu-img convert`'s output; unsafe data fails the task with nothing left stored; without the
setting, or for an image already in the output format, nothing changes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import OCTET, create, show
from tests.http_source import Source, serving
from tests.servers import Server, free_port, start_server

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                reason="needs qemu-img (Debian qemu-utils)")
MiB = 1 << 20
CAP = 48 * MiB  # image_size_cap of the converting server


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real images: a 16 MiB raw disk with 3 MiB of random data (the rest a hole) as qcow2,
    vmdk and the raw that qemu-img makes of the qcow2; a qcow2 with a backing file; a qcow2
    whose raw form (64 MiB) exceeds the server's size cap."""
    folder = tmp_path_factory.mktemp("images")
    disk = folder / "disk.raw"
    with disk.open("wb") as f:
        f.write(os.urandom(2 * MiB))
        f.seek(9 * MiB)
        f.write(os.urandom(MiB))
        f.truncate(16 * MiB)
    qemu_img("convert", "-f", "raw", "-O", "qcow2", disk, folder / "disk.qcow2")
    qemu_img("convert", "-f", "raw", "-O", "vmdk", disk, folder / "disk.vmdk")
    qemu_img("convert", "-f", "qcow2", "-O", "raw", folder / "disk.qcow2", folder / "expected.raw")
    qemu_img("create", "-f", "qcow2", "-b", folder / "disk.qcow2", "-F", "qcow2",
             folder / "child.qcow2")
    qemu_img("create", "-f", "qcow2", folder / "big.qcow2", str(64 * MiB))
    return {"qcow2": folder / "disk.qcow2", "vmdk": folder / "disk.vmdk",
            "expected": folder / "expected.raw", "child": folder / "child.qcow2",
            "big": folder / "big.qcow2"}


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with serving() as src:
        yield src


@pytest.fixture(scope="module")
def converting(tmp_path_factory: pytest.TempPathFactory, source: Source) -> Iterator[Server]:
    """A server converting imports to raw, allowed to web-download from the loopback source."""
    srv = start_server(tmp_path_factory.mktemp("converting") / "data",
                       image_conversion_output_format="raw", image_size_cap=CAP,
                       import_allow_private_networks="true",
                       import_allowed_ports=f"80,443,{source.port}")
    yield srv
    srv.stop()


@pytest.fixture
def conv(converting: Server, connect: Callable[..., httpx.Client]) -> httpx.Client:
    return connect(converting.url)


def stage_and_import(client: httpx.Client, path: Path, disk_format: str) -> dict[str, Any]:
    image = create(client, name="conv", disk_format=disk_format, container_format="ovf")
    resp = client.put(f"/v2/images/{image['id']}/stage", content=path.read_bytes(),
                      headers=OCTET)
    assert resp.status_code == 204, resp.text
    resp = client.post(f"/v2/images/{image['id']}/import",
                       json={"method": {"name": "glance-direct"}})
    assert resp.status_code == 202, resp.text
    return settled(client, image["id"])


def settled(client: httpx.Client, image_id: str, timeout: float = 60) -> dict[str, Any]:
    """The image once its import task has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        if tasks and tasks[-1]["status"] in ("success", "failure"):
            return show(client, image_id) | {"task": tasks[-1]}
        time.sleep(0.1)
    raise AssertionError(f"the import of {image_id} did not end in {timeout} s")


def assert_succeeded(image: dict[str, Any], server: Server | None = None) -> None:
    """The import task succeeded; if not, its message and the server's last log lines say why."""
    task = image["task"]
    if task["status"] != "success":
        tail = server.log()[-4000:] if server is not None else ""
        raise AssertionError(f"task {task['status']}: {task.get('message')!r}\n{tail}")


def download(client: httpx.Client, image_id: str) -> bytes:
    resp = client.get(f"/v2/images/{image_id}/file")
    assert resp.status_code == 200, resp.text
    return resp.content


def objects(folder: Path) -> list[str]:
    """The committed objects of a filesystem store folder (dot-files are not objects)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) \
        if folder.exists() else []


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def assert_raw_of(client: httpx.Client, image: dict[str, Any], expected: bytes) -> None:
    assert_succeeded(image)
    assert image["status"] == "active"
    assert (image["disk_format"], image["container_format"]) == ("raw", "bare")
    assert image["size"] == image["virtual_size"] == len(expected) == 16 * MiB
    assert image["checksum"] == hashlib.md5(expected).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(expected).hexdigest()
    assert download(client, image["id"]) == expected


@pytest.mark.parametrize("disk_format", ["qcow2", "vmdk"])
def test_glance_direct_converts_to_raw(conv: httpx.Client, converting: Server,
                                       images: dict[str, Path], disk_format: str) -> None:
    expected = images["expected"].read_bytes()
    image = stage_and_import(conv, images[disk_format], disk_format)
    assert_succeeded(image, converting)
    assert_raw_of(conv, image, expected)
    # the staged original went to a deletion job; nothing else is left in staging
    staging = converting.data_dir / "staging"
    assert wait_for(lambda: not any(image["id"] in name for name in objects(staging))), \
        objects(staging)
    assert not [p for p in staging.iterdir() if p.name.startswith(".")]


def test_web_download_converts_to_raw(conv: httpx.Client, converting: Server, source: Source,
                                      images: dict[str, Path]) -> None:
    url = source.add("disk.qcow2", images["qcow2"].read_bytes())
    image = create(conv, name="web", disk_format="qcow2", container_format="bare")
    resp = conv.post(f"/v2/images/{image['id']}/import",
                     json={"method": {"name": "web-download", "uri": url}})
    assert resp.status_code == 202, resp.text
    image = settled(conv, image["id"])
    assert_succeeded(image, converting)
    assert_raw_of(conv, image, images["expected"].read_bytes())


def test_backing_file_fails_the_task_and_stores_nothing(conv: httpx.Client, converting: Server,
                                                        images: dict[str, Path]) -> None:
    image = stage_and_import(conv, images["child"], "qcow2")
    assert image["task"]["status"] == "failure"
    assert "backing" in image["task"]["message"], image["task"]
    assert "conversion" in image["task"]["message"], image["task"]
    assert image["status"] == "queued"
    assert (image["disk_format"], image["container_format"]) == ("qcow2", "ovf")
    assert image["size"] is None and image["checksum"] is None
    assert conv.get(f"/v2/images/{image['id']}/file").status_code == 204
    for store in ("staging", "images"):
        folder = converting.data_dir / store
        assert wait_for(lambda f=folder: not any(image["id"] in n for n in objects(f))), \
            objects(folder)


def test_failure_after_conversion_restores_the_formats(conv: httpx.Client,
                                                       images: dict[str, Path]) -> None:
    """The 64 MiB raw form exceeds image_size_cap: the import fails after converting, and the
    image is back to queued with the formats it had."""
    image = stage_and_import(conv, images["big"], "qcow2")
    assert image["task"]["status"] == "failure"
    assert "exceeds the limit" in image["task"]["message"], image["task"]
    assert image["status"] == "queued"
    assert (image["disk_format"], image["container_format"]) == ("qcow2", "ovf")


def test_already_in_the_output_format_is_unchanged(conv: httpx.Client, converting: Server,
                                                   images: dict[str, Path]) -> None:
    expected = images["expected"].read_bytes()
    image = create(conv, name="raw", disk_format="raw", container_format="ovf")
    assert conv.put(f"/v2/images/{image['id']}/stage", content=expected,
                    headers=OCTET).status_code == 204
    assert conv.post(f"/v2/images/{image['id']}/import",
                     json={"method": {"name": "glance-direct"}}).status_code == 202
    image = settled(conv, image["id"])
    assert_succeeded(image, converting)
    assert (image["disk_format"], image["container_format"]) == ("raw", "ovf")
    assert image["os_hash_value"] == hashlib.sha512(expected).hexdigest()


def test_conversion_off_leaves_the_data_unchanged(api: httpx.Client,
                                                  images: dict[str, Path]) -> None:
    data = images["qcow2"].read_bytes()
    image = stage_and_import(api, images["qcow2"], "qcow2")
    assert_succeeded(image)
    assert (image["disk_format"], image["container_format"]) == ("qcow2", "ovf")
    assert image["size"] == len(data) and image["virtual_size"] == 16 * MiB
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert download(api, image["id"]) == data


def _serve(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{f"GLIMPSE_{k.upper()}": v for k, v in settings.items()}}
    return subprocess.run(
        [sys.executable, "-m", "glimpse", "serve", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=60)


def test_serve_refuses_to_start_without_qemu_img(tmp_path: Path) -> None:
    done = _serve(tmp_path, image_conversion_output_format="raw",
                  image_conversion_qemu_img=str(tmp_path / "no-qemu-img"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"glimpse: configuration error: image_conversion_output_format: qemu-img not found "
        f"({str(tmp_path / 'no-qemu-img')!r}); install Debian's qemu-utils"]


def test_serve_refuses_an_output_format_it_cannot_convert_to(tmp_path: Path) -> None:
    done = _serve(tmp_path, image_conversion_output_format="iso")
    assert done.returncode == 2
    assert done.stderr.startswith("glimpse: configuration error: "
                                  "image_conversion_output_format: 'iso' is not one of")
    assert len(done.stderr.strip().splitlines()) == 1
