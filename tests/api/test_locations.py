"""Glance's location APIs against real servers, with image bytes on a loopback HTTP server.

The legacy PATCH of `/locations` (behind `show_multiple_locations`) and the API 2.17
`POST/GET /v2/images/{id}/locations` with its `location_import` task, as Tempest checks them
(`ImageLocationsTest`, `ImageLocationsAdminTest`, `BaseLocationImport`), plus what Glimpse adds:
OSSN-0065 restrictions, the location quota, downloads from and deletes of HTTP locations, and
the HTTP store's refusal of private addresses.

Servers: `multi` has a filesystem store `local` and an HTTP store `web` that may reach loopback,
`show_multiple_locations` on and a quota of 3 locations; `nohash` is the same with
`do_secure_hash` off; `strict` has an HTTP store on the default policy (no private networks);
`single` has only the default filesystem store, with `show_multiple_locations` on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from glimpse.registry.tables import deletions
from tests.api.helpers import DATA, assert_error, create_raw, patch, show, uid, upload
from tests.http_source import Source, serving
from tests.servers import Server, database_for, start_server

#: Bytes at the HTTP locations: not a multiple of any chunk size.
BYTES = bytes(range(256)) * 300 + b"tail"
MD5 = hashlib.md5(BYTES).hexdigest()
SHA256 = hashlib.sha256(BYTES).hexdigest()
SHA512 = hashlib.sha512(BYTES).hexdigest()


def _config(folder: Path, http: str, fs: bool = True) -> Path:
    config = folder / "glimpse.toml"
    text_ = ""
    if fs:
        text_ += (f'default_store = "local"\n\n[stores.local]\ndriver = "filesystem"\n'
                  f'weight = 100\npath = "{folder / "local"}"\n\n')
    text_ += f'[stores.web]\ndriver = "http"\nweight = 10\n{http}\n'
    config.write_text(text_)
    return config


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with serving() as src:
        yield src


@pytest.fixture(scope="module")
def multi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("locations")
    server = start_server(folder / "data",
                          config=_config(folder, "allow_private_networks = true"),
                          show_multiple_locations="true", image_location_quota=3)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def multi(multi_server: Server, connect: Callable[..., httpx.Client]) -> httpx.Client:
    return connect(multi_server.url)


@pytest.fixture(scope="module")
def nohash(tmp_path_factory: pytest.TempPathFactory,
           connect: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("nohash")
    server = start_server(folder / "data",
                          config=_config(folder, "allow_private_networks = true"),
                          do_secure_hash="false")
    yield connect(server.url)
    server.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory,
           connect: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("strict")
    server = start_server(folder / "data", config=_config(folder, "", fs=False),
                          show_multiple_locations="true")
    yield connect(server.url)
    server.stop()


@pytest.fixture(scope="module")
def single_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("single") / "data",
                          show_multiple_locations="true", show_image_direct_url="true")
    yield server
    server.stop()


def as_(client: httpx.Client, project: str, roles: str = "member") -> dict[str, str]:
    """Headers of a caller of `project` with `roles` (no-auth mode)."""
    return {"X-Project-Id": project, "X-Roles": roles}


def loc(url: str, metadata: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"url": url, "metadata": {} if metadata is None else metadata, **extra}


def add(client: httpx.Client, image_id: str, value: Any, path: str = "/locations/-",
        **headers: str) -> httpx.Response:
    return patch(client, image_id, [{"op": "add", "path": path, "value": value}], **headers)


def replace(client: httpx.Client, image_id: str, value: Any) -> httpx.Response:
    return patch(client, image_id, [{"op": "replace", "path": "/locations", "value": value}])


def post_location(client: httpx.Client, image_id: str, url: str,
                  validation_data: dict[str, str] | None = None, *,
                  headers: dict[str, str] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"url": url}
    if validation_data is not None:
        body["validation_data"] = validation_data
    return client.post(f"/v2/images/{image_id}/locations", json=body, headers=headers)


def tasks_of(client: httpx.Client, image_id: str, **headers: str) -> list[dict[str, Any]]:
    resp = client.get(f"/v2/images/{image_id}/tasks", headers=headers)
    assert resp.status_code == 200, resp.text
    tasks: list[dict[str, Any]] = resp.json()["tasks"]
    return tasks


def wait_tasks(client: httpx.Client, image_id: str, status: str, known: tuple[str, ...] = (),
               timeout: float = 30) -> list[dict[str, Any]]:
    """Wait until every task of the image is finished; insist the one not in `known` ended
    `status`. (Tasks made in the same second are in no particular order, as in Glance.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = tasks_of(client, image_id)
        if len(tasks) > len(known) and all(t["status"] in ("success", "failure") for t in tasks):
            [new] = [t for t in tasks if t["id"] not in known]
            assert new["status"] == status, new
            return tasks
        time.sleep(0.05)
    raise AssertionError(f"tasks of {image_id} did not finish: {tasks_of(client, image_id)}")


def http_image(client: httpx.Client, source: Source, **validation: str) -> dict[str, Any]:
    """An image made active by the legacy add of one HTTP location (Tempest's helper)."""
    image = create_raw(client)
    url = source.add(f"img-{uid()}", BYTES)
    value = loc(url, validation_data=validation) if validation else loc(url)
    resp = add(client, image["id"], value)
    assert resp.status_code == 200, resp.text
    return show(client, image["id"])


# -- the legacy PATCH of /locations ---------------------------------------------------------------


def test_locations_are_hidden_and_unchangeable_by_default(api: httpx.Client,
                                                          source: Source) -> None:
    image = create_raw(api)
    assert "locations" not in image and "direct_url" not in image
    refused = add(api, image["id"], loc(source.add(f"x-{uid()}", BYTES)))
    assert_error(refused, 403)
    assert "locations" in refused.json()["message"]
    assert_error(replace(api, image["id"], []), 403)
    assert upload(api, image["id"]).status_code == 204
    shown = show(api, image["id"])
    assert "locations" not in shown and "direct_url" not in shown
    assert_error(patch(api, image["id"], [{"op": "remove", "path": "/locations/0"}]), 403)


def test_location_after_upload_is_the_file_url(single_server: Server,
                                               connect: Callable[..., httpx.Client]) -> None:
    client = connect(single_server.url)
    image = create_raw(client)
    assert image["status"] == "queued" and image["locations"] == []
    assert "direct_url" not in image
    assert upload(client, image["id"]).status_code == 204
    shown = show(client, image["id"])
    assert len(shown["locations"]) == 1, shown["locations"]
    location = shown["locations"][0]
    assert location["metadata"] == {}  # one store: no "store" in the metadata
    assert shown["direct_url"] == location["url"]
    images = (single_server.data_dir / "images").resolve()
    assert location["url"].startswith(f"file://{images}/"), location["url"]
    assert Path(location["url"].removeprefix("file://")).read_bytes() == DATA


def test_several_stores_name_theirs_in_the_metadata(multi: httpx.Client,
                                                    multi_server: Server) -> None:
    image = create_raw(multi)
    assert image["locations"] == []
    assert upload(multi, image["id"]).status_code == 204
    [location] = show(multi, image["id"])["locations"]
    assert location["metadata"] == {"store": "local"}
    local = (multi_server.data_dir.parent / "local").resolve()
    assert location["url"].startswith(f"file://{local}/"), location["url"]
    assert Path(location["url"].removeprefix("file://")).read_bytes() == DATA


def test_set_location_makes_a_queued_image_active(multi: httpx.Client, source: Source) -> None:
    image = create_raw(multi)
    url = source.add(f"img-{uid()}", BYTES)
    resp = add(multi, image["id"], loc(url))
    assert resp.status_code == 200, resp.text
    shown = show(multi, image["id"])
    assert shown["status"] == "active"
    assert shown["size"] == len(BYTES)  # from the HEAD
    assert (shown["checksum"], shown["os_hash_algo"], shown["os_hash_value"]) == (None,) * 3
    assert shown["locations"] == [{"url": url, "metadata": {"store": "web"}}]
    assert shown["stores"] == "web"
    assert ("HEAD", f"/{url.rsplit('/', 1)[1]}") in source.requests

    second = add(multi, image["id"], loc(f"{url}#new", {"a": "b"}))
    assert second.status_code == 200, second.text
    assert show(multi, image["id"])["locations"] == [
        {"url": url, "metadata": {"store": "web"}},
        {"url": f"{url}#new", "metadata": {"a": "b", "store": "web"}}]
    # the same place twice: 400
    assert_error(add(multi, image["id"], loc(url)), 400)


def test_set_location_at_a_position(multi: httpx.Client, source: Source) -> None:
    image = http_image(multi, source)
    url = image["locations"][0]["url"]
    assert add(multi, image["id"], loc(f"{url}#first"), "/locations/0").status_code == 200
    assert [x["url"] for x in show(multi, image["id"])["locations"]] == [f"{url}#first", url]
    assert_error(add(multi, image["id"], loc(f"{url}#far"), "/locations/9"), 400)
    assert_error(add(multi, image["id"], loc(f"{url}#bad"), "/locations/x"), 400)


def test_replace_location(multi: httpx.Client, source: Source) -> None:
    image = http_image(multi, source)
    url = image["locations"][0]["url"]
    assert add(multi, image["id"], loc(f"{url}#new")).status_code == 200
    original = show(multi, image["id"])["locations"]
    assert len(original) == 2

    same = replace(multi, image["id"], original)
    assert same.status_code == 200, same.text
    original[0]["metadata"]["date"] = "2015-10-15"
    changed = replace(multi, image["id"], original)
    assert changed.status_code == 200, changed.text
    # removing one through replace, or swapping a URL: 400
    assert_error(replace(multi, image["id"], [original[0]]), 400)
    swapped = [original[0], {"metadata": original[1]["metadata"], "url": f"{url}#new3"}]
    assert_error(replace(multi, image["id"], swapped), 400)
    assert_error(replace(multi, image["id"], []), 403)
    after = show(multi, image["id"])
    assert after["locations"] == original
    assert after["status"] == "active"


def test_replace_on_a_queued_image_adds(multi: httpx.Client, source: Source) -> None:
    image = create_raw(multi)
    url = source.add(f"img-{uid()}", BYTES)
    resp = replace(multi, image["id"], [loc(url)])
    assert resp.status_code == 200, resp.text
    shown = show(multi, image["id"])
    assert shown["status"] == "active" and shown["size"] == len(BYTES)
    assert [x["url"] for x in shown["locations"]] == [url]


@pytest.mark.parametrize("url", ["gopher://info.cern.ch", "ftp://127.0.0.1/x", "file:///etc/passwd",
                                 "http://user:secret@127.0.0.1/x", ""])
def test_set_location_bad_url(multi: httpx.Client, url: str) -> None:
    image = create_raw(multi)
    assert image["locations"] == []
    refused = add(multi, image["id"], loc(url, {"foo": "bar"}))
    assert_error(refused, 400)
    assert "secret" not in refused.text
    assert show(multi, image["id"])["status"] == "queued"


def test_set_location_with_no_data_there(multi: httpx.Client, source: Source) -> None:
    image = create_raw(multi)
    assert_error(add(multi, image["id"], loc(source.url(f"missing-{uid()}"))), 400)
    assert show(multi, image["id"])["status"] == "queued"


def test_set_location_malformed(multi: httpx.Client, source: Source) -> None:
    image = create_raw(multi)
    url = source.add(f"img-{uid()}", BYTES)
    value: Any
    for value in ({"url": url}, {"metadata": {}}, [], {"url": url, "metadata": [], },
                  {"url": url, "metadata": {}, "extra": 1},
                  {"url": url, "metadata": {}, "validation_data": {"checksum": "xyz"}},
                  {"url": url, "metadata": {}, "validation_data": {"os_hash_algo": "sha512"}},
                  # taken by a queued image, the value must have its algorithm's length
                  {"url": url, "metadata": {}, "validation_data": {
                      "os_hash_algo": "sha256", "os_hash_value": "ab" * 64}},
                  {"url": url, "metadata": {}, "validation_data": {
                      "os_hash_algo": "sha512", "os_hash_value": "ab" * 65}},
                  {"url": url, "metadata": {}, "validation_data": {
                      "os_hash_algo": "sha123", "os_hash_value": "ab" * 64}},
                  {"url": url, "metadata": {"store": "nowhere"}}):
        assert_error(add(multi, image["id"], value), 400)
    assert_error(add(multi, image["id"], loc(url), "/locations"), 400)
    assert show(multi, image["id"])["status"] == "queued"


def test_set_location_with_hash(multi: httpx.Client, source: Source) -> None:
    image = http_image(multi, source, checksum="1" * 32, os_hash_value="deadbeef" * 16,
                       os_hash_algo="sha512")
    assert image["status"] == "active"
    assert image["checksum"] == "1" * 32
    assert (image["os_hash_algo"], image["os_hash_value"]) == ("sha512", "deadbeef" * 16)
    assert len(image["locations"]) == 1
    assert "validation_data" not in image["locations"][0]


def test_set_location_with_hash_second_matching(multi: httpx.Client, source: Source) -> None:
    image = http_image(multi, source, checksum="1" * 32, os_hash_value="deadbeef" * 16,
                       os_hash_algo="sha512")
    same = {"checksum": image["checksum"], "os_hash_value": image["os_hash_value"],
            "os_hash_algo": image["os_hash_algo"]}
    url = image["locations"][0]["url"]
    resp = add(multi, image["id"], loc(f"{url}#new", validation_data=same))
    assert resp.status_code == 200, resp.text
    shown = show(multi, image["id"])
    assert len(shown["locations"]) == 2
    assert {k: shown[k] for k in same} == same
    assert all("validation_data" not in x for x in shown["locations"])


def test_set_location_with_hash_not_matching(multi: httpx.Client, source: Source) -> None:
    image = http_image(multi, source, checksum="1" * 32, os_hash_value="deadbeef" * 16,
                       os_hash_algo="sha512")
    same = {"checksum": image["checksum"], "os_hash_value": image["os_hash_value"],
            "os_hash_algo": image["os_hash_algo"]}
    # Tempest's values: sha256 with a value of sha512's length is a mismatch too (409, not 400)
    other = {"checksum": "2" * 32, "os_hash_value": "beefdead" * 16, "os_hash_algo": "sha256"}
    url = image["locations"][0]["url"]
    for name, value in other.items():
        data = {**same, name: value}
        assert_error(add(multi, image["id"], loc(f"{url}#new", validation_data=data)), 409)
    data = {**same, "os_hash_algo": "sha256", "os_hash_value": "beefdead" * 8}
    assert_error(add(multi, image["id"], loc(f"{url}#new", validation_data=data)), 409)
    assert_error(add(multi, image["id"], loc(f"{url}#new", validation_data=other)), 409)
    shown = show(multi, image["id"])
    assert len(shown["locations"]) == 1
    assert {k: shown[k] for k in same} == same


def test_delete_locations(multi: httpx.Client, source: Source) -> None:
    project = f"proj-{uid()}"
    owner = as_(multi, project)
    image = create_raw(multi, owner=project)
    url = source.add(f"img-{uid()}", BYTES)
    assert add(multi, image["id"], loc(url), **owner).status_code == 200
    assert add(multi, image["id"], loc(f"{url}#new"), **owner).status_code == 200
    remove = [{"op": "remove", "path": "/locations/0"}]
    # the owner's member may add locations but only admins remove them
    assert_error(patch(multi, image["id"], remove, **owner), 403)
    assert len(show(multi, image["id"])["locations"]) == 2
    assert_error(patch(multi, image["id"], [{"op": "remove", "path": "/locations/5"}]), 400)
    done = patch(multi, image["id"], remove)
    assert done.status_code == 200, done.text
    shown = show(multi, image["id"])
    assert [x["url"] for x in shown["locations"]] == [f"{url}#new"]
    assert_error(patch(multi, image["id"], remove), 403)
    assert len(show(multi, image["id"])["locations"]) == 1
    # the data is someone else's: nobody asked the HTTP server to delete it
    assert not [r for r in source.requests if r[0] == "DELETE"]


def test_location_quota(multi: httpx.Client, source: Source) -> None:
    image = http_image(multi, source)
    url = image["locations"][0]["url"]
    for n in (2, 3):
        assert add(multi, image["id"], loc(f"{url}#{n}")).status_code == 200
    assert_error(add(multi, image["id"], loc(f"{url}#4")), 413)
    assert len(show(multi, image["id"])["locations"]) == 3


def test_download_reads_the_http_location(multi: httpx.Client, source: Source) -> None:
    image = http_image(multi, source)
    name = image["locations"][0]["url"].rsplit("/", 1)[1]
    before = source.gets_of(name)
    got = multi.get(f"/v2/images/{image['id']}/file")
    assert got.status_code == 200, got.text
    assert got.content == BYTES
    assert source.gets_of(name) == before + 1
    ranged = multi.get(f"/v2/images/{image['id']}/file", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == BYTES[10:20]


def _deletions(server: Server) -> list[tuple[str, str]]:
    url = database_for(server.data_dir) or f"sqlite:///{server.data_dir.resolve() / 'glimpse.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(deletions.c.store, deletions.c.key)).all()
            return [(r[0], r[1]) for r in rows]
    finally:
        engine.dispose()


def test_deleting_an_http_image_leaves_its_data(multi: httpx.Client, multi_server: Server,
                                               source: Source) -> None:
    image = http_image(multi, source)
    url = image["locations"][0]["url"]
    gone = multi.delete(f"/v2/images/{image['id']}")
    assert gone.status_code == 204, gone.text
    assert_error(multi.get(f"/v2/images/{image['id']}"), 404)
    assert httpx.get(url).content == BYTES
    assert not [r for r in source.requests if r[0] == "DELETE"]
    # a job for a read-only store would fail for ever: none was recorded
    assert [d for d in _deletions(multi_server) if d[0] == "web"] == []


def test_private_addresses_are_refused_by_default(strict: httpx.Client, source: Source) -> None:
    url = source.add(f"img-{uid()}", BYTES)
    image = create_raw(strict)
    refused = add(strict, image["id"], loc(url))
    assert_error(refused, 400)
    assert "loopback" in refused.json()["message"]
    assert_error(post_location(strict, image["id"], url), 400)
    assert show(strict, image["id"])["status"] == "queued"
    assert not source.gets_of(url.rsplit("/", 1)[1])


# -- API 2.17 -------------------------------------------------------------------------------------


def test_add_location_validation_data_is_checked_at_once(multi: httpx.Client,
                                                         source: Source) -> None:
    image = create_raw(multi)
    url = source.add(f"img-{uid()}", BYTES)
    for data in ({"os_hash_algo": "sha512", "os_hash_value": "dbc9e0f80d131e64b94913a7b40bb5"},
                 {"os_hash_value": SHA512},
                 {"os_hash_algo": "sha123", "os_hash_value": SHA512},
                 {"os_hash_algo": "sha512", "os_hash_value": SHA256},
                 {"os_hash_algo": "sha512", "os_hash_value": "Z" * 128},
                 {"os_hash_algo": "sha512"}):
        assert_error(post_location(multi, image["id"], url, data), 400)
    for body in ({}, {"url": url, "other": 1}, {"url": 7}, {"url": "gopher://x"},
                 {"url": url, "validation_data": {"checksum": MD5}}):
        assert_error(multi.post(f"/v2/images/{image['id']}/locations", json=body), 400)
    assert show(multi, image["id"])["status"] == "queued"
    assert tasks_of(multi, image["id"]) == []


def test_add_location_with_matching_hash(multi: httpx.Client, source: Source) -> None:
    project = f"proj-{uid()}"
    owner = as_(multi, project)
    image = create_raw(multi, owner=project, visibility="private")
    url = source.add(f"img-{uid()}", BYTES)
    resp = post_location(multi, image["id"], url,
                         {"os_hash_algo": "sha256", "os_hash_value": SHA256}, headers=owner)
    assert resp.status_code == 202, resp.text
    [task] = wait_tasks(multi, image["id"], "success")
    shown = show(multi, image["id"])
    assert shown["status"] == "active"
    assert (shown["checksum"], shown["os_hash_algo"], shown["os_hash_value"]) == (
        MD5, "sha256", SHA256)
    assert shown["size"] == len(BYTES)
    assert shown["stores"] == "web"
    assert task["type"] == "location_import"
    assert task["request_id"] == resp.headers["x-openstack-request-id"]
    assert task["image_id"] == image["id"] and task["owner"] == project
    assert task["result"] == {"image_id": image["id"]}
    assert multi.get(f"/v2/images/{image['id']}/file", headers=owner).content == BYTES
    # once not queued: 409
    again = post_location(multi, image["id"], f"{url}#again", headers=owner)
    assert_error(again, 409)


def test_add_location_with_a_wrong_hash_fails_its_task(multi: httpx.Client,
                                                       source: Source) -> None:
    image = create_raw(multi)
    url = source.add(f"img-{uid()}", BYTES)
    resp = post_location(multi, image["id"], url,
                         {"os_hash_algo": "sha512", "os_hash_value": "beefdead" * 16})
    assert resp.status_code == 202, resp.text
    [task] = wait_tasks(multi, image["id"], "failure")
    assert "does not match" in task["message"]
    shown = show(multi, image["id"])
    assert shown["status"] == "queued"
    assert (shown["checksum"], shown["os_hash_algo"], shown["os_hash_value"]) == (None,) * 3
    assert shown["stores"] == "web"  # the failed location is kept, as Glance does
    assert multi.get(f"/v2/images/{image['id']}/file").status_code == 204
    # another try with the right hashes succeeds
    assert post_location(multi, image["id"], url,
                         {"os_hash_algo": "sha512", "os_hash_value": SHA512}).status_code == 202
    tasks = wait_tasks(multi, image["id"], "success", known=(task["id"],))
    assert sorted(t["status"] for t in tasks) == ["failure", "success"]
    shown = show(multi, image["id"])
    assert (shown["status"], shown["os_hash_value"]) == ("active", SHA512)
    assert [x["url"] for x in shown["locations"]] == [url]


def test_add_location_without_validation_data_hashes(multi: httpx.Client,
                                                     source: Source) -> None:
    image = create_raw(multi)
    url = source.add(f"img-{uid()}", BYTES)
    assert post_location(multi, image["id"], url).status_code == 202
    tasks = wait_tasks(multi, image["id"], "success")
    assert len(tasks) == 1
    shown = show(multi, image["id"])
    assert (shown["status"], shown["checksum"], shown["os_hash_algo"],
            shown["os_hash_value"]) == ("active", MD5, "sha512", SHA512)
    assert multi.get(f"/v2/images/{image['id']}/file").content == BYTES


def test_add_location_needs_a_queued_image(multi: httpx.Client, source: Source) -> None:
    active = create_raw(multi)
    assert upload(multi, active["id"]).status_code == 204
    url = source.add(f"img-{uid()}", BYTES)
    assert_error(post_location(multi, active["id"], url), 409)
    assert_error(post_location(multi, f"{uid()}-nope", url), 404)


def test_add_location_policy(multi: httpx.Client, source: Source) -> None:
    project = f"proj-{uid()}"
    image = create_raw(multi, owner=project, visibility="shared")
    url = source.add(f"img-{uid()}", BYTES)
    # another project's member does not see the image; a reader of the owner may not add
    stranger, reader = as_(multi, f"p-{uid()}"), as_(multi, project, "reader")
    assert_error(post_location(multi, image["id"], url, headers=stranger), 404)
    assert_error(post_location(multi, image["id"], url, headers=reader), 403)
    # a service (here with the reader role the image's visibility needs) may
    service = as_(multi, project, "reader,service")
    assert post_location(multi, image["id"], url, headers=service).status_code == 202
    wait_tasks(multi, image["id"], "success")


def test_get_locations(multi: httpx.Client, source: Source) -> None:
    project = f"proj-{uid()}"
    owner = as_(multi, project)
    image = create_raw(multi, owner=project)
    url = source.add(f"img-{uid()}", BYTES)
    assert post_location(multi, image["id"], url, headers=owner).status_code == 202
    wait_tasks(multi, image["id"], "success")
    assert_error(multi.get(f"/v2/images/{image['id']}/locations", headers=owner), 403)
    expected = [{"url": url, "metadata": {"store": "web"}}]
    assert_error(multi.get(f"/v2/images/{image['id']}/locations",
                           headers=as_(multi, project, "reader")), 403)
    for headers in ({}, as_(multi, project, "reader,service")):
        got = multi.get(f"/v2/images/{image['id']}/locations", headers=headers)
        assert got.status_code == 200, got.text
        assert got.json() == expected
    assert_error(multi.get(f"/v2/images/{uid()}-nope/locations"), 404)


def test_add_location_without_secure_hash(nohash: httpx.Client, source: Source) -> None:
    image = create_raw(nohash)
    url = source.add(f"img-{uid()}", BYTES)
    resp = post_location(nohash, image["id"], url,
                         {"os_hash_algo": "sha256", "os_hash_value": SHA256})
    assert resp.status_code == 202, resp.text
    shown = show(nohash, image["id"])  # active at once: nothing to wait for
    assert shown["status"] == "active" and shown["size"] == len(BYTES)
    assert (shown["checksum"], shown["os_hash_algo"], shown["os_hash_value"]) == (
        None, "sha256", SHA256)
    [task] = tasks_of(nohash, image["id"])
    assert task["status"] == "success"
    assert task["request_id"] == resp.headers["x-openstack-request-id"]

    bare = create_raw(nohash)
    assert post_location(nohash, bare["id"], url).status_code == 202
    shown = show(nohash, bare["id"])
    assert shown["status"] == "active" and shown["size"] == len(BYTES)
    assert (shown["checksum"], shown["os_hash_algo"], shown["os_hash_value"]) == (None,) * 3
    assert [t["status"] for t in tasks_of(nohash, bare["id"])] == ["success"]
    assert nohash.get(f"/v2/images/{bare['id']}/file").content == BYTES
    # locations stay hidden on this server (show_multiple_locations is off)
    assert "locations" not in shown


# -- the tasks API -------------------------------------------------------------------------------


def test_tasks_api_is_for_admins(multi: httpx.Client, source: Source) -> None:
    project = f"proj-{uid()}"
    owner = as_(multi, project)
    image = create_raw(multi, owner=project)
    url = source.add(f"img-{uid()}", BYTES)
    assert post_location(multi, image["id"], url, headers=owner).status_code == 202
    [task] = wait_tasks(multi, image["id"], "success")
    # the image's tasks: whoever sees the image; others: 404
    assert tasks_of(multi, image["id"], **owner) == [task]
    assert_error(multi.get(f"/v2/images/{image['id']}/tasks", headers=as_(multi, "other")), 404)
    # the tasks API: admins only
    assert_error(multi.get("/v2/tasks", headers=owner), 403)
    assert_error(multi.get(f"/v2/tasks/{task['id']}", headers=owner), 403)
    listed = multi.get("/v2/tasks", params={"limit": 1000})
    assert listed.status_code == 200, listed.text
    assert task["id"] in [t["id"] for t in listed.json()["tasks"]]
    shown = multi.get(f"/v2/tasks/{task['id']}")
    assert shown.status_code == 200, shown.text
    assert shown.json() == task
    assert task["self"] == f"/v2/tasks/{task['id']}"
    assert_error(multi.get(f"/v2/tasks/{uid()}-nope"), 404)
    assert_error(multi.get("/v2/tasks", params={"limit": "x"}), 400)
    assert_error(multi.get("/v2/tasks", params={"marker": f"{uid()}-nope"}), 404)


def test_tasks_pages(multi: httpx.Client, source: Source) -> None:
    made = []
    for _ in range(3):
        image = create_raw(multi)
        assert post_location(multi, image["id"], source.add(f"img-{uid()}", BYTES)
                             ).status_code == 202
        made.append(wait_tasks(multi, image["id"], "success")[0]["id"])
    seen: list[str] = []
    page = multi.get("/v2/tasks", params={"limit": 2}).json()
    for _ in range(100):
        assert len(page["tasks"]) <= 2
        seen += [t["id"] for t in page["tasks"]]
        if "next" not in page:
            break
        page = multi.get(page["next"]).json()
    assert len(seen) == len(set(seen))
    assert set(made) <= set(seen)
    listed = multi.get("/v2/tasks", params={"limit": 1000}).json()["tasks"]
    assert [t["id"] for t in listed] == seen
    created = [t["created_at"] for t in listed]
    assert created == sorted(created, reverse=True)  # newest first
