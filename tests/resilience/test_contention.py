"""Many writers on one image at once: every write is acknowledged and every write is kept.

Writers of disjoint fields (properties, tags) never refuse each other; writers of the same field
(`name`) retry with back-off inside the server until they land, last writer wins.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import httpx

from tests.resilience.helpers import JSON, create_image, show
from tests.servers import Server

WRITERS = 32
PATCH_21 = {"Content-Type": "application/openstack-images-v2.1-json-patch", **JSON}
PATCH_20 = {"Content-Type": "application/openstack-images-v2.0-json-patch", **JSON}


def test_32_writers_on_one_image_are_all_acknowledged_and_kept(
        make_server: Callable[..., Server]) -> None:
    # Two processes contend for the same rows. The retry budget is raised from its default (5 s)
    # so that a slow shared machine measures whether writes are kept, not how fast they land.
    server = make_server(workers=2, write_retry_timeout=60)
    image = create_image(server.url, name="start")
    url = f"{server.url}/v2/images/{image['id']}"
    statuses: list[tuple[str, int, str]] = []
    barrier = threading.Barrier(WRITERS)

    def writer(n: int) -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            calls = [
                ("patch v2.1 add", lambda: client.patch(url, headers=PATCH_21, content=json.dumps(
                    [{"op": "add", "path": f"/p21_{n}", "value": str(n)}]))),
                ("tag", lambda: client.put(f"{url}/tags/tag-{n}", headers=JSON)),
                ("patch v2.0 add", lambda: client.patch(url, headers=PATCH_20, content=json.dumps(
                    [{"add": f"/p20_{n}", "value": str(n)}]))),
                ("patch same field", lambda: client.patch(url, headers=PATCH_21,
                                                          content=json.dumps([{
                                                              "op": "replace", "path": "/name",
                                                              "value": f"writer-{n}"}]))),
            ]
            for what, call in calls:
                response = call()
                statuses.append((what, response.status_code, response.text[:200]))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    refused = [s for s in statuses if s[1] not in (200, 204)]
    assert not refused, refused
    assert len(statuses) == 4 * WRITERS
    final = show(server.url, image["id"])
    for n in range(WRITERS):
        assert final[f"p21_{n}"] == str(n) and final[f"p20_{n}"] == str(n)
    assert set(final["tags"]) == {f"tag-{n}" for n in range(WRITERS)}
    assert final["name"] in {f"writer-{n}" for n in range(WRITERS)}
