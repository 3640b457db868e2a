"""Servers of one deployment on several hosts (here: each with a data folder of its own, one
registry, one image store): data staged through one server is imported through another when
they share `staging_dir`, or when each knows its own URL (`worker_self_reference_url`): then a
server without the staged data hands the import, or the delete, to the one that has it. Without
either, the import fails saying so, and the image is not left importing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.resilience.helpers import JSON, OCTETS, create_image, show, tasks_of, wait_for
from tests.servers import Server, free_port

DATA = bytes(range(256)) * 4096 + b"staged"


def _pair(tmp_path: Path, make_server: Callable[..., Server],
          shared_staging: bool, self_urls: bool = False) -> tuple[Server, Server]:
    config = tmp_path / "glimpse.toml"
    config.write_text(f'default_store = "images"\n\n[stores.images]\ndriver = "filesystem"\n'
                      f'path = "{tmp_path / "images"}"\n')
    common: dict[str, object] = {"config": config,
                                 "database_url": f"sqlite:///{tmp_path / 'registry.db'}"}
    servers = []
    for host in ("a", "b"):
        staging = tmp_path / ("staging" if shared_staging else f"staging-{host}")
        own: dict[str, object] = {}
        if self_urls:
            own["port"] = port = free_port()
            own["worker_self_reference_url"] = f"http://127.0.0.1:{port}"
        servers.append(make_server(tmp_path / f"host-{host}", staging_dir=staging, **common,
                                   **own))
    return servers[0], servers[1]


def _stage(server: Server) -> str:
    image_id = str(create_image(server.url)["id"])
    staged = httpx.put(f"{server.url}/v2/images/{image_id}/stage", content=DATA,
                       headers=OCTETS)
    assert staged.status_code == 204, staged.text
    return image_id


def _staged_files(folder: Path, image_id: str) -> list[Path]:
    return [p for p in folder.iterdir() if image_id in p.name]


def _stage_then_import(first: Server, second: Server, **headers: str) -> str:
    image_id = _stage(first)
    started = httpx.post(f"{second.url}/v2/images/{image_id}/import",
                         json={"method": {"name": "glance-direct"}}, headers={**JSON, **headers})
    assert started.status_code == 202, started.text
    wait_for(lambda: bool(tasks_of(second.url, image_id)) and all(
        t["status"] in ("success", "failure") for t in tasks_of(second.url, image_id)),
        30, "the import to end")
    return image_id


def _check_imported(first: Server, second: Server, image_id: str, staging: Path) -> None:
    """The import through `second` succeeded: the image is active with the data's hash on
    both servers (the stage host never shown), and its staged data is gone from `staging`."""
    [task] = tasks_of(second.url, image_id)
    assert task["status"] == "success", task
    for server in (first, second):
        image = show(server.url, image_id)
        assert image["status"] == "active"
        assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
        assert "host" not in image and "os_glance_stage_host" not in image
        got = httpx.get(f"{server.url}/v2/images/{image_id}/file", headers=JSON)
        assert got.status_code == 200 and got.content == DATA
    wait_for(lambda: not _staged_files(staging, image_id), 15, "the staged data to be removed")


def test_an_import_through_another_server_reads_the_shared_staging(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    first, second = _pair(tmp_path, make_server, shared_staging=True)
    image_id = _stage_then_import(first, second)
    _check_imported(first, second, image_id, tmp_path / "staging")


def test_without_a_shared_staging_the_import_fails_saying_so(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    first, second = _pair(tmp_path, make_server, shared_staging=False)
    image_id = _stage_then_import(first, second)
    [task] = tasks_of(second.url, image_id)
    assert task["status"] == "failure", task
    assert "staging_dir" in task["message"], task
    image = show(first.url, image_id)
    assert image["status"] == "queued", image
    assert not image.get("os_glance_import_task")


def test_an_import_through_a_server_without_the_staged_data_goes_to_the_one_with_it(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    first, second = _pair(tmp_path, make_server, shared_staging=False, self_urls=True)
    image_id = _stage_then_import(first, second)
    _check_imported(first, second, image_id, tmp_path / "staging-a")


def _staged_on_the_first(tmp_path: Path, make_server: Callable[..., Server]
                         ) -> tuple[Server, Server, str]:
    """Two servers that know their URLs, with data staged in the first's staging area."""
    first, second = _pair(tmp_path, make_server, shared_staging=False, self_urls=True)
    image_id = _stage(first)
    assert _staged_files(tmp_path / "staging-a", image_id)
    return first, second, image_id


def test_a_delete_through_another_server_removes_the_staged_data_where_it_is(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    first, second, image_id = _staged_on_the_first(tmp_path, make_server)
    deleted = httpx.delete(f"{second.url}/v2/images/{image_id}", headers=JSON)
    assert deleted.status_code == 204, deleted.text
    for server in (first, second):
        gone = httpx.get(f"{server.url}/v2/images/{image_id}", headers=JSON)
        assert gone.status_code == 404, gone.text
    wait_for(lambda: not _staged_files(tmp_path / "staging-a", image_id), 15,
             "the staged data to be removed")


def test_when_the_server_with_the_staged_data_is_down_the_import_is_refused_clearly(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    first, second, image_id = _staged_on_the_first(tmp_path, make_server)
    first.stop()
    started = httpx.post(f"{second.url}/v2/images/{image_id}/import",
                         json={"method": {"name": "glance-direct"}}, headers=JSON)
    assert started.status_code == 503, started.text
    assert first.url in started.json()["message"], started.text
    image = show(second.url, image_id)
    assert image["status"] == "uploading", image
    assert not image.get("os_glance_import_task")
    assert tasks_of(second.url, image_id) == []


def test_a_forwarded_import_is_not_forwarded_again(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    first, second = _pair(tmp_path, make_server, shared_staging=False, self_urls=True)
    image_id = _stage_then_import(first, second, **{"X-Glimpse-Forwarded": "1"})
    [task] = tasks_of(second.url, image_id)
    assert task["status"] == "failure", task
    assert "staging_dir" in task["message"], task
    assert show(first.url, image_id)["status"] == "queued"
