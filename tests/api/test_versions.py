"""Versions document and version prefixes (facts 1.1)."""

from __future__ import annotations

import httpx
import pytest

from tests.servers import Server

# No image cache (2.14/2.16/2.18) and no multistore (2.8, 2.10-2.13): CURRENT is 2.17.
EXPECTED_IDS = ["v2.17", "v2.15", "v2.9", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2",
                "v2.1", "v2.0"]


def check_versions_body(body: dict[str, object], server: Server) -> None:
    versions = body["versions"]
    assert isinstance(versions, list)
    for entry in versions:
        assert {"id", "status", "links"} <= set(entry), entry
        assert entry["links"] == [{"rel": "self", "href": f"{server.url}/v2/"}], entry
    assert [v["id"] for v in versions] == EXPECTED_IDS
    statuses = {v["id"]: v["status"] for v in versions}
    assert statuses.pop("v2.17") == "CURRENT"
    assert set(statuses.values()) == {"SUPPORTED"}


def test_root_is_multiple_choices(api: httpx.Client, server: Server) -> None:
    resp = api.get("/")
    assert resp.status_code == 300
    assert resp.headers["content-type"].startswith("application/json")
    check_versions_body(resp.json(), server)


def test_versions_is_ok_with_same_body(api: httpx.Client, server: Server) -> None:
    resp = api.get("/versions")
    assert resp.status_code == 200
    check_versions_body(resp.json(), server)
    assert resp.json() == api.get("/").json()


@pytest.mark.parametrize("path", ["/v1/", "/v1/images", "/v3/images", "/v1.1/images", "/v10/"])
def test_unknown_version_prefix_gets_versions(api: httpx.Client, server: Server,
                                              path: str) -> None:
    resp = api.get(path)
    assert resp.status_code == 300
    check_versions_body(resp.json(), server)


@pytest.mark.parametrize("prefix", ["/v2", "/v2.0", "/v2.1", "/v2.9", "/v2.15", "/v2.17"])
def test_version_prefixes_map_to_v2(api: httpx.Client, prefix: str) -> None:
    resp = api.get(f"{prefix}/images", params={"limit": 1})
    assert resp.status_code == 200, resp.text
    assert resp.json()["schema"] == "/v2/schemas/images"
    schema = api.get(f"{prefix}/schemas/image")
    assert schema.status_code == 200
    assert schema.json()["name"] == "image"
