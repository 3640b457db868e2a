"""A server killed (SIGKILL) while an `api_image_import` task streams: another server's sweep
resumes the task, or fails it, and the image is never left `importing`; the partial data of the
dead upload session is reaped.

The bytes come from a loopback HTTP server that stalls a GET half-way, so the task is caught
mid-read. `cleanup_interval` 0.2 s makes a task's lease 1.2 s; sessions beat every 0.2 s and
count as dead after 1 s, so the next server claims the task and reaps the session soon after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.http_source import Source, serving
from tests.resilience.helpers import JSON, create_image, files_of, show, tasks_of, wait_for
from tests.servers import Server

DATA = bytes(range(256)) * 4096 + b"odd"  # 1 MiB and a bit
FAST = {"cleanup_interval": 0.2, "upload_heartbeat_interval": 0.2, "upload_stale_after": 1.0,
        "import_allow_private_networks": "true", "import_allowed_ports": ""}


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "glimpse.toml"
    config.write_text(f'''
default_store = "a"

[stores.a]
driver = "filesystem"
weight = 20
path = "{tmp_path / 'a'}"

[stores.b]
driver = "filesystem"
weight = 10
path = "{tmp_path / 'b'}"

[stores.web]
driver = "http"
allow_private_networks = true
''')
    return config


def _import(url: str, image_id: str, body: dict[str, Any]) -> None:
    started = httpx.post(f"{url}/v2/images/{image_id}/import", json=body, headers=JSON)
    assert started.status_code == 202, started.text


def _settled(url: str, image_id: str) -> bool:
    tasks = tasks_of(url, image_id)
    return bool(tasks) and all(t["status"] in ("success", "failure") for t in tasks)


def _kill_mid_download(server: Server, source: Source, name: str, image_id: str) -> None:
    """Wait until the task stalls half-way through `name` with partial data staged, then
    SIGKILL the server."""
    staging = server.data_dir / "staging"
    wait_for(source.stalled.is_set, 30, f"the GET of {name} to stall")
    wait_for(lambda: any(n.endswith(".partial") for n in files_of(staging, image_id)), 10,
             "partial data in staging")
    assert show(server.url, image_id)["status"] == "importing"
    server.kill()


def _committed(folder: Path, image_id: str) -> list[bytes]:
    return [(folder / n).read_bytes() for n in files_of(folder, image_id)
            if not n.startswith(".")]


def test_a_killed_web_download_is_resumed_by_another_server(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    shared = tmp_path / "shared"
    config = _config(tmp_path)
    with serving() as source:
        name = "resumed.raw"
        url = source.add(name, DATA)
        source.stall(name, gets=1)
        first = make_server(shared, config=config, **FAST)
        image_id = str(create_image(first.url)["id"])
        _import(first.url, image_id, {"method": {"name": "web-download", "uri": url}})
        _kill_mid_download(first, source, name, image_id)

        second = make_server(shared, config=config, **FAST)
        wait_for(lambda: show(second.url, image_id)["status"] == "active", 60,
                 "the resumed task to activate the image")
        image = show(second.url, image_id)
        assert image["checksum"] == hashlib.md5(DATA).hexdigest()
        assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
        assert (image["size"], image["stores"]) == (len(DATA), "a")
        assert not image.get("os_glance_import_task")
        assert image["os_glance_importing_to_stores"] == ""
        [task] = tasks_of(second.url, image_id)
        assert task["status"] == "success", task
        assert source.gets_of(name) == 2  # read again from the start
        got = httpx.get(f"{second.url}/v2/images/{image_id}/file", headers=JSON)
        assert got.status_code == 200 and got.content == DATA
        assert _committed(tmp_path / "a", image_id) == [DATA]
        # the dead session's partial data reaped, the staged data removed
        wait_for(lambda: files_of(shared / "staging", image_id) == [], 15,
                 "staging to be emptied")


def test_a_resumed_web_download_that_fails_frees_the_image(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    shared = tmp_path / "shared"
    config = _config(tmp_path)
    with serving() as source:
        name = "vanishing.raw"
        url = source.add(name, DATA)
        source.stall(name, gets=1)
        first = make_server(shared, config=config, **FAST)
        image_id = str(create_image(first.url)["id"])
        _import(first.url, image_id, {"method": {"name": "web-download", "uri": url},
                                      "all_stores": True})
        _kill_mid_download(first, source, name, image_id)
        del source.files[name]  # the resumed download finds it gone: 404

        second = make_server(shared, config=config, **FAST)
        wait_for(lambda: _settled(second.url, image_id), 60, "the resumed task to end")
        [task] = tasks_of(second.url, image_id)
        assert task["status"] == "failure", task
        assert "404" in task["message"] or "not found" in task["message"].lower(), task
        image = show(second.url, image_id)
        assert image["status"] == "queued", image
        assert (image["checksum"], image["size"]) == (None, None)
        assert not image.get("os_glance_import_task")
        assert set(image["os_glance_failed_import"].split(",")) == {"a", "b"}
        assert httpx.get(f"{second.url}/v2/images/{image_id}/file",
                         headers=JSON).status_code == 204
        wait_for(lambda: files_of(shared / "staging", image_id) == [], 15,
                 "the dead session's partial data to be reaped")
        assert files_of(tmp_path / "a", image_id) == files_of(tmp_path / "b", image_id) == []


def test_a_copy_resumed_after_its_first_store_leaves_one_copy_per_store(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    """copy-image of an image whose data is at an HTTP location, to stores a and b: killed
    while copying to b (its read stalls), after a's copy was committed. The resumed task copies
    again; the first run's copy in a must not stay beside the second's."""
    shared = tmp_path / "shared"
    config = _config(tmp_path)
    with serving() as source:
        name = "copied.raw"
        url = source.add(name, DATA)
        first = make_server(shared, config=config, **FAST)
        image_id = str(create_image(first.url)["id"])
        added = httpx.post(f"{first.url}/v2/images/{image_id}/locations", json={"url": url},
                           headers=JSON)
        assert added.status_code == 202, added.text
        wait_for(lambda: show(first.url, image_id)["status"] == "active", 30, "active")
        reads = source.gets_of(name)  # the location's hashing
        source.stall(name, gets=1, after=1)  # the copy to a reads it whole; b's stalls
        _import(first.url, image_id, {"method": {"name": "copy-image"}, "stores": ["a", "b"]})
        wait_for(lambda: source.gets_of(name) == reads + 2 and source.stalled.is_set(), 30,
                 "the copy to b to stall")
        first.kill()
        assert _committed(tmp_path / "a", image_id) == [DATA]

        second = make_server(shared, config=config, **FAST)
        wait_for(lambda: _settled(second.url, image_id), 60, "the resumed copy to end")
        [task] = [t for t in tasks_of(second.url, image_id) if t["type"] == "api_image_import"]
        assert task["status"] == "success", task
        image = show(second.url, image_id)
        assert image["status"] == "active"
        assert set(image["stores"].split(",")) == {"a", "b", "web"}
        assert image["os_glance_importing_to_stores"] == ""
        source.release()
        wait_for(lambda: _committed(tmp_path / "a", image_id) == [DATA], 15,
                 "one copy in a")
        assert _committed(tmp_path / "b", image_id) == [DATA]
        wait_for(lambda: [n for n in files_of(tmp_path / "b", image_id) if n.startswith(".")]
                 == [], 15, "the dead session's partial data in b to be reaped")
