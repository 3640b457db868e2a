"""Servers of one deployment on several hosts (here: each with a data folder of its own, one
registry, one image store): data staged through one server is imported through another when
they share `staging_dir`; when they do not, the import fails saying so, and the image is not
left importing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.resilience.helpers import JSON, OCTETS, create_image, show, tasks_of, wait_for
from tests.servers import Server

DATA = bytes(range(256)) * 4096 + b"staged"


def _pair(tmp_path: Path, make_server: Callable[..., Server],
          shared_staging: bool) -> tuple[Server, Server]:
    config = tmp_path / "glimpse.toml"
    config.write_text(f'default_store = "images"\n\n[stores.images]\ndriver = "filesystem"\n'
                      f'path = "{tmp_path / "images"}"\n')
    common: dict[str, object] = {"config": config,
                                 "database_url": f"sqlite:///{tmp_path / 'registry.db'}"}
    servers = []
    for host in ("a", "b"):
        staging = tmp_path / ("staging" if shared_staging else f"staging-{host}")
        servers.append(make_server(tmp_path / f"host-{host}", staging_dir=staging, **common))
    return servers[0], servers[1]


def _stage_then_import(first: Server, second: Server) -> str:
    image_id = str(create_image(first.url)["id"])
    staged = httpx.put(f"{first.url}/v2/images/{image_id}/stage", content=DATA,
                       headers=OCTETS)
    assert staged.status_code == 204, staged.text
    started = httpx.post(f"{second.url}/v2/images/{image_id}/import",
                         json={"method": {"name": "glance-direct"}}, headers=JSON)
    assert started.status_code == 202, started.text
    wait_for(lambda: bool(tasks_of(second.url, image_id)) and all(
        t["status"] in ("success", "failure") for t in tasks_of(second.url, image_id)),
        30, "the import to end")
    return image_id


def test_an_import_through_another_server_reads_the_shared_staging(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    first, second = _pair(tmp_path, make_server, shared_staging=True)
    image_id = _stage_then_import(first, second)
    [task] = tasks_of(second.url, image_id)
    assert task["status"] == "success", task
    image = show(first.url, image_id)
    assert image["status"] == "active"
    assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    got = httpx.get(f"{first.url}/v2/images/{image_id}/file", headers=JSON)
    assert got.status_code == 200 and got.content == DATA
    wait_for(lambda: not any(image_id in p.name for p in (tmp_path / "staging").iterdir()),
             15, "the staged data to be removed")


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
