"""Several worker processes: connections spread over all of them, a dead one is replaced, and
SIGTERM stops them all."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from tests.resilience.helpers import wait_for
from tests.servers import Server


def workers_of(server: Server) -> list[psutil.Process]:
    children = psutil.Process(server.pid).children()
    return [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]


def test_workers_share_the_load_and_are_replaced(make_server: Callable[..., Server]) -> None:
    server = make_server(workers=2)
    wait_for(lambda: len(workers_of(server)) == 2, 20, "two workers")
    workers = workers_of(server)
    before = [w.cpu_times().user + w.cpu_times().system for w in workers]

    def burst(_: int) -> int:
        with httpx.Client(base_url=server.url) as client:  # one connection per client
            return sum(client.get("/v2/images").status_code == 200 for _ in range(40))

    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(burst, range(16))) == 640
    after = [w.cpu_times().user + w.cpu_times().system for w in workers]
    busy = [a - b for a, b in zip(after, before, strict=True)]
    assert all(b > 0.1 for b in busy), f"CPU seconds per worker during the burst: {busy}"

    victim = workers[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    wait_for(lambda: len(workers_of(server)) == 2 and victim.pid not in
             [w.pid for w in workers_of(server)], 20, "a replacement worker")
    wait_for(lambda: httpx.get(f"{server.url}/versions").status_code == 200, 20, "service")

    remaining = workers_of(server)
    server.stop()
    _, alive = psutil.wait_procs(remaining, timeout=15)
    assert not alive
    assert server.process is not None and server.process.returncode == 0


def test_a_taken_port_is_a_clear_startup_error(server: Server, tmp_path: Path) -> None:
    for workers in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-m", "glimpse", "serve", "--port", str(server.port),
             "--data-dir", str(tmp_path / workers), "--workers", workers],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode != 0
        assert "address already in use" in (done.stderr + done.stdout).lower()


def test_workers_stop_when_their_supervisor_is_killed(make_server: Callable[..., Server]
                                                      ) -> None:
    """SIGKILL of the supervisor: its workers notice within a second and stop gracefully,
    instead of serving on unsupervised (88 such orphans once piled up on this machine)."""
    server = make_server(workers=2)
    wait_for(lambda: len(workers_of(server)) == 2, 20, "two workers")
    workers = workers_of(server)
    server.kill()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, [w.pid for w in alive]
    assert server.log().count("is gone; stopping") == 2, server.log()[-2000:]
