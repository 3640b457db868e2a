"""`use_keystone_limits`: a keystone-mode `glimpse serve` taking its per-project limits from a
real Keystone's unified limits (registered limits for the `image` service, a project limit
overriding one for project alpha).

A Keystone of its own (not the session's): the limits registered here would otherwise apply to
every other Glimpse sharing it, and the last test pauses it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.api.helpers import assert_error
from tests.identity.test_keystone_mode import keystone_settings
from tests.keystone import Keystone, start_keystone
from tests.servers import Server, free_port, start_server

MIB = 1024 * 1024
#: Registered limits (defaults) of the image service; image_stage_total has none (so 0).
REGISTERED = {"image_size_total": 1, "image_count_total": 2, "image_count_uploading": 1}
#: Project limits of project alpha.
ALPHA = {"image_size_total": 2, "image_count_total": 4}
CACHE_TIME = 1


class Admin:
    """Keystone's admin API for limits, as the harness's admin account."""

    def __init__(self, keystone: Keystone) -> None:
        self.keystone = keystone
        self.http = httpx.Client(base_url=keystone.auth_url, timeout=60,
                                 headers={"X-Auth-Token": keystone.token("admin")})
        assert keystone.facts_path is not None
        self.service_id: str = json.loads(keystone.facts_path.read_text())["image_service_id"]

    def endpoint_id(self, interface: str = "public") -> str:
        found = self.http.get("/endpoints", params={"service_id": self.service_id,
                                                    "interface": interface})
        found.raise_for_status()
        (endpoint,) = found.json()["endpoints"]
        return str(endpoint["id"])

    def register(self, limits: dict[str, int]) -> None:
        resp = self.http.post("/registered_limits", json={"registered_limits": [
            {"service_id": self.service_id, "region_id": self.keystone.region,
             "resource_name": name, "default_limit": value} for name, value in limits.items()]})
        assert resp.status_code == 201, resp.text

    def set_project_limits(self, project: str, limits: dict[str, int]) -> list[str]:
        resp = self.http.post("/limits", json={"limits": [
            {"service_id": self.service_id, "region_id": self.keystone.region,
             "project_id": project, "resource_name": name, "resource_limit": value}
            for name, value in limits.items()]})
        assert resp.status_code == 201, resp.text
        return [limit["id"] for limit in resp.json()["limits"]]

    def delete_limit(self, limit_id: str) -> None:
        self.http.delete(f"/limits/{limit_id}").raise_for_status()


@pytest.fixture(scope="module")
def own_keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    ks = start_keystone(tmp_path_factory.mktemp("keystone-limits"))
    yield ks
    ks.stop()


@pytest.fixture(scope="module")
def admin(own_keystone: Keystone) -> Iterator[Admin]:
    api = Admin(own_keystone)
    api.register(REGISTERED)
    api.set_project_limits(own_keystone.projects["alpha"], ALPHA)
    yield api
    api.http.close()


@pytest.fixture(scope="module")
def server(own_keystone: Keystone, admin: Admin,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("keystone-limits") / "data",
        **keystone_settings(own_keystone), use_keystone_limits="true",
        keystone_limits_endpoint_id=admin.endpoint_id(),
        keystone_limits_cache_time=CACHE_TIME, keystone_timeout=2)
    yield running
    running.stop()


def client(server: Server, keystone: Keystone, account: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers={
        "Accept": "application/json", "X-Auth-Token": keystone.token(account)})


def usage(c: httpx.Client) -> dict[str, dict[str, int]]:
    resp = c.get("/v2/info/usage")
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["usage"])


def create(c: httpx.Client, name: str = "limited") -> httpx.Response:
    return c.post("/v2/images", json={"name": name, "disk_format": "raw",
                                      "container_format": "bare"})


def upload(c: httpx.Client, image_id: str, data: bytes, **headers: str) -> httpx.Response:
    return c.put(f"/v2/images/{image_id}/file", content=data,
                 headers={"Content-Type": "application/octet-stream", **headers})


def assert_quota_error(resp: httpx.Response, quota: str) -> None:
    assert_error(resp, 413)
    assert f"Resource {quota} is over limit" in resp.json()["message"], resp.text


#: Images a test made: (image URL, token of its owner).
Made = list[tuple[str, str]]


@pytest.fixture
def images() -> Iterator[Made]:
    """Images a test creates, deleted afterwards (deleted images count for nothing)."""
    made: Made = []
    yield made
    for url, token in made:
        httpx.delete(url, headers={"X-Auth-Token": token}, timeout=60).raise_for_status()


def created(c: httpx.Client, made: Made) -> str:
    resp = create(c)
    assert resp.status_code == 201, resp.text
    image_id = str(resp.json()["id"])
    made.append((f"{c.base_url}/v2/images/{image_id}", c.headers["X-Auth-Token"]))
    return image_id


def test_usage_shows_keystone_limits_with_the_override(server: Server,
                                                       own_keystone: Keystone) -> None:
    limits = {}
    for account in ("alpha-reader", "beta-member"):
        with client(server, own_keystone, account) as c:
            limits[account] = {name: line["limit"] for name, line in usage(c).items()}
    # Sizes are MiB in Keystone, bytes here; no limit registered at all is 0, as in Glance.
    assert limits["alpha-reader"] == {"image_size_total": 2 * MIB, "image_stage_total": 0,
                                      "image_count_total": 4, "image_count_uploading": 1}
    assert limits["beta-member"] == {"image_size_total": 1 * MIB, "image_stage_total": 0,
                                     "image_count_total": 2, "image_count_uploading": 1}


def test_create_at_the_limit_and_one_over(server: Server, own_keystone: Keystone,
                                          images: Made) -> None:
    with client(server, own_keystone, "beta-member") as beta, \
            client(server, own_keystone, "alpha-member") as alpha:
        for _ in range(REGISTERED["image_count_total"]):
            created(beta, images)
        assert_quota_error(create(beta), "image_count_total")
        # alpha's project limit beats the registered default.
        for _ in range(ALPHA["image_count_total"]):
            created(alpha, images)
        assert_quota_error(create(alpha), "image_count_total")
        assert usage(alpha)["image_count_total"] == {"limit": 4, "usage": 4}


def test_upload_at_the_limit_and_one_over(server: Server, own_keystone: Keystone,
                                          images: Made) -> None:
    with client(server, own_keystone, "alpha-member") as alpha, \
            client(server, own_keystone, "beta-member") as beta:
        # 2 MiB: over beta's (registered) 1 MiB, exactly alpha's project limit.
        first = created(alpha, images)
        assert upload(alpha, first, b"a" * (2 * MIB)).status_code == 204
        second = created(alpha, images)
        assert_quota_error(upload(alpha, second, b"b"), "image_size_total")
        assert usage(alpha)["image_size_total"] == {"limit": 2 * MIB, "usage": 2 * MIB}

        over = created(beta, images)
        resp = upload(beta, over, b"c" * (MIB + 1), **{"x-openstack-image-size": str(MIB + 1)})
        assert_quota_error(resp, "image_size_total")
        assert upload(beta, over, b"c" * MIB).status_code == 204


def test_a_changed_limit_takes_effect_after_the_cache_time(
        server: Server, own_keystone: Keystone, admin: Admin) -> None:
    with client(server, own_keystone, "beta-member") as beta:
        assert usage(beta)["image_count_total"]["limit"] == 2
        (limit_id,) = admin.set_project_limits(own_keystone.projects["beta"],
                                               {"image_count_total": 0})
        deadline = time.monotonic() + 30 + CACHE_TIME
        try:
            while usage(beta)["image_count_total"]["limit"] != 0:
                assert time.monotonic() < deadline, "the new limit never showed"
                time.sleep(0.2)
            assert_quota_error(create(beta), "image_count_total")
        finally:
            admin.delete_limit(limit_id)
            while usage(beta)["image_count_total"]["limit"] != 2:  # for the tests after this
                assert time.monotonic() < deadline + 30, "the old limit never came back"
                time.sleep(0.2)


def test_a_keystone_that_cannot_answer_is_503_never_a_pass(
        server: Server, own_keystone: Keystone) -> None:
    with client(server, own_keystone, "beta-member") as beta:
        assert create(beta).status_code == 201  # the token is now remembered by Glimpse
        assert own_keystone.directory is not None
        master = psutil.Process(int((own_keystone.directory / "keystone.pid").read_text()))
        paused = [master, *master.children(recursive=True)]
        time.sleep(CACHE_TIME + 0.2)  # let the limits lapse: the next request must ask
        for process in paused:
            process.suspend()
        try:
            resp = create(beta, "while Keystone sleeps")
        finally:
            for process in paused:
                process.resume()
        assert_error(resp, 503)
        assert "quota limits cannot be read" in resp.json()["message"], resp.text
        names = [i["name"] for i in beta.get("/v2/images").json()["images"]]
        assert "while Keystone sleeps" not in names
    assert f"Keystone limits of project {own_keystone.projects['beta']} cannot be read" \
        in server.log()


def test_an_unknown_endpoint_is_503_naming_it(tmp_path: Path, own_keystone: Keystone,
                                              admin: Admin) -> None:
    running = start_server(tmp_path / "data", **keystone_settings(own_keystone),
                           use_keystone_limits="true",
                           keystone_limits_endpoint_id="no-such-endpoint")
    try:
        with client(running, own_keystone, "alpha-member") as c:
            resp = c.get("/v2/info/usage")
        assert_error(resp, 503)
        assert "no-such-endpoint" in resp.json()["message"], resp.text
    finally:
        running.stop()


def test_the_endpoint_can_be_found_by_service_type_and_region(
        tmp_path: Path, own_keystone: Keystone, admin: Admin) -> None:
    running = start_server(tmp_path / "data", **keystone_settings(own_keystone),
                           use_keystone_limits="true",
                           keystone_limits_endpoint_service_type="image",
                           keystone_limits_endpoint_region_name=own_keystone.region)
    try:
        with client(running, own_keystone, "alpha-member") as c:
            assert usage(c)["image_count_total"]["limit"] == 4
    finally:
        running.stop()


@pytest.mark.parametrize(("env", "message"), [
    ({"GLIMPSE_AUTH": "noauth"}, "use_keystone_limits: needs auth = keystone (not noauth)"),
    ({"GLIMPSE_AUTH": "tokens"}, "use_keystone_limits: needs auth = keystone (not tokens)"),
    ({"GLIMPSE_AUTH": "keystone", "GLIMPSE_KEYSTONE_LIMITS_ENDPOINT_INTERFACE": "sideways"},
     "keystone_limits_endpoint_interface: unknown interface 'sideways'"),
    ({"GLIMPSE_AUTH": "keystone", "GLIMPSE_KEYSTONE_LIMITS_ENDPOINT_SERVICE_TYPE": ""},
     "keystone_limits_endpoint_service_type: required with use_keystone_limits"),
    ({"GLIMPSE_AUTH": "keystone", "GLIMPSE_KEYSTONE_LIMITS_CACHE_TIME": "-1"},
     "keystone_limits_cache_time: must be 0 or more seconds"),
])
def test_bad_limits_settings_stop_serve(tmp_path: Path, env: dict[str, str],
                                        message: str) -> None:
    base: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    base.update(GLIMPSE_DATA_DIR=str(tmp_path / "d"), GLIMPSE_USE_KEYSTONE_LIMITS="true")
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--port",
                           str(free_port())], env={**base, **env}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"glimpse: configuration error: {message}"), done.stderr
