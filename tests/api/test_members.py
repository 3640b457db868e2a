"""Sharing through members, and Glance's rules on who may see and do what (facts 1.11, 2.1).

No-auth mode: `X-Project-Id` and `X-Roles` name the caller, as Glance's unauthenticated context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.helpers import DATA, OCTET, assert_error, create_active, ids, uid

Client = Callable[..., httpx.Client]


@pytest.fixture
def owner(client_for: Client) -> httpx.Client:
    return client_for(f"owner-{uid()}")


@pytest.fixture
def other(client_for: Client) -> httpx.Client:
    return client_for(f"other-{uid()}")


def project(client: httpx.Client) -> str:
    return str(client.headers["X-Project-Id"])


def shared(owner: httpx.Client, **body: Any) -> dict[str, Any]:
    return create_active(owner, visibility="shared", **body)


def add(owner: httpx.Client, image_id: str, member: str) -> httpx.Response:
    return owner.post(f"/v2/images/{image_id}/members", json={"member": member})


def set_status(client: httpx.Client, image_id: str, member: str, status: str) -> httpx.Response:
    return client.put(f"/v2/images/{image_id}/members/{member}", json={"status": status})


def test_member_lifecycle(owner: httpx.Client, other: httpx.Client,
                          client_for: Client) -> None:
    image = shared(owner)
    me = project(other)
    created = add(owner, image["id"], me)
    assert created.status_code == 200, created.text
    body = created.json()
    assert (body["member_id"], body["image_id"], body["status"]) == (me, image["id"], "pending")
    assert body["schema"] == "/v2/schemas/member"
    assert_error(add(owner, image["id"], me), 409)

    # a pending member may show and download the image, but does not list it by default
    assert other.get(f"/v2/images/{image['id']}").status_code == 200
    assert other.get(f"/v2/images/{image['id']}/file").content == DATA
    assert image["id"] not in ids(other)
    assert image["id"] in ids(other, member_status="pending")
    assert image["id"] in ids(other, member_status="all")

    accepted = set_status(other, image["id"], me, "accepted")
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert image["id"] in ids(other)
    assert image["id"] not in ids(other, member_status="rejected")
    assert set_status(other, image["id"], me, "rejected").json()["status"] == "rejected"
    assert image["id"] not in ids(other)

    # who sees which members
    second = f"second-{uid()}"
    assert add(owner, image["id"], second).status_code == 200
    everyone = owner.get(f"/v2/images/{image['id']}/members").json()
    assert {m["member_id"] for m in everyone["members"]} == {me, second}
    assert everyone["schema"] == "/v2/schemas/members"
    mine = other.get(f"/v2/images/{image['id']}/members").json()["members"]
    assert [m["member_id"] for m in mine] == [me]
    assert_error(other.get(f"/v2/images/{image['id']}/members/{second}"), 404)
    assert other.get(f"/v2/images/{image['id']}/members/{me}").status_code == 200
    stranger = client_for(f"stranger-{uid()}")
    assert_error(stranger.get(f"/v2/images/{image['id']}/members"), 404)
    assert_error(stranger.get(f"/v2/images/{image['id']}"), 404)

    # only the member sets its status; only the owner removes it
    assert_error(set_status(owner, image["id"], me, "accepted"), 403)
    reader = client_for(me, roles="reader")
    assert_error(set_status(reader, image["id"], me, "accepted"), 403)
    assert_error(other.delete(f"/v2/images/{image['id']}/members/{me}"), 403)
    assert owner.delete(f"/v2/images/{image['id']}/members/{me}").status_code == 204
    assert_error(owner.delete(f"/v2/images/{image['id']}/members/{me}"), 404)
    assert_error(other.get(f"/v2/images/{image['id']}"), 404)


def test_a_member_may_see_but_not_change_the_image(owner: httpx.Client,
                                                   other: httpx.Client) -> None:
    image = shared(owner)
    add(owner, image["id"], project(other))
    patch = other.patch(f"/v2/images/{image['id']}", content=b'[]', headers={
        "Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert_error(patch, 403)
    assert_error(other.delete(f"/v2/images/{image['id']}"), 403)
    assert_error(other.put(f"/v2/images/{image['id']}/tags/t"), 403)
    assert_error(other.post(f"/v2/images/{image['id']}/actions/deactivate"), 403)
    assert_error(add(other, image["id"], f"x-{uid()}"), 403)


@pytest.mark.parametrize("visibility", ["private", "public", "community"])
def test_only_shared_images_have_members(api: httpx.Client, visibility: str) -> None:
    image = create_active(api, visibility=visibility)
    assert_error(add(api, image["id"], "someone"), 403)
    assert_error(api.get(f"/v2/images/{image['id']}/members"), 403)
    assert_error(api.get(f"/v2/images/{image['id']}/members/someone"), 404)


@pytest.mark.parametrize(
    ("body", "status"),
    [({}, 400), ({"member": ""}, 400), ({"member": 5}, 400), ({"member": "x" * 256}, 400),
     ([], 400)],
)
def test_bad_member_bodies(owner: httpx.Client, body: Any, status: int) -> None:
    image = shared(owner)
    assert_error(owner.post(f"/v2/images/{image['id']}/members", json=body), status)


def test_bad_status_and_unknown_member(owner: httpx.Client, other: httpx.Client) -> None:
    image = shared(owner)
    me = project(other)
    add(owner, image["id"], me)
    assert_error(set_status(other, image["id"], me, "maybe"), 400)
    assert_error(set_status(owner, image["id"], "nobody", "accepted"), 403)
    assert_error(owner.get(f"/v2/images/{image['id']}/members/nobody"), 404)


def test_readers_read_but_never_create_change_or_download(owner: httpx.Client,
                                                          client_for: Client) -> None:
    image = shared(owner)
    reader = client_for(project(owner), roles="reader")
    assert reader.get(f"/v2/images/{image['id']}").status_code == 200
    assert image["id"] in ids(reader)
    assert_error(reader.post("/v2/images", json={}), 403)
    assert_error(reader.get(f"/v2/images/{image['id']}/file"), 403)
    assert_error(reader.delete(f"/v2/images/{image['id']}"), 403)
    assert_error(reader.put(f"/v2/images/{image['id']}/file", content=b"x", headers=OCTET),
                 403)


def test_members_may_communitize_but_not_publicize(owner: httpx.Client) -> None:
    made = owner.post("/v2/images", json={"visibility": "community"})
    assert made.status_code == 201, made.text
    assert_error(owner.post("/v2/images", json={"visibility": "public"}), 403)
    assert_error(owner.post("/v2/images", json={"owner": f"else-{uid()}"}), 403)


def test_member_quota(make_server: Callable[..., Any], connect: Client) -> None:
    server = make_server(image_member_quota=2)
    owner = connect(server.url)
    image = create_active(owner, visibility="shared")
    assert add(owner, image["id"], "a").status_code == 200
    assert add(owner, image["id"], "b").status_code == 200
    assert_error(add(owner, image["id"], "c"), 413)
