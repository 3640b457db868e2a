"""A server killed while a `location_import` task reads its location: another server resumes the
task, or fails it after `max_attempts` (3) abandoned runs, and the image is never left
`importing`.

The location's bytes come from a loopback HTTP server that stalls GETs half-way, so the task is
caught mid-read when the server gets SIGKILL. A short `cleanup_interval` (0.2 s) makes the
task's lease 1.2 s, so the next server's sweep claims it soon after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.http_source import Source, serving
from tests.resilience.helpers import JSON, create_image, show, tasks_of, wait_for
from tests.servers import Server

DATA = bytes(range(256)) * 4096 + b"odd"  # 1 MiB and a bit
FAST = {"cleanup_interval": 0.2}


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "glimpse.toml"
    config.write_text(f'''
default_store = "local"

[stores.local]
driver = "filesystem"
path = "{tmp_path / 'local'}"

[stores.web]
driver = "http"
allow_private_networks = true
''')
    return config


def _start_import(server: Server, source: Source, name: str) -> str:
    image = create_image(server.url)
    added = httpx.post(f"{server.url}/v2/images/{image['id']}/locations",
                       json={"url": source.url(name)}, headers=JSON)
    assert added.status_code == 202, added.text
    return str(image["id"])


def _kill_mid_read(server: Server, source: Source, name: str, image_id: str,
                   gets: int) -> None:
    """Wait until the server's task has sent GET number `gets` of `name` (and stalls in it),
    then SIGKILL the server."""
    wait_for(lambda: source.gets_of(name) >= gets, 30, f"GET number {gets} of {name}")
    assert show(server.url, image_id)["status"] == "importing"
    server.kill()


def test_a_killed_task_is_resumed_by_another_server(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    shared = tmp_path / "shared"
    config = _config(tmp_path)
    with serving() as source:
        name = "resumed"
        source.add(name, DATA)
        source.stall(name, gets=1)
        first = make_server(shared, config=config, **FAST)
        image_id = _start_import(first, source, name)
        _kill_mid_read(first, source, name, image_id, gets=1)

        second = make_server(shared, config=config, **FAST)
        wait_for(lambda: show(second.url, image_id)["status"] == "active", 60,
                 "the resumed task to activate the image")
        image = show(second.url, image_id)
        assert image["checksum"] == hashlib.md5(DATA).hexdigest()
        assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
        assert image["size"] == len(DATA)
        [task] = tasks_of(second.url, image_id)
        assert task["status"] == "success", task
        assert source.gets_of(name) == 2  # read again from the start
        got = httpx.get(f"{second.url}/v2/images/{image_id}/file", headers=JSON)
        assert got.status_code == 200 and got.content == DATA


def test_a_task_abandoned_too_often_fails_and_frees_the_image(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    shared = tmp_path / "shared"
    config = _config(tmp_path)
    with serving() as source:
        name = "abandoned"
        source.add(name, DATA)
        source.stall(name, gets=100)  # every read stalls: no server ever finishes it
        server = make_server(shared, config=config, **FAST)
        image_id = _start_import(server, source, name)
        # the first run, then one per resume (max_attempts = 3): each killed mid-read
        for gets in range(1, 5):
            if gets > 1:
                server = make_server(shared, config=config, **FAST)
            _kill_mid_read(server, source, name, image_id, gets)

        last = make_server(shared, config=config, **FAST)
        wait_for(lambda: show(last.url, image_id)["status"] == "queued", 60,
                 "the abandoned task to give the image back")
        [task] = tasks_of(last.url, image_id)
        assert task["status"] == "failure", task
        assert "interrupted too many times" in task["message"]
        image = show(last.url, image_id)
        assert (image["checksum"], image["os_hash_value"], image["size"]) == (None, None, None)
        assert source.gets_of(name) == 4  # the failing server did not read it again
        got = httpx.get(f"{last.url}/v2/images/{image_id}/file", headers=JSON)
        assert got.status_code == 204
