"""A server killed at any point of a delete leaves no image data behind once a server runs again.

The delete records its data removal in the same transaction that marks the image deleted; the
server runs it at once, and if it dies first, the next server's sweep does.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.resilience.helpers import JSON, OCTETS, create_image, files_of
from tests.servers import Server

ROUNDS = 10
DATA = b"\x5a" * (8 * 1024 * 1024)


def send_delete_and_kill(server: Server, image_id: str, after: float) -> None:
    """Send DELETE on a raw socket and SIGKILL the server `after` seconds later."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"DELETE /v2/images/{image_id} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(after)
        server.kill()


def settle(url: str, images: Path, image_id: str, timeout: float = 20) -> str:
    """"kept" (image and data both there) or "deleted" (both gone), once one of them holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v2/images/{image_id}", headers=JSON).status_code
        left = files_of(images, image_id)
        if status == 200 and left and not any(n.endswith(".partial") for n in left):
            return "kept"
        if status == 404 and not left:
            return "deleted"
        time.sleep(0.05)
    raise AssertionError(f"image {image_id} did not settle: status {status}, files {left}")


def test_kill_at_random_points_of_a_delete_leaves_no_data(
        tmp_path: Path, make_server: Callable[..., Server]) -> None:
    shared = tmp_path / "shared"
    images = shared / "images"
    fast = {"cleanup_interval": 0.2}
    rng = random.Random(20261201)
    outcomes: list[str] = []
    server = make_server(shared, **fast)
    for _ in range(ROUNDS):
        image = create_image(server.url)
        done = httpx.put(f"{server.url}/v2/images/{image['id']}/file", content=DATA,
                         headers=OCTETS, timeout=60)
        assert done.status_code == 204, done.text
        assert files_of(images, image["id"])
        send_delete_and_kill(server, image["id"], rng.uniform(0, 0.012))
        left_by_the_crash = files_of(images, image["id"])
        server = make_server(shared, **fast)
        outcome = settle(server.url, images, image["id"])
        if outcome == "deleted" and left_by_the_crash:
            outcome = "deleted by the sweep"
        outcomes.append(outcome)
    # Every round settled; the spread of outcomes shows where the kills landed.
    print("outcomes:", {o: outcomes.count(o) for o in set(outcomes)})
    assert len(outcomes) == ROUNDS
