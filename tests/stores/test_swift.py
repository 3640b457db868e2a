"""What the conformance suite cannot see of the Swift driver: SLO layout, failures, tokens.

Large-object tests use small thresholds (1 MiB) so that a few MiB make several segments. The
failure tests run against a Swift of their own (`own_swift`), since they kill parts of it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from glimpse.stores.base import Store
from glimpse.stores.errors import ObjectExists, ObjectNotFound, StoreFull, StoreUnavailable
from glimpse.stores.swift import TOKEN_MARGIN, SwiftDriver, SwiftOptions, SwiftWriter
from tests.stores import swift_server

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
SMALL = {"large_object_size": MiB, "segment_size": MiB, "max_object_size": 64 * MiB}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_driver(swift_drivers: list[SwiftDriver]) -> Callable[..., SwiftDriver]:
    """Drivers on fresh containers, closed after the test."""
    def make(facts: dict[str, Any], **options: Any) -> SwiftDriver:
        made = swift_server.driver(facts, **options)
        swift_drivers.append(made)
        return made

    return make


@pytest.fixture
def driver(swift_facts: dict[str, Any], make_driver: Callable[..., SwiftDriver]) -> SwiftDriver:
    return make_driver(swift_facts, **SMALL)


@pytest.fixture(scope="module")
def spare_swift(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A Swift of this module's own, for tests that disturb it (it recovers)."""
    with swift_server.running_swift(tmp_path_factory.mktemp("spare-swift")) as facts:
        yield facts


@pytest.fixture
def own_swift(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Swift for one test, which may kill it."""
    with swift_server.running_swift(tmp_path / "swift") as facts:
        yield facts


async def account(driver: SwiftDriver, method: str, path: str, **kw: Any) -> httpx.Response:
    """A request straight to Swift with the driver's own credentials."""
    return await driver.request(method, path, **kw)


async def segments(driver: SwiftDriver, key: str) -> list[dict[str, Any]]:
    response = await account(driver, "GET", f"/{driver.segment_container}",
                             params={"format": "json", "prefix": f"{key}/"})
    if response.status_code == 404:
        return []
    assert response.status_code == 200
    listing: list[dict[str, Any]] = response.json()
    return listing


async def put(store: Store, key: str, data: bytes, size_hint: int | None = None,
              piece: int = 300_000) -> None:
    writer = await store.open_writer(key, size_hint)
    try:
        for start in range(0, len(data), piece):
            await writer.write([data[start:start + piece]])
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise


async def get(store: Store, key: str, offset: int = 0, length: int | None = None) -> bytes:
    reader = await store.open_reader(key, offset, length)
    return b"".join([chunk async for chunk in reader.chunks()])


async def test_unknown_size_above_the_threshold_becomes_an_slo(driver: SwiftDriver) -> None:
    store = Store("swift", driver)
    data = os.urandom(3 * MiB + 5)
    await put(store, "slo", data)
    parts = await segments(driver, "slo")
    assert [p["bytes"] for p in parts] == [MiB, MiB, MiB, 5]
    head = await account(driver, "HEAD", driver.object_path("slo"))
    assert head.headers.get("x-static-large-object") == "True"
    assert await get(store, "slo") == data
    # a range across a segment boundary
    assert await get(store, "slo", MiB - 10, 20) == data[MiB - 10:MiB + 10]
    assert (await store.stat("slo")).size == len(data)


async def test_small_objects_are_plain(driver: SwiftDriver) -> None:
    store = Store("swift", driver)
    for key, hint in (("known", 1000), ("unknown", None)):
        await put(store, key, b"p" * 1000, hint)
        head = await account(driver, "HEAD", driver.object_path(key))
        assert head.status_code == 200
        assert "x-static-large-object" not in head.headers
        assert await segments(driver, key) == []


async def test_declared_size_sets_the_segment_size(swift_facts: dict[str, Any],
                                                  make_driver: Callable[..., SwiftDriver]) -> None:
    driver = make_driver(swift_facts, **{**SMALL, "max_segments": 2})
    store = Store("swift", driver)
    data = os.urandom(3 * MiB)
    await put(store, "sized", data, size_hint=len(data))
    assert [p["bytes"] for p in await segments(driver, "sized")] == [3 * MiB // 2] * 2
    assert await get(store, "sized") == data


async def test_a_size_that_cannot_fit_is_refused_before_any_byte(
        swift_facts: dict[str, Any], make_driver: Callable[..., SwiftDriver]) -> None:
    driver = make_driver(swift_facts, **{**SMALL, "max_segments": 2})
    with pytest.raises(StoreFull):
        await Store("swift", driver).open_writer("huge", 11 * 1024**3)


def test_segments_of_unknown_total_grow_only_when_the_cap_needs_it() -> None:
    options = SwiftOptions(auth_url="http://127.0.0.1:9/auth/v1.0", user="u", key="k",
                           segment_size=64 * MiB, max_segments=1000, max_object_size=1024**4)
    writer = SwiftWriter(SwiftDriver(options), "k", None)
    sizes: list[int] = []
    for index in range(options.max_segments):  # each segment filled to its limit
        writer._segment_names = ["s"] * index
        writer._closed = sum(sizes)
        sizes.append(writer._next_limit())
    assert sum(sizes) >= options.max_object_size
    assert set(sizes[:800]) == {64 * MiB}
    assert max(sizes) <= 5 * 1024**3


async def test_outgrowing_the_segment_limit_is_store_full(
        swift_facts: dict[str, Any], make_driver: Callable[..., SwiftDriver]) -> None:
    driver = make_driver(swift_facts, large_object_size=MiB, segment_size=MiB,
                                 max_object_size=2 * MiB, max_segments=2)
    store = Store("swift", driver)
    writer = await store.open_writer("grows")

    async def grow() -> None:
        for _ in range(3):
            await writer.write([b"g" * MiB, b"!"])

    with pytest.raises(StoreFull):
        await grow()
    await writer.abort()
    assert await segments(driver, "grows") == []


async def landed(writer: SwiftWriter) -> None:
    """Wait until the segments whose bytes are all written are stored (white box)."""
    for task in writer._finishing:
        await task


async def test_abort_removes_the_segments(driver: SwiftDriver) -> None:
    store = Store("swift", driver)
    writer = await driver.open_writer("aborted", None)
    await writer.write([os.urandom(MiB)] * 3)
    await landed(writer)
    assert len(await segments(driver, "aborted")) == 3  # written, not visible
    with pytest.raises(ObjectNotFound):
        await store.open_reader("aborted")
    await writer.abort()
    assert await segments(driver, "aborted") == []
    with pytest.raises(ObjectNotFound):
        await store.stat("aborted")


async def test_delete_removes_the_segments(driver: SwiftDriver) -> None:
    store = Store("swift", driver)
    await put(store, "deleted", os.urandom(2 * MiB + 1))
    assert len(await segments(driver, "deleted")) == 3
    await store.delete("deleted")
    assert await segments(driver, "deleted") == []
    with pytest.raises(ObjectNotFound):
        await store.delete("deleted")


async def test_discard_removes_what_a_dead_writer_left(driver: SwiftDriver) -> None:
    store = Store("swift", driver)
    writer = await driver.open_writer("dead", None)
    await writer.write([os.urandom(MiB)] * 3 + [b"x"])
    await landed(writer)
    assert len(await segments(driver, "dead")) == 3  # and one still open
    await store.discard("dead")  # the writer is forgotten, as when its process died
    assert await segments(driver, "dead") == []


async def test_an_slo_commit_never_replaces_an_object(driver: SwiftDriver) -> None:
    store = Store("swift", driver)
    await put(store, "taken", b"first")
    writer = await store.open_writer("taken")
    await writer.write([os.urandom(MiB)] * 2)
    with pytest.raises(ObjectExists):
        await writer.commit()
    await writer.abort()
    assert await segments(driver, "taken") == []
    assert await get(store, "taken") == b"first"


async def test_bad_credentials_are_store_unavailable(
        swift_facts: dict[str, Any], make_driver: Callable[..., SwiftDriver]) -> None:
    driver = make_driver({**swift_facts, "key": "wrong"})
    with pytest.raises(StoreUnavailable, match="refused"):
        await Store("swift", driver).stat("anything")


async def test_check_proves_the_configuration(
        swift_facts: dict[str, Any], make_driver: Callable[..., SwiftDriver]) -> None:
    good = make_driver(swift_facts)
    await good.check()  # creates the container
    assert (await account(good, "HEAD", f"/{good.options.container}")).status_code == 204
    missing = make_driver(swift_facts, create_container=False)
    with pytest.raises(StoreUnavailable, match="404"):
        await missing.check()
    with pytest.raises(StoreUnavailable, match="refused"):
        await make_driver({**swift_facts, "key": "wrong"}).check()


def _proxy_workers(facts: dict[str, Any]) -> list[psutil.Process]:
    return psutil.Process(facts["pids"]["proxy"]).children()


@pytest.mark.parametrize("retries", [3, 0])
async def test_a_broken_download_resumes_where_it_stopped(
        spare_swift: dict[str, Any], retries: int, make_driver: Callable[..., SwiftDriver]) -> None:
    driver = make_driver(spare_swift, **SMALL, read_retries=retries)
    store = Store("swift", driver)
    data = os.urandom(48 * MiB)
    await put(store, "resumed", data, piece=MiB)
    reader = await store.open_reader("resumed")
    received = bytearray()

    async def receive() -> None:
        async for chunk in reader.chunks():
            if not received:
                for worker in _proxy_workers(spare_swift):  # the parent starts new ones
                    worker.kill()
            received.extend(chunk)

    if retries:
        await receive()
        assert bytes(received) == data
    else:  # the same break without resuming: proof that the break happened
        with pytest.raises(StoreUnavailable):
            await receive()


async def test_a_token_swift_forgot_is_renewed(
        spare_swift: dict[str, Any], make_driver: Callable[..., SwiftDriver]) -> None:
    driver = make_driver(spare_swift)
    store = Store("swift", driver)
    await put(store, "before", b"1")
    with socket.create_connection(("127.0.0.1", spare_swift["ports"]["memcached"])) as cache:
        cache.sendall(b"flush_all\r\n")  # tempauth keeps its tokens there
        assert cache.recv(100).startswith(b"OK")
    assert await get(store, "before") == b"1"
    await put(store, "after", b"2")
    assert await get(store, "after") == b"2"


async def test_swift_going_away_mid_download_is_store_unavailable(
        own_swift: dict[str, Any], make_driver: Callable[..., SwiftDriver]) -> None:
    driver = make_driver(own_swift, **SMALL)
    store = Store("swift", driver)
    data = os.urandom(48 * MiB)
    await put(store, "lost", data, piece=MiB)
    reader = await store.open_reader("lost")
    received = bytearray()

    async def receive() -> None:
        async for chunk in reader.chunks():
            if not received:
                os.killpg(own_swift["pids"]["proxy"], signal.SIGKILL)
            received.extend(chunk)

    with pytest.raises(StoreUnavailable) as lost:
        await receive()
    assert len(received) < len(data)
    assert lost.value.store_id == "swift"


async def test_swift_going_away_mid_upload_is_store_unavailable(
        own_swift: dict[str, Any], make_driver: Callable[..., SwiftDriver]) -> None:
    driver = make_driver(own_swift, **SMALL)
    store = Store("swift", driver)
    writer = await store.open_writer("cut")
    await writer.write([os.urandom(MiB)] * 2)
    os.killpg(own_swift["pids"]["proxy"], signal.SIGKILL)

    async def finish() -> None:
        for _ in range(16):
            await writer.write([os.urandom(MiB)])
        await writer.commit()

    with pytest.raises(StoreUnavailable):
        await finish()
    with pytest.raises(StoreUnavailable):
        await writer.abort()  # the segments cannot be removed while Swift is away


# -- Keystone v3 (auth_version "3") against the Keystone-authenticated proxy ------------------


@pytest.fixture
def make_keystone_driver(swift_keystone_facts: dict[str, Any],
                         swift_drivers: list[SwiftDriver]) -> Callable[..., SwiftDriver]:
    """Keystone v3 drivers on fresh containers (options override the account's), closed after
    the test."""
    def make(**options: Any) -> SwiftDriver:
        made = swift_server.keystone_driver(swift_keystone_facts, **options)
        swift_drivers.append(made)
        return made

    return make


async def keystone_token(ks: dict[str, Any]) -> str:
    """A token for the test account, straight from Keystone."""
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": ks["user"], "password": ks["key"],
            "domain": {"name": ks["user_domain_name"]}}}},
        "scope": {"project": {"id": ks["project_id"]}}}}
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(f"{ks['auth_url']}/auth/tokens", json=body)
    assert response.status_code == 201, response.text
    return response.headers["x-subject-token"]


async def test_keystone_login_finds_the_endpoint_in_the_catalog(
        swift_keystone_facts: dict[str, Any],
        make_keystone_driver: Callable[..., SwiftDriver]) -> None:
    ks = swift_keystone_facts
    driver = make_keystone_driver()
    store = Store("swift-keystone", driver)
    await store.check()
    await put(store, "where", b"in the project's account")
    # The object is in the account of the project (AUTH_<project id>), through the Keystone
    # proxy: the URL Keystone's catalog gives for this region, with $(project_id)s filled in.
    async with httpx.AsyncClient(timeout=60) as client:
        direct = await client.get(f"{ks['storage_url']}/{driver.options.container}/where",
                                  headers={"X-Auth-Token": await keystone_token(ks)})
        assert direct.status_code == 200
        assert direct.content == b"in the project's account"
        # and that proxy wants a Keystone token: tempauth's are nothing to it
        anonymous = await client.get(f"{ks['storage_url']}/{driver.options.container}/where")
        assert anonymous.status_code == 401
    internal = make_keystone_driver(interface="internal", container=driver.options.container)
    assert await get(Store("swift-keystone", internal), "where") == b"in the project's account"
    nowhere = make_keystone_driver(region_name="nowhere")
    with pytest.raises(StoreUnavailable, match="no object-store endpoint") as missing:
        await Store("swift-keystone", nowhere).check()
    assert missing.value.store_id == "swift-keystone"


async def test_keystone_bad_password_fails_the_check(
        swift_keystone_facts: dict[str, Any],
        make_keystone_driver: Callable[..., SwiftDriver]) -> None:
    ks = swift_keystone_facts
    for wrong in ({"key": "wrong"}, {"project_name": "no-such-project"},
                  {"user_domain_name": "no-such-domain"}):
        store = Store("swift-keystone", make_keystone_driver(**wrong))
        with pytest.raises(StoreUnavailable, match="refused") as refused:
            await store.check()
        assert refused.value.store_id == "swift-keystone"
        assert ks["auth_url"] in str(refused.value)
        assert repr(ks["user"]) in str(refused.value)
        with pytest.raises(StoreUnavailable, match="refused"):
            await store.stat("anything")  # and so is every later call, not a crash


async def test_keystone_unreachable_is_store_unavailable(
        make_keystone_driver: Callable[..., SwiftDriver]) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = Store("swift-keystone", make_keystone_driver(auth_url=f"http://127.0.0.1:{port}/v3"))
    with pytest.raises(StoreUnavailable, match="failed") as failed:
        await store.check()
    assert failed.value.store_id == "swift-keystone"


async def test_a_revoked_keystone_token_is_renewed(
        swift_keystone_facts: dict[str, Any],
        make_keystone_driver: Callable[..., SwiftDriver]) -> None:
    ks = swift_keystone_facts
    driver = make_keystone_driver()
    store = Store("swift-keystone", driver)
    await put(store, "before", b"1")
    assert driver._session is not None
    old = driver._session.token
    async with httpx.AsyncClient(timeout=60) as client:
        revoked = await client.delete(f"{ks['auth_url']}/auth/tokens",
                                      headers={"X-Auth-Token": old, "X-Subject-Token": old})
        assert revoked.status_code == 204
        # the proxy refuses it now (it caches no tokens): the driver meets a real 401
        refused = await client.head(f"{ks['storage_url']}/{driver.options.container}",
                                    headers={"X-Auth-Token": old})
        assert refused.status_code == 401
    # a small object's body is in memory: its PUT meets the 401, renews and is sent again
    await put(store, "after", b"2")
    assert driver._session.token != old
    assert await get(store, "after") == b"2"
    assert await get(store, "before") == b"1"


async def test_a_keystone_token_is_renewed_before_it_expires(
        swift_keystone_facts: dict[str, Any],
        make_keystone_driver: Callable[..., SwiftDriver]) -> None:
    ks = swift_keystone_facts
    driver = make_keystone_driver()
    store = Store("swift-keystone", driver)
    await put(store, "kept", b"k")
    session = driver._session
    assert session is not None
    # The driver's deadline is the token's own expiry, as Keystone states it.
    async with httpx.AsyncClient(timeout=60) as client:
        shown = await client.get(f"{ks['auth_url']}/auth/tokens", headers={
            "X-Auth-Token": session.token, "X-Subject-Token": session.token})
    assert shown.status_code == 200
    expires_at = datetime.fromisoformat(shown.json()["token"]["expires_at"].replace("Z",
                                                                                    "+00:00"))
    left = expires_at.timestamp() - time.time()
    assert abs((session.expires - time.monotonic()) - left) < 30
    # Within TOKEN_MARGIN of that deadline, the next call logs in again first (no 401 needed:
    # the old token still works, and the proxy would take it).
    session.expires = time.monotonic() + TOKEN_MARGIN - 1
    assert await get(store, "kept") == b"k"
    assert driver._session is not None and driver._session is not session
    assert driver._session.token != session.token
    assert driver._session.expires - time.monotonic() > TOKEN_MARGIN


async def test_a_keystone_that_never_answers_times_out(
        make_keystone_driver: Callable[..., SwiftDriver]) -> None:
    with socket.socket() as silent:  # takes connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        driver = make_keystone_driver(auth_url=f"http://127.0.0.1:{port}/v3", timeout=1.0)
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="failed"):
            await Store("swift-keystone", driver).check()
    assert time.monotonic() - began < 30
