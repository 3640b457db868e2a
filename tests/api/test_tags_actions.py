"""Tags sub-resource and deactivate/reactivate actions (facts 1.5, 1.6)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.helpers import DATA, assert_error, create, create_active, create_raw, show, uid

# --- tags ----------------------------------------------------------------------------------------


def test_put_and_delete_tag(api: httpx.Client) -> None:
    image = create(api)
    tag = f"t-{uid()}"
    resp = api.put(f"/v2/images/{image['id']}/tags/{tag}")
    assert resp.status_code == 204
    assert resp.content == b""
    assert show(api, image["id"])["tags"] == [tag]
    assert api.get("/v2/images", params={"tag": tag}).json()["images"][0]["id"] == image["id"]
    resp = api.delete(f"/v2/images/{image['id']}/tags/{tag}")
    assert resp.status_code == 204
    assert show(api, image["id"])["tags"] == []


def test_put_tag_is_idempotent(api: httpx.Client) -> None:
    image = create(api, tags=["keep"])
    for _ in range(2):
        assert api.put(f"/v2/images/{image['id']}/tags/dup").status_code == 204
    assert sorted(show(api, image["id"])["tags"]) == ["dup", "keep"]


def test_tag_with_space_and_unicode(api: httpx.Client) -> None:
    image = create(api)
    tag = "with space é"
    assert api.put(f"/v2/images/{image['id']}/tags/{tag}").status_code == 204
    assert show(api, image["id"])["tags"] == [tag]


def test_tags_on_active_and_deactivated_images(api: httpx.Client) -> None:
    image = create_active(api)
    assert api.put(f"/v2/images/{image['id']}/tags/a").status_code == 204
    assert api.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 204
    assert api.put(f"/v2/images/{image['id']}/tags/b").status_code == 204
    assert sorted(show(api, image["id"])["tags"]) == ["a", "b"]


def test_delete_missing_tag_is_404(api: httpx.Client) -> None:
    image = create(api, tags=["present"])
    assert_error(api.delete(f"/v2/images/{image['id']}/tags/absent"), 404)
    assert show(api, image["id"])["tags"] == ["present"]


def test_delete_tag_twice_is_404(api: httpx.Client) -> None:
    image = create(api, tags=["once"])
    assert api.delete(f"/v2/images/{image['id']}/tags/once").status_code == 204
    assert_error(api.delete(f"/v2/images/{image['id']}/tags/once"), 404)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_tag_on_missing_image_is_404(api: httpx.Client, method: str) -> None:
    assert_error(api.request(method, f"/v2/images/{uuid.uuid4()}/tags/x"), 404)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_tag_on_deleted_image_is_404(api: httpx.Client, method: str) -> None:
    image = create(api, tags=["x"])
    assert api.delete(f"/v2/images/{image['id']}").status_code == 204
    assert_error(api.request(method, f"/v2/images/{image['id']}/tags/x"), 404)


def test_overlong_tag_is_400(api: httpx.Client) -> None:
    image = create(api)
    assert_error(api.put(f"/v2/images/{image['id']}/tags/{'t' * 256}"), 400)
    assert show(api, image["id"])["tags"] == []
    assert api.put(f"/v2/images/{image['id']}/tags/{'t' * 255}").status_code == 204


def test_tag_quota_is_413(limited: httpx.Client) -> None:
    image = create(limited)
    assert limited.put(f"/v2/images/{image['id']}/tags/a").status_code == 204
    assert limited.put(f"/v2/images/{image['id']}/tags/b").status_code == 204
    assert limited.put(f"/v2/images/{image['id']}/tags/a").status_code == 204  # no growth
    assert_error(limited.put(f"/v2/images/{image['id']}/tags/c"), 413)
    assert sorted(show(limited, image["id"])["tags"]) == ["a", "b"]


def test_member_cannot_tag_image_of_others(api: httpx.Client, member: httpx.Client) -> None:
    public = create(api, visibility="public")
    assert_error(member.put(f"/v2/images/{public['id']}/tags/mine"), 403)
    assert show(api, public["id"])["tags"] == []
    private = create(api, visibility="private")
    assert_error(member.put(f"/v2/images/{private['id']}/tags/mine"), 404)


def test_member_tags_own_image(member: httpx.Client) -> None:
    image = create(member)
    assert member.put(f"/v2/images/{image['id']}/tags/own").status_code == 204
    assert member.delete(f"/v2/images/{image['id']}/tags/own").status_code == 204


# --- deactivate / reactivate ---------------------------------------------------------------------


def action(client: httpx.Client, image_id: str, name: str) -> httpx.Response:
    return client.post(f"/v2/images/{image_id}/actions/{name}")


def test_deactivate_and_reactivate(api: httpx.Client) -> None:
    image = create_active(api)
    resp = action(api, image["id"], "deactivate")
    assert resp.status_code == 204
    assert resp.content == b""
    assert show(api, image["id"])["status"] == "deactivated"
    resp = action(api, image["id"], "reactivate")
    assert resp.status_code == 204
    after = show(api, image["id"])
    assert after["status"] == "active"
    assert after["checksum"] == image["checksum"]
    assert api.get(f"/v2/images/{image['id']}/file").content == DATA


def test_deactivate_twice_is_noop(api: httpx.Client) -> None:
    image = create_active(api)
    assert action(api, image["id"], "deactivate").status_code == 204
    assert action(api, image["id"], "deactivate").status_code == 204
    assert show(api, image["id"])["status"] == "deactivated"


def test_reactivate_active_is_noop(api: httpx.Client) -> None:
    image = create_active(api)
    assert action(api, image["id"], "reactivate").status_code == 204
    assert show(api, image["id"])["status"] == "active"


@pytest.mark.parametrize("name", ["deactivate", "reactivate"])
def test_action_on_queued_image_is_403(api: httpx.Client, name: str) -> None:
    image = create_raw(api)
    assert_error(action(api, image["id"], name), 403)
    assert show(api, image["id"])["status"] == "queued"


@pytest.mark.parametrize("name", ["deactivate", "reactivate"])
def test_action_on_missing_image_is_404(api: httpx.Client, name: str) -> None:
    assert_error(action(api, str(uuid.uuid4()), name), 404)


@pytest.mark.parametrize("name", ["deactivate", "reactivate"])
def test_action_on_deleted_image_is_404(api: httpx.Client, name: str) -> None:
    image = create_active(api)
    assert api.delete(f"/v2/images/{image['id']}").status_code == 204
    assert_error(action(api, image["id"], name), 404)


def test_unknown_action_is_404(api: httpx.Client) -> None:
    image = create_active(api)
    assert_error(action(api, image["id"], "explode"), 404)
    assert show(api, image["id"])["status"] == "active"


def test_member_cannot_deactivate_image_of_others(api: httpx.Client,
                                                  member: httpx.Client) -> None:
    image = create_active(api, visibility="public")
    assert_error(action(member, image["id"], "deactivate"), 403)
    assert show(api, image["id"])["status"] == "active"
    assert action(api, image["id"], "deactivate").status_code == 204
    assert_error(action(member, image["id"], "reactivate"), 403)
    assert show(api, image["id"])["status"] == "deactivated"


def test_member_cannot_act_on_invisible_image(api: httpx.Client, member: httpx.Client) -> None:
    image = create_active(api, visibility="private")
    assert_error(action(member, image["id"], "deactivate"), 404)
    assert show(api, image["id"])["status"] == "active"


def test_deactivated_image_metadata_still_readable(api: httpx.Client,
                                                   member: httpx.Client) -> None:
    image = create_active(api, visibility="public", name=f"d-{uid()}")
    assert action(api, image["id"], "deactivate").status_code == 204
    shown = show(member, image["id"])
    assert shown["status"] == "deactivated"
    assert shown["size"] == len(DATA)
