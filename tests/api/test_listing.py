"""GET /v2/images: filters, sorting, paging (facts 1.10).

Every test tags its own images with a fresh tag and filters on it, so the shared server's other
images never interfere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.api.helpers import (
    assert_error,
    create,
    create_active,
    ids,
    list_all,
    list_images,
    uid,
)


@pytest.fixture(scope="module")
def timed(api: httpx.Client) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Two images created more than a second apart (timestamps have second resolution)."""
    tag = f"timed-{uid()}"
    older = create(api, name=f"older-{uid()}", tags=[tag])
    time.sleep(1.1)
    newer = create(api, name=f"newer-{uid()}", tags=[tag])
    assert newer["created_at"] > older["created_at"]
    return tag, older, newer


def tag_ids(client: httpx.Client, tag: str, **params: Any) -> set[str]:
    return set(ids(client, tag=tag, **{"limit": 1000, **params}))


# --- shape ---------------------------------------------------------------------------------------

def test_listing_shape(api: httpx.Client) -> None:
    tag = f"shape-{uid()}"
    image = create(api, tags=[tag], name="shape")
    resp = list_images(api, tag=tag)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["schema"] == "/v2/schemas/images"
    assert body["first"].startswith("/v2/images")
    assert "tag=" + tag in body["first"]
    assert "next" not in body
    assert body["images"] == [image]


# --- equality filters ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("param", "match", "other"),
    [
        ("name", {"name": "wanted"}, {"name": "unwanted"}),
        ("disk_format", {"disk_format": "iso"}, {"disk_format": "raw"}),
        ("container_format", {"container_format": "ova"}, {"container_format": "bare"}),
        ("min_disk", {"min_disk": 7}, {"min_disk": 8}),
        ("min_ram", {"min_ram": 64}, {"min_ram": 0}),
        ("os_distro", {"os_distro": "ubuntu"}, {"os_distro": "fedora"}),
        ("hw_flavor", {"hw_flavor": "big"}, {"hw_flavor": "small"}),
        ("owner", {"owner": "owner-one"}, {"owner": "owner-two"}),
    ],
)
def test_equality_filter(api: httpx.Client, param: str, match: dict[str, Any],
                         other: dict[str, Any]) -> None:
    tag = f"eq-{uid()}"
    wanted = create(api, tags=[tag], **match)
    create(api, tags=[tag], **other)
    create(api, tags=[tag])  # property unset
    assert tag_ids(api, tag, **{param: str(match[param])}) == {wanted["id"]}


def test_filter_by_id(api: httpx.Client) -> None:
    tag = f"id-{uid()}"
    first = create(api, tags=[tag])
    create(api, tags=[tag])
    assert tag_ids(api, tag, id=first["id"]) == {first["id"]}


def test_filter_on_absent_extra_property_matches_nothing(api: httpx.Client) -> None:
    tag = f"absent-{uid()}"
    create(api, tags=[tag], colour="red")
    assert tag_ids(api, tag, colour="blue") == set()
    assert tag_ids(api, tag, never_set_key="x") == set()


def test_status_filter(api: httpx.Client) -> None:
    tag = f"status-{uid()}"
    queued = create(api, tags=[tag])
    active = create_active(api, tags=[tag])
    deactivated = create_active(api, tags=[tag])
    assert api.post(f"/v2/images/{deactivated['id']}/actions/deactivate").status_code == 204
    assert tag_ids(api, tag, status="queued") == {queued["id"]}
    assert tag_ids(api, tag, status="active") == {active["id"]}
    assert tag_ids(api, tag, status="deactivated") == {deactivated["id"]}
    assert tag_ids(api, tag, status="in:queued,active") == {queued["id"], active["id"]}


@pytest.mark.parametrize(("value", "expected"), [("true", {"yes"}), ("false", {"no"})])
def test_protected_filter(api: httpx.Client, value: str, expected: set[str]) -> None:
    tag = f"prot-{uid()}"
    made = {"yes": create(api, tags=[tag], protected=True)["id"],
            "no": create(api, tags=[tag], protected=False)["id"]}
    assert tag_ids(api, tag, protected=value) == {made[k] for k in expected}


@pytest.mark.parametrize("param", ["protected", "os_hidden"])
def test_bad_boolean_filter_is_400(api: httpx.Client, param: str) -> None:
    assert_error(list_images(api, **{param: "maybe"}), 400)


def test_os_hidden_filter(api: httpx.Client) -> None:
    tag = f"hidden-{uid()}"
    hidden = create(api, tags=[tag], os_hidden=True)
    shown = create(api, tags=[tag])
    assert tag_ids(api, tag) == {shown["id"]}  # hidden excluded by default
    assert tag_ids(api, tag, os_hidden="true") == {hidden["id"]}
    assert tag_ids(api, tag, os_hidden="false") == {shown["id"]}
    assert api.get(f"/v2/images/{hidden['id']}").status_code == 200  # still readable by id


def test_owner_filter_for_admin(api: httpx.Client) -> None:
    tag = f"owner-{uid()}"
    owner = f"p-{uid()}"
    mine = create(api, tags=[tag], owner=owner)
    create(api, tags=[tag])
    assert tag_ids(api, tag, owner=owner) == {mine["id"]}
    assert tag_ids(api, tag, owner="admin") != set()


# --- in: -----------------------------------------------------------------------------------------

def test_in_filter_on_id(api: httpx.Client) -> None:
    tag = f"inid-{uid()}"
    a, b, _c = (create(api, tags=[tag]) for _ in range(3))
    assert tag_ids(api, tag, id=f"in:{a['id']},{b['id']}") == {a["id"], b["id"]}


def test_in_filter_on_name_with_quoting(api: httpx.Client) -> None:
    tag = f"inname-{uid()}"
    comma = create(api, tags=[tag], name="alpha,beta")
    plain = create(api, tags=[tag], name="gamma")
    create(api, tags=[tag], name="alpha")
    create(api, tags=[tag], name="beta")
    assert tag_ids(api, tag, name='in:"alpha,beta",gamma') == {comma["id"], plain["id"]}
    assert tag_ids(api, tag, name="in:alpha,beta") == (
        tag_ids(api, tag, name="alpha") | tag_ids(api, tag, name="beta"))
    assert len(tag_ids(api, tag, name="in:alpha,beta")) == 2


@pytest.mark.parametrize(
    ("param", "values", "query"),
    [
        ("disk_format", ["raw", "iso", "qcow2"], "in:raw,iso"),
        ("container_format", ["bare", "ova", "docker"], "in:bare,ova"),
    ],
)
def test_in_filter_on_formats(api: httpx.Client, param: str, values: list[str],
                              query: str) -> None:
    tag = f"infmt-{uid()}"
    made = [create(api, tags=[tag], **{param: value}) for value in values]
    assert tag_ids(api, tag, **{param: query}) == {made[0]["id"], made[1]["id"]}


# --- created_at / updated_at ---------------------------------------------------------------------

@pytest.mark.parametrize("field", ["created_at", "updated_at"])
@pytest.mark.parametrize(
    ("operator", "pivot", "expected"),
    [
        ("eq", "newer", {"newer"}),
        ("neq", "newer", {"older"}),
        ("gt", "newer", set()),
        ("gte", "newer", {"newer"}),
        ("lt", "newer", {"older"}),
        ("lte", "newer", {"older", "newer"}),
        ("gt", "older", {"newer"}),
        ("gte", "older", {"older", "newer"}),
        ("lt", "older", set()),
        ("lte", "older", {"older"}),
        ("eq", "older", {"older"}),
        ("neq", "older", {"newer"}),
    ],
)
def test_time_filters(api: httpx.Client,
                      timed: tuple[str, dict[str, Any], dict[str, Any]], field: str,
                      operator: str, pivot: str, expected: set[str]) -> None:
    tag, older, newer = timed
    images = {"older": older, "newer": newer}
    value = f"{operator}:{images[pivot][field]}"
    assert tag_ids(api, tag, **{field: value}) == {images[k]["id"] for k in expected}


@pytest.mark.parametrize("field", ["created_at", "updated_at"])
def test_time_filter_far_bounds(api: httpx.Client,
                                timed: tuple[str, dict[str, Any], dict[str, Any]],
                                field: str) -> None:
    tag, older, newer = timed
    both = {older["id"], newer["id"]}
    assert tag_ids(api, tag, **{field: "gt:2000-01-01T00:00:00Z"}) == both
    assert tag_ids(api, tag, **{field: "lt:2000-01-01T00:00:00Z"}) == set()
    assert tag_ids(api, tag, **{field: "lt:2999-01-01T00:00:00Z"}) == both


@pytest.mark.parametrize("value", ["gt:notadate", "bogus:2020-01-01T00:00:00Z", "gt:",
                                   "lt:2020-13-45T99:00:00Z"])
@pytest.mark.parametrize("field", ["created_at", "updated_at"])
def test_bad_time_filter_is_400(api: httpx.Client, field: str, value: str) -> None:
    assert_error(list_images(api, **{field: value}), 400)


def test_changes_since_is_400(api: httpx.Client) -> None:
    assert_error(list_images(api, **{"changes-since": "2020-01-01T00:00:00Z"}), 400)


# --- size_min / size_max -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sized(api: httpx.Client) -> tuple[str, dict[int, str], str]:
    tag = f"size-{uid()}"
    made = {size: create_active(api, data=b"s" * size, tags=[tag])["id"]
            for size in (10, 100, 1000)}
    queued = create(api, tags=[tag])["id"]
    return tag, made, queued


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"size_min": 100}, {100, 1000}),
        ({"size_max": 100}, {10, 100}),
        ({"size_min": 50, "size_max": 500}, {100}),
        ({"size_min": 10, "size_max": 10}, {10}),
        ({"size_min": 1001}, set()),
        ({"size_max": 9}, set()),
    ],
    ids=str,
)
def test_size_filters(api: httpx.Client, sized: tuple[str, dict[int, str], str],
                      params: dict[str, int], expected: set[int]) -> None:
    tag, made, _queued = sized
    assert tag_ids(api, tag, **params) == {made[s] for s in expected}


@pytest.mark.parametrize("params", [{"size_min": "abc"}, {"size_max": "1.5"},
                                    {"size_min": "big"}], ids=str)
def test_bad_size_filter_is_400(api: httpx.Client, params: dict[str, str]) -> None:
    assert_error(list_images(api, **params), 400)


# --- tags ----------------------------------------------------------------------------------------

def test_repeated_tag_filter_is_and(api: httpx.Client) -> None:
    tag, x, y = f"and-{uid()}", f"x-{uid()}", f"y-{uid()}"
    only_x = create(api, tags=[tag, x])
    create(api, tags=[tag, y])
    both = create(api, tags=[tag, x, y])
    assert set(ids(api, tag=[tag, x])) == {only_x["id"], both["id"]}
    assert set(ids(api, tag=[x, y, tag])) == {both["id"]}
    assert set(ids(api, tag=[x, f"none-{uid()}"])) == set()


# --- visibility ----------------------------------------------------------------------------------

@pytest.fixture
def visibility_set(api: httpx.Client, member: httpx.Client) -> tuple[str, dict[str, str]]:
    """Admin's public/private/shared/community images and the member's own private/shared."""
    tag = f"vis-{uid()}"
    made = {f"admin-{v}": create(api, tags=[tag], visibility=v)["id"]
            for v in ("public", "private", "shared", "community")}
    made |= {f"own-{v}": create(member, tags=[tag], visibility=v)["id"]
             for v in ("private", "shared")}
    return tag, made


@pytest.mark.parametrize(
    ("visibility", "expected"),
    [
        ("public", {"admin-public"}),
        ("private", {"admin-private", "own-private"}),
        ("shared", {"admin-shared", "own-shared"}),
        ("community", {"admin-community"}),
        ("all", {"admin-public", "admin-private", "admin-shared", "admin-community",
                 "own-private", "own-shared"}),
    ],
)
def test_visibility_filter_for_admin(api: httpx.Client,
                                     visibility_set: tuple[str, dict[str, str]],
                                     visibility: str, expected: set[str]) -> None:
    tag, made = visibility_set
    assert tag_ids(api, tag, visibility=visibility) == {made[k] for k in expected}


@pytest.mark.parametrize(
    ("visibility", "expected"),
    [
        (None, {"admin-public", "own-private", "own-shared"}),
        ("public", {"admin-public"}),
        ("private", {"own-private"}),
        ("shared", {"own-shared"}),
        ("community", {"admin-community"}),
        ("all", {"admin-public", "admin-community", "own-private", "own-shared"}),
    ],
)
def test_visibility_for_non_admin(member: httpx.Client,
                                  visibility_set: tuple[str, dict[str, str]],
                                  visibility: str | None, expected: set[str]) -> None:
    tag, made = visibility_set
    params = {"visibility": visibility} if visibility else {}
    assert tag_ids(member, tag, **params) == {made[k] for k in expected}


def test_non_admin_of_other_project_sees_only_public(
        visibility_set: tuple[str, dict[str, str]],
        client_for: Callable[..., httpx.Client]) -> None:
    tag, made = visibility_set
    stranger = client_for(f"other-{uid()}")
    assert tag_ids(stranger, tag) == {made["admin-public"]}


def test_bad_visibility_is_400(api: httpx.Client) -> None:
    assert_error(list_images(api, visibility="everyone"), 400)


# --- sorting -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sortable(api: httpx.Client) -> tuple[str, list[dict[str, Any]]]:
    """Four active images whose names, formats and sizes all differ."""
    tag = f"sort-{uid()}"
    # Formats without a header of their own, so the bytes are truthfully what they say.
    specs = [("delta", "raw", "bare", 40), ("alpha", "ami", "ovf", 10),
             ("charlie", "aki", "docker", 30), ("bravo", "ari", "ova", 20)]
    images = [create_active(api, data=b"z" * size, tags=[tag], name=name,
                            disk_format=disk, container_format=container)
              for name, disk, container, size in specs]
    return tag, images


def sorted_listing(client: httpx.Client, tag: str, **params: Any) -> list[dict[str, Any]]:
    resp = list_images(client, tag=tag, **params)
    assert resp.status_code == 200, resp.text
    images: list[dict[str, Any]] = resp.json()["images"]
    return images


@pytest.mark.parametrize("key", ["name", "status", "container_format", "disk_format", "size",
                                 "id", "created_at", "updated_at"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_sort_key_and_dir(api: httpx.Client, sortable: tuple[str, list[dict[str, Any]]],
                          key: str, direction: str) -> None:
    tag, images = sortable
    listed = sorted_listing(api, tag, sort_key=key, sort_dir=direction)
    assert {i["id"] for i in listed} == {i["id"] for i in images}
    values = [i[key] for i in listed]
    assert values == sorted(values, reverse=direction == "desc")
    new_style = sorted_listing(api, tag, sort=f"{key}:{direction}")
    assert [i[key] for i in new_style] == values


@pytest.mark.parametrize(("params", "names"), [
    ({"sort_key": "name", "sort_dir": "asc"}, ["alpha", "bravo", "charlie", "delta"]),
    ({"sort_key": "name", "sort_dir": "desc"}, ["delta", "charlie", "bravo", "alpha"]),
    ({"sort": "name:asc"}, ["alpha", "bravo", "charlie", "delta"]),
    ({"sort": "size:desc"}, ["delta", "charlie", "bravo", "alpha"]),
    ({"sort": "status:asc,name:desc"}, ["delta", "charlie", "bravo", "alpha"]),
    ({"sort_key": ["status", "name"], "sort_dir": "asc"}, ["alpha", "bravo", "charlie", "delta"]),
    ({"sort": "disk_format:asc"}, ["charlie", "alpha", "bravo", "delta"]),
    ({"sort_key": "container_format", "sort_dir": "asc"}, ["delta", "charlie", "bravo", "alpha"]),
], ids=str)
def test_sort_orders(api: httpx.Client, sortable: tuple[str, list[dict[str, Any]]],
                     params: dict[str, Any], names: list[str]) -> None:
    tag, _images = sortable
    assert [i["name"] for i in sorted_listing(api, tag, **params)] == names


def test_default_sort_is_created_at_desc(api: httpx.Client,
                                         timed: tuple[str, dict[str, Any], dict[str, Any]]
                                         ) -> None:
    tag, older, newer = timed
    assert ids(api, tag=tag) == [newer["id"], older["id"]]
    assert ids(api, tag=tag, sort_dir="asc") == [older["id"], newer["id"]]


@pytest.mark.parametrize("params", [
    {"sort_key": "bogus"},
    {"sort_key": "owner"},
    {"sort_key": "tags"},
    {"sort_dir": "up"},
    {"sort_key": "name", "sort_dir": "sideways"},
    {"sort": "bogus:asc"},
    {"sort": "name:up"},
    {"sort": "name:asc:desc"},
    {"sort": "name:asc", "sort_key": "name"},
    {"sort": "name:asc", "sort_dir": "asc"},
    {"sort": "name", "sort_key": "size", "sort_dir": "desc"},
], ids=str)
def test_bad_sort_is_400(api: httpx.Client, params: dict[str, str]) -> None:
    assert_error(list_images(api, **params), 400)


# --- limit ---------------------------------------------------------------------------------------

def test_default_limit_is_25(api: httpx.Client) -> None:
    tag = f"lim-{uid()}"
    made = {create(api, tags=[tag])["id"] for _ in range(26)}
    first = list_images(api, tag=tag).json()
    assert len(first["images"]) == 25
    assert "next" in first
    second = api.get(first["next"]).json()
    assert len(second["images"]) == 1
    assert "next" not in second
    assert {i["id"] for i in first["images"] + second["images"]} == made


def test_limit_is_capped_by_api_limit_max(limited: httpx.Client) -> None:
    """`limited` has api_limit_max=3 (and the default limit_param_default=25)."""
    tag = f"cap-{uid()}"
    made = {create(limited, tags=[tag])["id"] for _ in range(5)}
    body = list_images(limited, tag=tag, limit=1000).json()
    assert len(body["images"]) == 3
    assert "next" in body
    assert {i["id"] for i in list_all(limited, tag=tag, limit=50)} == made
    default = list_images(limited, tag=tag).json()  # the default page is capped too
    assert len(default["images"]) == 3


def test_large_limit_is_accepted(api: httpx.Client) -> None:
    tag = f"big-{uid()}"
    made = {create(api, tags=[tag])["id"] for _ in range(2)}
    assert tag_ids(api, tag, limit=5000) == made


@pytest.mark.parametrize("limit", ["-1", "-100", "abc", "1.5", ""])
def test_bad_limit_is_400(api: httpx.Client, limit: str) -> None:
    assert_error(list_images(api, limit=limit), 400)


# --- marker paging -------------------------------------------------------------------------------

def check_paging(client: httpx.Client, tag: str, expected: set[str], **params: Any) -> None:
    whole = [i["id"] for i in list_images(client, tag=tag, limit=1000, **params).json()["images"]]
    assert set(whole) == expected
    pages: list[list[str]] = []
    resp = list_images(client, tag=tag, limit=3, **params)
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        page = [i["id"] for i in body["images"]]
        pages.append(page)
        if "next" not in body:
            break
        assert len(page) == 3
        query = parse_qs(urlsplit(body["next"]).query)
        assert query["marker"] == [page[-1]]
        assert len(pages) < 20
        resp = client.get(body["next"])
    flat = [i for page in pages for i in page]
    assert flat == whole  # every image exactly once, in the same order as one big page
    assert len(flat) == len(set(flat))


def test_paging_default_sort(api: httpx.Client) -> None:
    tag = f"page-{uid()}"
    made = {create(api, tags=[tag], name=f"n{i}")["id"] for i in range(7)}
    check_paging(api, tag, made)


@pytest.mark.parametrize("params", [
    {"sort_key": "name", "sort_dir": "asc"},
    {"sort_key": "name", "sort_dir": "desc"},
    {"sort": "name:asc,created_at:desc"},
    {"sort": "disk_format:desc"},
    {"sort": "id:asc"},
], ids=str)
def test_paging_non_default_sort_with_null_names(api: httpx.Client,
                                                 params: dict[str, str]) -> None:
    tag = f"pagenull-{uid()}"
    made = set()
    for i in range(8):
        body: dict[str, Any] = {"tags": [tag], "disk_format": ["raw", "iso"][i % 2]}
        if i % 3:
            body["name"] = f"name-{i % 4}"  # duplicates and NULLs
        made.add(create(api, **body)["id"])
    check_paging(api, tag, made, **params)


def test_paging_by_size(api: httpx.Client, sortable: tuple[str, list[dict[str, Any]]]
                        ) -> None:
    tag, images = sortable
    check_paging(api, tag, {i["id"] for i in images}, sort="size:asc")


def test_exactly_full_last_page_then_empty_page(api: httpx.Client) -> None:
    tag = f"full-{uid()}"
    made = {create(api, tags=[tag])["id"] for _ in range(3)}
    first = list_images(api, tag=tag, limit=3).json()
    assert {i["id"] for i in first["images"]} == made
    assert "next" in first  # Glance: next present whenever the page was full
    last = api.get(first["next"]).json()
    assert last["images"] == []
    assert "next" not in last


def test_next_link_keeps_filters(api: httpx.Client) -> None:
    tag = f"keep-{uid()}"
    for _ in range(3):
        create(api, tags=[tag], disk_format="iso")
    create(api, tags=[tag], disk_format="raw")
    body = list_images(api, tag=tag, disk_format="iso", limit=2).json()
    query = parse_qs(urlsplit(body["next"]).query)
    assert query["tag"] == [tag]
    assert query["disk_format"] == ["iso"]
    assert query["limit"] == ["2"]
    rest = api.get(body["next"]).json()
    assert len(rest["images"]) == 1
    assert rest["images"][0]["disk_format"] == "iso"


@pytest.mark.parametrize("marker", ["00000000-0000-4000-8000-00000000dead", "not-a-uuid"])
def test_unknown_marker_is_400(api: httpx.Client, marker: str) -> None:
    assert_error(list_images(api, marker=marker), 400)


def test_marker_of_deleted_image_is_400(api: httpx.Client) -> None:
    image = create(api)
    assert api.delete(f"/v2/images/{image['id']}").status_code == 204
    assert_error(list_images(api, marker=image["id"]), 400)


def test_marker_invisible_to_caller_is_400(api: httpx.Client, member: httpx.Client) -> None:
    image = create(api, visibility="private")
    assert list_images(api, marker=image["id"]).status_code == 200
    assert_error(list_images(member, marker=image["id"]), 400)
