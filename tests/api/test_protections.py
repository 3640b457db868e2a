"""Property protections against a real server started with a protection file (no-auth mode:
`X-Project-Id` and `X-Roles` name the caller): create, show, list and patch per role."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_error, create, list_all, op, patch, show, uid
from tests.servers import Server, start_server

#: Glance's test patterns (shared with tests/unit): owner properties for members, an open and a
#: closed family, a property nobody reads, one nobody updates, and admin only for the rest.
RULES = (Path(__file__).parents[1] / "protections.conf").read_text()
FORMATS = {"disk_format": "raw", "container_format": "bare"}


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("protections")
    rules = root / "property-protections.conf"
    rules.write_text(RULES)
    srv = start_server(root / "data", property_protection_file=rules)
    yield srv
    srv.stop()


@pytest.fixture
def caller(protected: Server,
           connect: Callable[..., httpx.Client]) -> Callable[[str], httpx.Client]:
    """`caller(roles)`: a client of one fresh project (the same for every call of one test)."""
    project = f"proj-{uid()}"

    def factory(roles: str) -> httpx.Client:
        return connect(protected.url, **{"X-Project-Id": project, "X-Roles": roles})

    return factory


def extra(image: dict[str, Any]) -> set[str]:
    return {k for k in image if k.startswith(("x_", "os_distro"))}


def test_create_checks_the_create_rule(caller: Callable[[str], httpx.Client]) -> None:
    member, admin = caller("member"), caller("admin")
    image = create(member, name="ok", x_owner_a="1", x_all_permitted_b="2", **FORMATS)
    assert (image["x_owner_a"], image["x_all_permitted_b"]) == ("1", "2")
    name = f"refused-{uid()}"
    resp = member.post("/v2/images", json={"name": name, "os_distro": "cirros", **FORMATS})
    assert_error(resp, 403)
    assert "'os_distro'" in resp.json()["message"]
    assert not [i for i in list_all(admin) if i["name"] == name]  # nothing was stored
    assert_error(admin.post("/v2/images", json={"x_none_permitted_a": "1"}), 403)


def test_show_and_list_leave_out_what_the_caller_may_not_read(
        caller: Callable[[str], httpx.Client]) -> None:
    admin, member, reader = caller("admin"), caller("member"), caller("reader")
    image = create(admin, x_owner_a="1", x_all_permitted_b="2", os_distro="cirros",
                   x_none_read="secret", **FORMATS)
    assert extra(image) == {"x_owner_a", "x_all_permitted_b", "os_distro"}  # as created
    seen = {"admin": {"x_owner_a", "x_all_permitted_b", "os_distro"},
            "member": {"x_owner_a", "x_all_permitted_b"},
            "reader": {"x_all_permitted_b"}}
    for roles, client in (("admin", admin), ("member", member), ("reader", reader)):
        assert extra(show(client, image["id"])) == seen[roles], roles
        listed = [i for i in list_all(client) if i["id"] == image["id"]]
        assert len(listed) == 1 and extra(listed[0]) == seen[roles], roles
        assert listed[0]["disk_format"] == "raw"  # base attributes are never protected


def test_a_patch_cannot_see_or_clobber_hidden_properties(
        caller: Callable[[str], httpx.Client]) -> None:
    admin, member = caller("admin"), caller("member")
    image = create(admin, x_owner_a="1", os_distro="cirros", x_none_read="secret", **FORMATS)
    image_id = image["id"]
    for kind in ("replace", "remove"):  # absent for the member, as Glance answers
        resp = patch(member, image_id, [op("application/openstack-images-v2.1-json-patch",
                                           kind, "/os_distro", "gone")])
        assert_error(resp, 409)
        assert "os_distro does not exist" in resp.json()["message"]
    resp = patch(member, image_id, [{"op": "add", "path": "/x_none_read", "value": "mine"}])
    assert_error(resp, 403)  # would overwrite a value the member cannot see
    assert "'x_none_read'" in resp.json()["message"]
    # A change the member may make stores the properties it cannot see untouched.
    resp = patch(member, image_id, [{"op": "replace", "path": "/x_owner_a", "value": "2"},
                                    {"op": "replace", "path": "/name", "value": "renamed"}])
    assert resp.status_code == 200, resp.text
    assert extra(resp.json()) == {"x_owner_a"} and resp.json()["x_owner_a"] == "2"
    after = show(admin, image_id)
    assert (after["name"], after["x_owner_a"], after["os_distro"]) == ("renamed", "2", "cirros")
    # x_none_read is kept too: nobody reads it, but an admin may still not create it again.
    resp = patch(admin, image_id, [{"op": "add", "path": "/x_none_read", "value": "x"}])
    assert_error(resp, 403)


def test_patch_checks_create_update_and_delete_rules(
        caller: Callable[[str], httpx.Client]) -> None:
    admin, member = caller("admin"), caller("member")
    image_id = create(member, x_owner_a="1", x_none_update="u", **FORMATS)["id"]
    resp = patch(member, image_id, [{"op": "add", "path": "/os_distro", "value": "cirros"}])
    assert_error(resp, 403)
    assert "'os_distro'" in resp.json()["message"] and "create" in resp.json()["message"]
    resp = patch(member, image_id, [{"op": "replace", "path": "/x_none_update", "value": "v"}])
    assert_error(resp, 403)
    assert "'x_none_update'" in resp.json()["message"]
    resp = patch(member, image_id, [{"op": "add", "path": "/x_none_update", "value": "v"}])
    assert_error(resp, 403)  # an add of a present property is an update
    resp = patch(member, image_id, [{"op": "add", "path": "/x_owner_b", "value": "b"},
                                    {"op": "remove", "path": "/x_none_update"}])
    assert resp.status_code == 200, resp.text
    assert extra(resp.json()) == {"x_owner_a", "x_owner_b"}
    resp = patch(admin, image_id, [{"op": "add", "path": "/os_distro", "value": "cirros"}])
    assert resp.status_code == 200 and resp.json()["os_distro"] == "cirros", resp.text
    assert "os_distro" not in show(member, image_id)


def test_a_broken_protection_file_stops_the_server(tmp_path: Path) -> None:
    rules = tmp_path / "broken.conf"
    rules.write_text("[x_owner_(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n")
    env = {**os.environ, "GLIMPSE_PROPERTY_PROTECTION_FILE": str(rules),
           "GLIMPSE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--port", "1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("glimpse: configuration error: property_protection_file: "), \
        done.stderr
    assert "section [x_owner_(] is not a valid regular expression" in done.stderr
