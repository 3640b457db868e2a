"""Failed, interrupted and racing uploads leave no partial data and no image stuck in saving."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.resilience.helpers import (
    JSON,
    OCTETS,
    create_image,
    files_of,
    show,
    slow_chunks,
    wait_for,
)
from tests.servers import Server


def crash_mid_upload(victim: Server, image_id: str, images_dir: Path) -> None:
    """Start an upload on `victim`, wait until it has written partial data, then SIGKILL it."""
    sock = socket.create_connection(("127.0.0.1", victim.port))
    sock.sendall(
        f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 100000000\r\n\r\n".encode()
    )
    sock.sendall(os.urandom(9 * 1024 * 1024))
    wait_for(lambda: any(n.endswith(".partial") for n in files_of(images_dir, image_id)),
             10, "the upload to write partial data")
    victim.kill()
    sock.close()


def test_client_disconnect_returns_image_to_queued(server: Server) -> None:
    image = create_image(server.url)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"PUT /v2/images/{image['id']}/file HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n".encode()
        )
        sock.sendall(os.urandom(9 * 1024 * 1024))
        wait_for(lambda: show(server.url, image["id"])["status"] == "saving", 10, "saving")
    wait_for(lambda: show(server.url, image["id"])["status"] == "queued", 10, "queued")
    assert files_of(server.data_dir / "images", image["id"]) == []
    after = show(server.url, image["id"])
    assert after["size"] is None and after["checksum"] is None
    # and the image accepts a fresh upload
    response = httpx.put(f"{server.url}/v2/images/{image['id']}/file", content=b"ok",
                         headers=OCTETS)
    assert response.status_code == 204
    assert show(server.url, image["id"])["status"] == "active"


def test_racing_uploads_one_wins(server: Server) -> None:
    image = create_image(server.url)
    payloads = [os.urandom(6 * 1024 * 1024), os.urandom(6 * 1024 * 1024)]
    statuses: list[int] = [0, 0]
    barrier = threading.Barrier(2)

    def upload(n: int) -> None:
        def body() -> Iterator[bytes]:
            barrier.wait()
            data = payloads[n]
            for i in range(0, len(data), 1024 * 1024):
                yield data[i:i + 1024 * 1024]

        response = httpx.put(f"{server.url}/v2/images/{image['id']}/file", content=body(),
                             headers={**OCTETS, **JSON}, timeout=60)
        statuses[n] = response.status_code

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [204, 409]
    winner = payloads[statuses.index(204)]
    final = show(server.url, image["id"])
    assert final["status"] == "active"
    assert final["checksum"] == hashlib.md5(winner).hexdigest()
    assert httpx.get(f"{server.url}/v2/images/{image['id']}/file").content == winner
    assert len(files_of(server.data_dir / "images", image["id"])) == 1


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)
    return done.returncode == 0


def test_disk_full_gives_413_and_leaves_nothing(
    tmp_path: Path, make_server: Callable[..., Server]
) -> None:
    data_dir = tmp_path / "small-disk"
    if not _mount_tmpfs(data_dir, "8m"):
        pytest.fail("could not mount a tmpfs to fill (the tests run as root on CI)")
    try:
        srv = make_server(data_dir, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
        image = create_image(srv.url)
        response = httpx.put(f"{srv.url}/v2/images/{image['id']}/file",
                             content=os.urandom(12 * 1024 * 1024), headers={**OCTETS, **JSON})
        assert response.status_code == 413, response.text
        assert "space" in response.json()["message"]
        assert show(srv.url, image["id"])["status"] == "queued"
        assert files_of(data_dir / "images", image["id"]) == []
        # the space came back: a smaller upload fits
        response = httpx.put(f"{srv.url}/v2/images/{image['id']}/file",
                             content=os.urandom(2 * 1024 * 1024), headers=OCTETS)
        assert response.status_code == 204
        srv.stop()
    finally:
        subprocess.run(["umount", "-l", str(data_dir)], check=False)


def test_crashed_upload_is_reaped_without_touching_live_uploads(
    tmp_path: Path, make_server: Callable[..., Server]
) -> None:
    """Two servers share one data folder. B dies mid-upload (SIGKILL); A's upload goes on.

    The image B was saving returns to queued and B's partial file disappears; the image A is
    saving stays in saving the whole time, and finishes active with the right checksum.
    """
    shared = tmp_path / "shared"
    fast = {"upload_heartbeat_interval": 0.3, "upload_stale_after": 2}
    a = make_server(shared, **fast)
    b = make_server(shared, **fast)
    live, doomed = create_image(a.url), create_image(a.url)
    images_dir = shared / "images"

    total = 24 * 1024 * 1024
    result: dict[str, int] = {}

    def live_upload() -> None:
        response = httpx.put(f"{a.url}/v2/images/{live['id']}/file",
                             content=slow_chunks(total, 256 * 1024, 0.05),
                             headers={**OCTETS, **JSON}, timeout=120)
        result["status"] = response.status_code

    uploader = threading.Thread(target=live_upload)
    uploader.start()
    wait_for(lambda: show(a.url, live["id"])["status"] == "saving", 10, "live upload to start")

    crash_mid_upload(b, doomed["id"], images_dir)
    assert show(a.url, doomed["id"])["status"] == "saving"  # nobody has cleaned up yet

    wait_for(lambda: show(a.url, doomed["id"])["status"] == "queued", 15, "the reaper")
    assert files_of(images_dir, doomed["id"]) == []
    assert show(a.url, live["id"])["status"] == "saving"  # the live one was left alone

    uploader.join(120)
    assert result.get("status") == 204
    expected = hashlib.md5(b"".join(slow_chunks(total, 256 * 1024, 0))).hexdigest()
    finished = show(a.url, live["id"])
    assert finished["status"] == "active" and finished["checksum"] == expected
    assert finished["size"] == total

    # a restarted server finds a consistent world
    b2 = make_server(shared, **fast)
    assert show(b2.url, doomed["id"])["status"] == "queued"


def test_image_deleted_while_its_uploader_is_dead_loses_its_partial_data(
    tmp_path: Path, make_server: Callable[..., Server]
) -> None:
    shared = tmp_path / "shared"
    fast = {"upload_heartbeat_interval": 0.3, "upload_stale_after": 2}
    a = make_server(shared, **fast)
    b = make_server(shared, **fast)
    doomed = create_image(a.url)
    images_dir = shared / "images"
    crash_mid_upload(b, doomed["id"], images_dir)
    assert httpx.delete(f"{a.url}/v2/images/{doomed['id']}").status_code == 204
    assert httpx.get(f"{a.url}/v2/images/{doomed['id']}").status_code == 404
    wait_for(lambda: files_of(images_dir, doomed["id"]) == [], 15, "the reaper to discard it")
