"""Small HTTP helpers for the resilience tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

JSON = {"Accept": "application/json"}
OCTETS = {"Content-Type": "application/octet-stream"}


def create_image(url: str, **fields: Any) -> dict[str, Any]:
    body = {"disk_format": "raw", "container_format": "bare", **fields}
    response = httpx.post(f"{url}/v2/images", json=body, headers=JSON)
    assert response.status_code == 201, response.text
    return dict(response.json())


def show(url: str, image_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/v2/images/{image_id}", headers=JSON)
    assert response.status_code == 200, response.text
    return dict(response.json())


def tasks_of(url: str, image_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/v2/images/{image_id}/tasks", headers=JSON)
    assert response.status_code == 200, response.text
    return list(response.json()["tasks"])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def files_of(images_dir: Path, image_id: str) -> list[str]:
    """Every file in the store that belongs to `image_id`, partial or committed."""
    if not images_dir.exists():
        return []
    return sorted(p.name for p in images_dir.iterdir() if image_id in p.name)


def slow_chunks(total: int, chunk: int, pause: float) -> Iterator[bytes]:
    block = bytes(range(256)) * (chunk // 256)
    sent = 0
    while sent < total:
        part = block[: min(chunk, total - sent)]
        sent += len(part)
        yield part
        time.sleep(pause)
