"""A 2 GiB image streams through the server in both directions with flat server memory."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import httpx
import psutil

from tests.resilience.helpers import JSON, OCTETS, create_image, show
from tests.servers import Server

SIZE = 2 * 1024**3
CHUNK = 1024 * 1024
#: Far below the image size: the pipeline holds a few 4 MiB buffers, never the image.
RSS_GROWTH_LIMIT = 96 * 1024**2


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._process = psutil.Process(pid)
        self._stop_event = threading.Event()
        self.peak = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop_event.wait(0.02)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def test_two_gib_round_trip_with_flat_rss(server: Server) -> None:
    block = os.urandom(CHUNK)
    expected = hashlib.md5()
    for _ in range(SIZE // CHUNK):
        expected.update(block)

    def body() -> Iterator[bytes]:
        for _ in range(SIZE // CHUNK):
            yield block

    image = create_image(server.url, name="two-gib")
    baseline = psutil.Process(server.pid).memory_info().rss
    sampler = RssSampler(server.pid)
    sampler.start()
    response = httpx.put(f"{server.url}/v2/images/{image['id']}/file", content=body(),
                         headers={**OCTETS, **JSON, "x-openstack-image-size": str(SIZE)},
                         timeout=600)
    upload_peak = sampler.stop()
    assert response.status_code == 204, response.text
    meta = show(server.url, image["id"])
    assert meta["size"] == SIZE and meta["checksum"] == expected.hexdigest()

    sampler = RssSampler(server.pid)
    sampler.start()
    got = hashlib.md5()
    received = 0
    with httpx.stream("GET", f"{server.url}/v2/images/{image['id']}/file", timeout=600) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(SIZE)
        for part in r.iter_bytes(CHUNK):
            got.update(part)
            received += len(part)
    download_peak = sampler.stop()
    assert received == SIZE and got.hexdigest() == expected.hexdigest()

    for phase, peak in (("upload", upload_peak), ("download", download_peak)):
        growth = peak - baseline
        assert growth < RSS_GROWTH_LIMIT, (
            f"{phase}: server RSS grew by {growth / 2**20:.0f} MiB (baseline "
            f"{baseline / 2**20:.0f} MiB) while streaming {SIZE / 2**30:.0f} GiB"
        )
    httpx.delete(f"{server.url}/v2/images/{image['id']}")
