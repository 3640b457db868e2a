"""The access matrix: every action x every visibility and membership state x every kind of
caller, with real Keystone tokens against a real keystone-mode server. Each cell's expected
status comes from what a real Glance does (shared/reference/glance-v2-facts.md §2.1):

- no token or a bad one: 401 everywhere;
- an image the caller may not see: 404, whatever the action;
- seen but not allowed: 403 (the policy check comes before the state check);
- readers never create, change or download; only the owner's members (or an admin) change an
  image; only the member itself sets its membership status; only the owner adds or removes
  members; members of other images and community images never appear in others' default lists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.identity.test_keystone_mode import keystone_settings
from tests.keystone import Keystone
from tests.servers import Server, start_server

OCTET = {"Content-Type": "application/octet-stream"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
CALLERS = ("admin", "alpha-member", "alpha-reader", "beta-member", "beta-reader",
           "gamma-member", "no token", "bad token")
#: (visibility, beta's membership, status) of the images alpha owns.
KINDS = (
    ("public", None, "active"), ("community", None, "active"), ("private", None, "active"),
    ("shared", None, "active"), ("shared", "pending", "active"), ("shared", "accepted", "active"),
    ("shared", "rejected", "active"), ("private", None, "deactivated"),
    ("shared", "accepted", "deactivated"), ("private", None, "queued"),
    ("public", None, "queued"),
)


@dataclass(frozen=True)
class Cell:
    caller: str
    visibility: str
    membership: str | None
    status: str

    @property
    def project(self) -> str | None:
        return None if " " in self.caller else self.caller.split("-")[0]

    @property
    def admin(self) -> bool:
        return self.caller == "admin"

    @property
    def owner(self) -> bool:
        return self.project == "alpha"

    @property
    def member_role(self) -> bool:
        return self.admin or self.caller.endswith("-member")

    @property
    def is_member(self) -> bool:
        return self.project == "beta" and self.membership is not None

    def sees(self) -> bool:
        if self.admin or self.owner or self.visibility in ("public", "community"):
            return True
        return self.visibility == "shared" and self.is_member

    def changes(self) -> bool:
        return self.admin or (self.owner and self.member_role)


def expected(cell: Cell, action: str) -> int:
    """What Glance answers: the oracle of this matrix."""
    if cell.project is None:
        return 401
    if action == "list":
        return 200
    if not cell.sees():
        return 404
    shared = cell.visibility == "shared"
    if action == "show":
        return 200
    if action == "download":
        if not cell.member_role:
            return 403
        if cell.status == "deactivated" and not cell.admin:
            return 403
        return 204 if cell.status == "queued" else 200
    if action in ("patch", "tag"):
        return (200 if action == "patch" else 204) if cell.changes() else 403
    if action == "upload":
        if not cell.changes():
            return 403
        return 204 if cell.status == "queued" else 409
    if action == "deactivate":
        if not cell.changes():
            return 403
        return 403 if cell.status == "queued" else 204
    if action == "delete":
        return 204 if cell.changes() else 403
    if action == "members":
        if not shared:
            return 403
        return 200
    if action == "add member":
        if not cell.changes():
            return 403
        return 200 if shared else 403
    if action == "accept":  # the caller sets beta's membership to accepted
        if not shared:
            return 404
        if not (cell.admin or (cell.project == "beta" and cell.member_role)):
            return 403  # the policy comes before looking the membership up
        return 404 if cell.membership is None else 200
    raise AssertionError(action)


#: State changes come last, in an order the oracle need not follow: deactivate (an active image
#: becomes deactivated, which keeps every answer after it the same), upload (only a queued image
#: takes data), delete.
ACTIONS = ("list", "show", "download", "patch", "tag", "members", "add member", "accept",
           "deactivate", "upload", "delete")


@pytest.fixture(scope="module")
def server(keystone: Keystone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("matrix") / "data",
                           **keystone_settings(keystone))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def clients(server: Server, keystone: Keystone) -> Iterator[dict[str, httpx.Client]]:
    made = {}
    for name in CALLERS:
        headers = {"Accept": "application/json"}
        if name == "bad token":
            headers["X-Auth-Token"] = "gAAAAA" + uuid.uuid4().hex
        elif name != "no token":
            headers["X-Auth-Token"] = keystone.token(name)
        made[name] = httpx.Client(base_url=server.url, timeout=60, headers=headers)
    yield made
    for client in made.values():
        client.close()


def make_image(clients: dict[str, httpx.Client], keystone: Keystone, visibility: str,
               membership: str | None, status: str) -> str:
    """An image of project alpha in the given state (public ones are made by the admin)."""
    alpha = keystone.projects["alpha"]
    maker = clients["admin"] if visibility == "public" else clients["alpha-member"]
    made = maker.post("/v2/images", json={"visibility": visibility, "owner": alpha,
                                          "disk_format": "raw", "container_format": "bare"})
    assert made.status_code == 201, made.text
    image_id: str = made.json()["id"]
    if status != "queued":
        done = maker.put(f"/v2/images/{image_id}/file", content=b"matrix", headers=OCTET)
        assert done.status_code == 204, done.text
    if status == "deactivated":
        assert maker.post(f"/v2/images/{image_id}/actions/deactivate").status_code == 204
    if membership is not None:
        beta = keystone.projects["beta"]
        assert clients["alpha-member"].post(f"/v2/images/{image_id}/members",
                                            json={"member": beta}).status_code == 200
        if membership != "pending":
            answered = clients["beta-member"].put(f"/v2/images/{image_id}/members/{beta}",
                                                  json={"status": membership})
            assert answered.status_code == 200, answered.text
    return image_id


def act(client: httpx.Client, keystone: Keystone, action: str, image_id: str) -> int:
    calls: dict[str, Callable[[], httpx.Response]] = {
        "show": lambda: client.get(f"/v2/images/{image_id}"),
        "download": lambda: client.get(f"/v2/images/{image_id}/file"),
        "patch": lambda: client.patch(f"/v2/images/{image_id}", headers=PATCH,
                                      content=b'[{"op": "add", "path": "/m", "value": "x"}]'),
        "tag": lambda: client.put(f"/v2/images/{image_id}/tags/matrix"),
        "upload": lambda: client.put(f"/v2/images/{image_id}/file", content=b"again",
                                     headers=OCTET),
        "deactivate": lambda: client.post(f"/v2/images/{image_id}/actions/deactivate"),
        "members": lambda: client.get(f"/v2/images/{image_id}/members"),
        "add member": lambda: client.post(f"/v2/images/{image_id}/members",
                                          json={"member": keystone.projects["gamma"]}),
        "accept": lambda: client.put(
            f"/v2/images/{image_id}/members/{keystone.projects['beta']}",
            json={"status": "accepted"}),
        "delete": lambda: client.delete(f"/v2/images/{image_id}"),
    }
    if action == "list":
        return client.get("/v2/images", params={"limit": 1}).status_code
    return calls[action]().status_code


def test_every_cell_answers_as_glance_does(clients: dict[str, httpx.Client],
                                          keystone: Keystone) -> None:
    wrong: list[str] = []
    checked = 0
    for visibility, membership, status in KINDS:
        for caller in CALLERS:
            # a fresh image per caller: earlier callers' changes must not decide later cells
            image_id = make_image(clients, keystone, visibility, membership, status)
            cell = Cell(caller, visibility, membership, status)
            for action in ACTIONS:
                got = act(clients[caller], keystone, action, image_id)
                want = expected(cell, action)
                checked += 1
                if got != want:
                    wrong.append(f"{caller:13} {visibility}/{membership}/{status} "
                                 f"{action}: {got}, Glance {want}")
    assert not wrong, f"{len(wrong)} of {checked} cells differ:\n" + "\n".join(wrong)


def listed(client: httpx.Client, **params: Any) -> set[str]:
    resp = client.get("/v2/images", params={"limit": 1000, **params})
    assert resp.status_code == 200, resp.text
    return {i["id"] for i in resp.json()["images"]}


def test_lists_hold_what_glance_lists(clients: dict[str, httpx.Client],
                                      keystone: Keystone) -> None:
    made = {kind: make_image(clients, keystone, *kind) for kind in KINDS}
    mine = set(made.values())
    public = {i for (v, _, _), i in made.items() if v == "public"}
    community = {i for (v, _, _), i in made.items() if v == "community"}
    accepted = {i for (v, m, _), i in made.items() if m == "accepted"}
    pending = {i for (v, m, _), i in made.items() if m == "pending"}
    rejected = {i for (v, m, _), i in made.items() if m == "rejected"}
    for owner in ("admin", "alpha-member", "alpha-reader"):
        for status in ("accepted", "pending", "rejected", "all"):
            assert mine <= listed(clients[owner], visibility="all", member_status=status)
        assert mine - community <= listed(clients[owner])
    for other in ("beta-member", "beta-reader"):
        got = listed(clients[other]) & mine
        assert got == public | accepted, other
        assert listed(clients[other], member_status="pending") & mine == public | pending
        assert listed(clients[other], member_status="rejected") & mine == public | rejected
        assert listed(clients[other], member_status="all") & mine == (
            public | accepted | pending | rejected)
        assert listed(clients[other], visibility="community") & mine == community
        assert listed(clients[other], visibility="all") & mine == (public | community | accepted)
    assert listed(clients["gamma-member"]) & mine == public
    for nobody in ("no token", "bad token"):
        assert clients[nobody].get("/v2/images").status_code == 401
