"""GET and DELETE /v2/images/{id} (facts 1.5, 1.6)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.helpers import PATCH_21, assert_error, create, create_active, ids, patch, show, uid


def test_show_returns_created_image(api: httpx.Client) -> None:
    image = create(api, name=f"show-{uid()}", foo="bar")
    resp = api.get(f"/v2/images/{image['id']}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == image


def test_show_unknown_uuid_is_404(api: httpx.Client) -> None:
    assert_error(api.get(f"/v2/images/{uuid.uuid4()}"), 404)


@pytest.mark.parametrize("visibility", ["private", "shared"])
def test_others_cannot_see_private_or_unshared_image(api: httpx.Client, member: httpx.Client,
                                                     visibility: str) -> None:
    image = create(api, visibility=visibility)
    assert_error(member.get(f"/v2/images/{image['id']}"), 404)


@pytest.mark.parametrize("visibility", ["public", "community"])
def test_others_can_see_public_and_community_image(api: httpx.Client, member: httpx.Client,
                                                   visibility: str) -> None:
    image = create(api, visibility=visibility)
    resp = member.get(f"/v2/images/{image['id']}")
    assert resp.status_code == 200
    assert resp.json()["id"] == image["id"]


def test_owner_sees_own_private_image(member: httpx.Client, api: httpx.Client) -> None:
    image = create(member, visibility="private")
    assert show(member, image["id"])["owner"] == member.headers["X-Project-Id"]
    assert show(api, image["id"])["id"] == image["id"]  # admin sees everything


def test_delete_queued_image(api: httpx.Client) -> None:
    tag = f"del-{uid()}"
    image = create(api, tags=[tag])
    resp = api.delete(f"/v2/images/{image['id']}")
    assert resp.status_code == 204
    assert resp.content == b""
    assert_error(api.get(f"/v2/images/{image['id']}"), 404)
    assert_error(api.delete(f"/v2/images/{image['id']}"), 404)
    assert ids(api, tag=tag) == []


def test_delete_active_image_removes_data(api: httpx.Client) -> None:
    image = create_active(api)
    assert api.delete(f"/v2/images/{image['id']}").status_code == 204
    assert_error(api.get(f"/v2/images/{image['id']}/file"), 404)
    assert_error(api.get(f"/v2/images/{image['id']}"), 404)


def test_delete_protected_image_is_403(api: httpx.Client) -> None:
    image = create(api, protected=True)
    assert_error(api.delete(f"/v2/images/{image['id']}"), 403)
    assert show(api, image["id"])["status"] == "queued"
    resp = patch(api, image["id"], [{"op": "replace", "path": "/protected", "value": False}],
                 PATCH_21)
    assert resp.status_code == 200
    assert api.delete(f"/v2/images/{image['id']}").status_code == 204


def test_delete_deactivated_image(api: httpx.Client) -> None:
    image = create_active(api)
    assert api.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 204
    assert api.delete(f"/v2/images/{image['id']}").status_code == 204
    assert_error(api.get(f"/v2/images/{image['id']}"), 404)


def test_member_cannot_delete_public_image_of_others(api: httpx.Client,
                                                     member: httpx.Client) -> None:
    image = create(api, visibility="public")
    assert_error(member.delete(f"/v2/images/{image['id']}"), 403)
    assert show(api, image["id"])["status"] == "queued"


def test_member_cannot_delete_invisible_image(api: httpx.Client, member: httpx.Client) -> None:
    image = create(api, visibility="private")
    assert_error(member.delete(f"/v2/images/{image['id']}"), 404)
    assert show(api, image["id"])["status"] == "queued"


def test_member_deletes_own_image(member: httpx.Client) -> None:
    image = create(member)
    assert member.delete(f"/v2/images/{image['id']}").status_code == 204
    assert_error(member.get(f"/v2/images/{image['id']}"), 404)
