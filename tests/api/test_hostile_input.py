"""Hostile input, class by place: each answer is the exact 4xx with a message saying what is
wrong, and the server serves on afterwards.

Classes: NUL characters (PostgreSQL refuses them in text), unpaired UTF-16 surrogates (no UTF-8
exists for them), integers past their column type, ids that are almost a UUID, JSON nested
without end, too many filters / sort keys / tags / `in:` items, header values that would become
data. Places: create body, patch path and value, property name, tag path, query, headers.
Runs on the registry `GLIMPSE_TEST_DATABASE` names; `scripts/test` runs it on all three.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.helpers import DATA, OCTET, PATCH_21, assert_error, create, create_active, uid
from tests.api.test_errors import PER_IMAGE_CALLS
from tests.servers import Server

JSON = {"Content-Type": "application/json"}
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

#: Text no registry stores: (class, JSON-escaped form, words the message must hold).
BAD_TEXT = [
    ("nul", "a\\u0000b", "NUL character"),
    ("surrogate", "a\\ud800b", "unpaired surrogate"),
    ("low-surrogate", "\\udfff", "unpaired surrogate"),
]


@pytest.fixture(autouse=True)
def still_serves(server: Server) -> Iterator[None]:
    """After every case a new connection is served normally."""
    yield
    resp = httpx.get(f"{server.url}/v2/images", params={"limit": 1}, timeout=30)
    assert resp.status_code == 200, resp.text


def refused(resp: httpx.Response, status: int, *words: str) -> str:
    """Assert a Glance-format error with `status` whose message holds each of `words`."""
    assert_error(resp, status)
    message: str = resp.json()["message"]
    for word in words:
        assert word in message, message
    return message


def post_raw(api: httpx.Client, text: str) -> httpx.Response:
    return api.post("/v2/images", content=text.encode("ascii"), headers=JSON)


def patch_raw(api: httpx.Client, image_id: str, text: str) -> httpx.Response:
    return api.patch(f"/v2/images/{image_id}", content=text.encode("ascii"),
                     headers={"Content-Type": PATCH_21})


@pytest.fixture(scope="module")
def image(api: httpx.Client) -> dict[str, Any]:
    return create(api, name=f"hostile-{uid()}", disk_format="raw", container_format="bare")


# -- text in bodies ----------------------------------------------------------------------------

BODY_PLACES = [
    ("name", '{"name": "%s"}', "'name'"),
    ("property value", '{"os_distro": "%s"}', "'os_distro'"),
    ("extra property value", '{"custom": "%s"}', "'custom'"),
    ("tag", '{"tags": ["ok", "%s"]}', "'tags/1'"),
    ("property name", '{"%s": "x"}', "Invalid name"),
]


@pytest.mark.parametrize(("kind", "bad", "why"), BAD_TEXT, ids=[c[0] for c in BAD_TEXT])
@pytest.mark.parametrize(("place", "template", "where"), BODY_PLACES,
                         ids=[p[0] for p in BODY_PLACES])
def test_bad_text_in_create_body_is_400(api: httpx.Client, kind: str, bad: str, why: str,
                                        place: str, template: str, where: str) -> None:
    refused(post_raw(api, template % bad), 400, where, why)


PATCH_PLACES = [
    ("patch value", '[{"op": "add", "path": "/custom", "value": "%s"}]', "'0/value'"),
    ("patch name", '[{"op": "replace", "path": "/name", "value": "%s"}]', "'0/value'"),
    ("patch path", '[{"op": "add", "path": "/%s", "value": "x"}]', "'0/path'"),
    ("patch tags", '[{"op": "replace", "path": "/tags", "value": ["%s"]}]', "'0/value/0'"),
]


@pytest.mark.parametrize(("kind", "bad", "why"), BAD_TEXT, ids=[c[0] for c in BAD_TEXT])
@pytest.mark.parametrize(("place", "template", "where"), PATCH_PLACES,
                         ids=[p[0] for p in PATCH_PLACES])
def test_bad_text_in_patch_is_400(api: httpx.Client, image: dict[str, Any], kind: str, bad: str,
                                  why: str, place: str, template: str, where: str) -> None:
    refused(patch_raw(api, image["id"], template % bad), 400, where, why)


def test_refused_text_is_escaped_in_plain_text_errors(api: httpx.Client) -> None:
    resp = api.post("/v2/images", content=b'{"\\ud800\\u0000": "x"}',
                    headers={**JSON, "Accept": "text/plain"})
    assert resp.status_code == 400
    assert "\\ud800\\x00" in resp.text, resp.text


def test_bad_text_in_tag_path_is_400(api: httpx.Client, image: dict[str, Any]) -> None:
    for method in ("PUT", "DELETE"):
        resp = api.request(method, f"/v2/images/{image['id']}/tags/a%00b")
        refused(resp, 400, "tag", "NUL character")
    assert "a\x00b" not in api.get(f"/v2/images/{image['id']}").json()["tags"]


def test_unicode_text_is_stored_as_sent(api: httpx.Client) -> None:
    """The other side of the rule: any other Unicode, astral planes included, round-trips."""
    text = "żółw 🐢 \u2028 \ufeff é"
    made = create(api, name=text, custom=text, tags=[text, "🐢"])
    shown = api.get(f"/v2/images/{made['id']}").json()
    assert (shown["name"], shown["custom"], set(shown["tags"])) == (text, text, {text, "🐢"})
    resp = api.put(f"/v2/images/{made['id']}/tags/{'🐢' * 3}")
    assert resp.status_code == 204, resp.text


def test_property_value_as_long_as_a_body_holds_is_stored(api: httpx.Client) -> None:
    """Past MySQL's 64 KiB TEXT, within the 112 KiB body limit: stored whole everywhere."""
    value = "v" * 70_000 + "🐢" * 1000
    made = create(api, custom=value)
    assert api.get(f"/v2/images/{made['id']}").json()["custom"] == value


# -- nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [33, 1000, 50000])
def test_deeply_nested_create_body_is_400(api: httpx.Client, depth: int) -> None:
    refused(post_raw(api, '{"a": ' + "[" * depth + "]" * depth + "}"), 400, "nests deeper")


def test_deeply_nested_patch_value_is_400(api: httpx.Client, image: dict[str, Any]) -> None:
    deep = "[" * 40 + "]" * 40
    resp = patch_raw(api, image["id"], f'[{{"op": "add", "path": "/x", "value": {deep}}}]')
    refused(resp, 400, "nests deeper")


def test_nesting_within_the_cap_reaches_the_schema(api: httpx.Client) -> None:
    refused(post_raw(api, '{"a": ' + "[" * 30 + "]" * 30 + "}"), 400, "does not match schema")


# -- integers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("min_ram", INT32_MAX + 1), ("min_disk", INT32_MAX + 1), ("min_ram", 2**70),
    ("min_disk", 10**400),
])
def test_integer_past_its_column_is_400(api: httpx.Client, image: dict[str, Any], field: str,
                                        value: int) -> None:
    body = json.dumps({field: value})
    refused(post_raw(api, body), 400, f"'{field}'", "greater than the maximum")
    resp = patch_raw(api, image["id"], json.dumps([{"op": "replace", "path": f"/{field}",
                                                   "value": value}]))
    refused(resp, 400, f"'{field}'", "greater than the maximum")


def test_largest_integers_are_stored(api: httpx.Client) -> None:
    made = create(api, min_ram=INT32_MAX, min_disk=INT32_MAX)
    assert (made["min_ram"], made["min_disk"]) == (INT32_MAX, INT32_MAX)
    found = api.get("/v2/images", params={"min_ram": INT32_MAX, "id": made["id"]}).json()
    assert [i["id"] for i in found["images"]] == [made["id"]]


@pytest.mark.parametrize(("param", "value", "words"), [
    ("size_min", str(INT64_MAX + 1), "size_min param must be"),
    ("size_max", "99999999999999999999", "size_max param must be"),
    ("min_ram", str(INT32_MAX + 1), "min_ram param must be"),
    ("min_disk", "9" * 5000, "min_disk param must be"),
    ("size", str(INT64_MAX + 1), "size param must be"),
    ("virtual_size", "-1", "virtual_size param must be >= 0"),
    ("min_ram", "\u0663", "min_ram param must be an integer"),  # ARABIC-INDIC DIGIT THREE
    ("size_min", "1_000", "size_min param must be an integer"),
    ("limit", " 5", "limit param must be an integer"),
])
def test_integer_query_past_its_column_is_400(api: httpx.Client, param: str, value: str,
                                              words: str) -> None:
    refused(api.get("/v2/images", params={param: value}), 400, words)


def test_largest_integer_queries_are_answered(api: httpx.Client) -> None:
    for param in ("size_min", "size_max", "size", "virtual_size"):
        assert api.get("/v2/images", params={param: INT64_MAX}).status_code == 200
    for param in ("min_ram", "min_disk"):
        assert api.get("/v2/images", params={param: INT32_MAX}).status_code == 200


@pytest.mark.parametrize("value", [b"\xb2", b"\xd9\xa3", str(INT64_MAX + 1).encode(), b"1e3"])
def test_image_size_header_must_be_ascii_digits_in_range(api: httpx.Client,
                                                         value: bytes) -> None:
    made = create(api, disk_format="raw", container_format="bare")
    resp = api.put(f"/v2/images/{made['id']}/file", content=DATA,
                   headers={**OCTET, "x-openstack-image-size": value})  # type: ignore[dict-item]
    refused(resp, 400, "x-openstack-image-size must be")
    assert api.get(f"/v2/images/{made['id']}").json()["status"] == "queued"


@pytest.mark.parametrize(("header", "status"), [
    ("bytes=" + "9" * 30 + "-", 416),
    ("bytes=0-" + "9" * 5000, 206),
    ("bytes=-" + "9" * 5000, 206),
    ("bytes=\xb2-", 400),
])
def test_range_with_huge_or_foreign_digits(api: httpx.Client, header: str, status: int) -> None:
    made = create_active(api)
    resp = api.get(f"/v2/images/{made['id']}/file",
                   headers={"Range": header.encode("latin-1")})  # type: ignore[dict-item]
    assert resp.status_code == status, resp.text
    if status == 206:
        assert resp.content == DATA


# -- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", [
    "{}\n", "{}\r\n", " {}", "{}\x00", "{{{}}}", "urn:uuid:{}", "{}0",
])
def test_create_id_must_be_exactly_a_uuid(api: httpx.Client, bad_id: str) -> None:
    image_id = str(uuid.uuid4())
    refused(api.post("/v2/images", json={"id": bad_id.format(image_id)}), 400, "'id'")
    assert api.get(f"/v2/images/{image_id}").status_code == 404


def test_upper_case_uuid_is_an_id(api: httpx.Client) -> None:
    image_id = str(uuid.uuid4()).upper()
    made = create(api, id=image_id)
    assert made["id"] == image_id
    assert api.get(f"/v2/images/{image_id}").status_code == 200


@pytest.mark.parametrize("suffix", ["%0A", "%00", "%20", "x"])
@pytest.mark.parametrize(("method", "path", "kwargs"), PER_IMAGE_CALLS)
def test_almost_an_id_in_the_path_is_404(api: httpx.Client, image: dict[str, Any], suffix: str,
                                         method: str, path: str,
                                         kwargs: dict[str, Any]) -> None:
    resp = api.request(method, f"/v2/images/{image['id']}{suffix}{path}", **kwargs)
    refused(resp, 404, "No image found")


# -- queries ----------------------------------------------------------------------------------

QUERY_TEXT = [
    ("name", "a\x00"), ("os_distro", "\x00"), ("tag", "t\x00"), ("marker", "\x00"),
    ("name", "in:a,b\x00"), ("id", "in:\x00"), ("sort", "name\x00"), ("visibility", "\x00"),
    ("created_at", "gt:\x00"), ("prop\x00", "x"),
]


@pytest.mark.parametrize(("key", "value"), QUERY_TEXT)
def test_nul_in_query_is_400(api: httpx.Client, key: str, value: str) -> None:
    refused(api.get("/v2/images", params={key: value}), 400, "NUL character")


@pytest.mark.parametrize(("params", "words"), [
    ([("p", "v")] * 301, "Too many query parameters"),
    ([(f"p{i}", "v") for i in range(129)], "Too many filters"),
    ([("tag", f"t{i}") for i in range(129)], "Too many tag filters"),
    ([("id", "in:" + ",".join(str(i) for i in range(101)))], "Too many items"),
    ([("sort", ",".join(["name"] * 9))], "Too many sort keys"),
    ([("sort_key", "name")] * 9, "Too many sort keys"),
    ([("sort_key", "name"), *[("sort_dir", "asc")] * 9], "Too many sort keys"),
    ([("k" * 256, "v")], "longer than 255"),
    ([("marker", "not-a-uuid")], "Invalid marker"),
    ([("marker", str(uuid.uuid4()) + "\n")], "Invalid marker"),
    ([("changes-since", "2020-01-01")], "changes-since"),
    ([("created_at", "gt:9999-12-31T23:59:59-10:00")], "Invalid time"),
    ([("updated_at", "lt:0001-01-01T00:00:00+10:00")], "Invalid time"),
])
def test_oversized_or_malformed_query_is_400(api: httpx.Client, params: list[tuple[str, str]],
                                             words: str) -> None:
    refused(api.get("/v2/images", params=params), 400, words)


def test_queries_at_the_caps_are_answered(api: httpx.Client) -> None:
    made = create(api, tags=["t0"], p0="v")
    at_caps: list[list[tuple[str, str]]] = [
        [("p0", "v"), *[(f"p{i}", "v") for i in range(1, 128)]],
        [("tag", f"t{i}") for i in range(128)],
        [("id", "in:" + ",".join([made["id"], *(str(uuid.uuid4()) for _ in range(99))]))],
        [("sort", "name,status,container_format,disk_format,size,id,created_at,updated_at")],
        [("name", "é" * 300), ("k" * 255, "v")],
    ]
    for params in at_caps:
        resp = api.get("/v2/images", params=params)
        assert resp.status_code == 200, resp.text
    found = api.get("/v2/images", params=at_caps[2]).json()["images"]
    assert [i["id"] for i in found] == [made["id"]]


# -- headers that become data ------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Project-Id", "X-Tenant-Id", "X-User-Id", "X-Roles"])
@pytest.mark.parametrize(("kind", "value", "words"), [
    ("latin-1", b"caf\xe9", "only printable ASCII"),
    ("tab", b"a\tb", "only printable ASCII"),
    ("utf-8", "żółw".encode(), "only printable ASCII"),
    ("long", b"p" * 256, "longer than 255"),
])
def test_identity_header_must_be_printable_ascii(server: Server, header: str, kind: str,
                                                 value: bytes, words: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"Accept": "application/json"}) as client:
        for method, path in (("POST", "/v2/images"), ("GET", "/v2/images")):
            resp = client.request(method, path, json={} if method == "POST" else None,
                                  headers={header: value})  # type: ignore[dict-item]
            refused(resp, 400, header, words)
            assert resp.headers["x-openstack-request-id"].startswith("req-")


@pytest.mark.parametrize("value", [b"a\x7f", b"a\x01", b"a\x1fb"])
def test_control_characters_in_headers_are_400(server: Server, value: bytes) -> None:
    """Refused by the HTTP parser itself, in the same JSON error format as every error."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        resp = client.get("/v2/images", headers={"X-Project-Id": value})  # type: ignore[dict-item]
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "400 Bad Request", resp.text
        assert resp.json()["message"] == "Invalid HTTP request received."
        assert client.get("/versions").status_code == 200  # a fresh connection is served


def test_printable_identity_headers_are_used(server: Server) -> None:
    project = f"p-{uid()} with spaces"
    headers = {"X-Project-Id": project, "X-Roles": "member, reader", "X-User-Id": "u 1"}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as client:
        made = client.post("/v2/images", json={})
        assert made.status_code == 201, made.text
        assert made.json()["owner"] == project


def test_foreign_request_id_is_not_adopted(api: httpx.Client) -> None:
    resp = api.get("/v2/images", params={"limit": 1},
                   headers={"X-Openstack-Request-Id": b"r\xe9q"})  # type: ignore[dict-item]
    assert resp.status_code == 200
    assert resp.headers["x-openstack-request-id"].startswith("req-")


def test_text_differing_only_in_case_or_astral_characters_is_distinct(
        api: httpx.Client) -> None:
    """Tags and property names compare as the bytes they are, on every database (a
    case-insensitive collation would make "A" and "a" one primary key)."""
    made = create(api, tags=["A", "a", "🐢", "🐍"], Key="1", key="2")
    shown = api.get(f"/v2/images/{made['id']}").json()
    assert set(shown["tags"]) == {"A", "a", "🐢", "🐍"}
    assert (shown["Key"], shown["key"]) == ("1", "2")
    for tag in ("B", "b", "🦀", "🦞"):
        resp = api.put(f"/v2/images/{made['id']}/tags/{tag}")
        assert resp.status_code == 204, resp.text
    found = api.get("/v2/images", params={"tag": "🐍", "id": made["id"]}).json()["images"]
    assert len(found) == 1
    assert len(api.get(f"/v2/images/{made['id']}").json()["tags"]) == 8



# -- properties against the real server ---------------------------------------------------------

ON_SERVER = settings(derandomize=True, max_examples=40, deadline=None, database=None)
ANY_TEXT = st.text(st.characters(codec=None), max_size=10)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), ANY_TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(ANY_TEXT, inner, max_size=3)),
    max_leaves=8)
IMAGE_KEYS = st.sampled_from(["name", "id", "tags", "min_ram", "min_disk", "visibility",
                              "os_distro", "kernel_id", "custom", "protected"])
BODIES = st.dictionaries(st.one_of(IMAGE_KEYS, ANY_TEXT), JSON_VALUES, max_size=4)


@ON_SERVER
@given(BODIES)
def test_any_create_body_is_answered_without_5xx(api: httpx.Client, body: dict[str, Any]) -> None:
    resp = api.post("/v2/images", content=json.dumps(body).encode(), headers=JSON)
    assert resp.status_code in (201, 400, 403, 409, 413), resp.text
    if resp.status_code == 201:
        assert api.get(httpx.URL(resp.headers["location"]).path).status_code == 200


@ON_SERVER
@given(st.lists(st.tuples(st.one_of(st.sampled_from(["name", "tag", "sort", "marker", "limit",
                                                     "size_min", "min_ram", "created_at",
                                                     "id", "visibility"]), ANY_TEXT),
                          st.one_of(ANY_TEXT, st.integers(-(2**70), 2**70).map(str))),
                max_size=6))
def test_any_query_is_answered_without_5xx(api: httpx.Client,
                                           params: list[tuple[str, str]]) -> None:
    # Surrogates cannot travel in a URL; they are sent as the UTF-8 replacement bytes would be.
    safe = [(k.encode("utf-8", "replace").decode(), v.encode("utf-8", "replace").decode())
            for k, v in params]
    resp = api.get("/v2/images", params=safe)
    assert resp.status_code in (200, 400), resp.text


@ON_SERVER
@given(st.sampled_from(["X-Project-Id", "X-Tenant-Id", "X-User-Id", "X-Roles"]),
       # Every byte the HTTP parser lets through (it refuses other controls itself).
       st.lists(st.sampled_from([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)]),
                max_size=40).map(bytes))
def test_any_identity_header_is_answered_without_5xx(server: Server, header: str,
                                                     value: bytes) -> None:
    resp = httpx.post(f"{server.url}/v2/images", json={}, timeout=30,
                      headers={header: value, "Accept": "application/json"})  # type: ignore[dict-item]
    assert resp.status_code in (201, 400, 403), resp.text


@pytest.mark.parametrize("escape", ["%FF", "%ED%A0%80", "%C3"])
def test_tags_that_are_not_utf8_are_400(api: httpx.Client, escape: str) -> None:
    image = api.post("/v2/images", json={}).json()
    resp = api.put(f"/v2/images/{image['id']}/tags/a{escape}b")
    assert resp.status_code == 400, resp.text
    assert "UTF-8" in resp.json()["message"]
    assert api.put(f"/v2/images/{image['id']}/tags/%E2%82%ACuro").status_code == 204
    assert api.get(f"/v2/images/{image['id']}").json()["tags"] == ["\u20acuro"]
