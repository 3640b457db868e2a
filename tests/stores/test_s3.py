"""What the conformance suite cannot see of the S3 driver: multipart (parts in parallel, bounded,
aborted on every failure), conditional commits, part sizing, a server dying mid-stream, and
credentials the server rejects; against moto and Swift's s3api."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from glimpse.stores.base import Store
from glimpse.stores.errors import ObjectExists, ObjectNotFound, StoreFull, StoreUnavailable
from glimpse.stores.s3 import S3Driver
from tests.stores import s3_server

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
SMALL = dict(multipart_threshold=5 * MiB, part_size=5 * MiB, parts_in_flight=2)
Factory = Callable[..., S3Driver]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["moto", "swift"])
def endpoint(request: pytest.FixtureRequest) -> s3_server.S3Endpoint:
    if request.param == "moto":
        found: s3_server.S3Endpoint = request.getfixturevalue("moto_endpoint")
        return found
    return s3_server.swift_s3_endpoint(request.getfixturevalue("swift_facts"))


@pytest.fixture
def bucket(endpoint: s3_server.S3Endpoint) -> Any:
    name = s3_server.new_bucket(endpoint)
    yield name
    s3_server.empty_and_delete_bucket(endpoint, name)


@pytest.fixture
async def make_driver(endpoint: s3_server.S3Endpoint, bucket: str) -> AsyncIterator[Factory]:
    drivers: list[S3Driver] = []

    def make(**options: Any) -> S3Driver:
        settings = {**endpoint.driver_options(bucket), **SMALL, **options}
        drivers.append(S3Driver(**settings))
        return drivers[-1]

    yield make
    for driver in drivers:
        await driver.aclose()


async def put(driver: S3Driver, key: str, data: bytes, size_hint: int | None = None,
              piece: int = MiB) -> Any:
    writer = await driver.open_writer(key, size_hint)
    try:
        for start in range(0, len(data), piece):
            await writer.write([data[start:start + piece]])
        return await writer.commit()
    except BaseException:
        await writer.abort()
        raise


async def get(driver: S3Driver, key: str) -> bytes:
    reader = await driver.open_reader(key, 0, None)
    return b"".join([chunk async for chunk in reader.chunks()])


async def test_parts_go_up_in_parallel_within_the_bound(make_driver: Factory) -> None:
    driver = make_driver(parts_in_flight=2)
    s3 = await driver.client()
    second_started = anyio.Event()
    running = {"now": 0, "most": 0}

    async def starting(params: dict[str, Any], **_: Any) -> None:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        if params["PartNumber"] == 2:
            second_started.set()
        if params["PartNumber"] == 1:
            # part 1 waits until part 2 is on its way: only parallel uploads get past this
            with anyio.fail_after(60):
                await second_started.wait()

    def finished(**_: Any) -> None:
        running["now"] -= 1

    s3.meta.events.register("before-parameter-build.s3.UploadPart", starting)
    s3.meta.events.register("after-call.s3.UploadPart", finished)
    data = os.urandom(23 * MiB)
    stored = await put(driver, "par", data)
    assert stored.size == len(data)
    assert running["most"] == 2  # parallel, and never more than parts_in_flight
    assert await get(driver, "par") == data


async def test_abort_leaves_no_multipart_upload(make_driver: Factory,
                                                endpoint: s3_server.S3Endpoint,
                                                bucket: str) -> None:
    driver = make_driver()
    writer = await driver.open_writer("ab", None)
    await writer.write([os.urandom(12 * MiB)])  # past the threshold: parts are going up
    assert s3_server.pending_uploads(endpoint, bucket)
    await writer.abort()
    await writer.abort()
    assert s3_server.pending_uploads(endpoint, bucket) == []
    with pytest.raises(ObjectNotFound):
        await driver.stat("ab")


async def test_a_failure_mid_upload_aborts(make_driver: Factory,
                                                         endpoint: s3_server.S3Endpoint,
                                                         bucket: str) -> None:
    driver = make_driver()
    s3 = await driver.client()

    def failing(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 3:
            raise ConnectionResetError("connection lost while sending part 3")

    s3.meta.events.register("before-parameter-build.s3.UploadPart", failing)
    with pytest.raises(StoreUnavailable, match="part 3"):
        await put(driver, "fail", os.urandom(30 * MiB))
    assert s3_server.pending_uploads(endpoint, bucket) == []
    with pytest.raises(ObjectNotFound):
        await driver.stat("fail")


async def test_a_failed_part_aborts_before_the_caller_does(make_driver: Factory,
                                                           endpoint: s3_server.S3Endpoint,
                                                           bucket: str) -> None:
    driver = make_driver()
    s3 = await driver.client()

    def failing(params: dict[str, Any], **_: Any) -> None:
        raise ConnectionResetError(f"connection lost while sending part {params['PartNumber']}")

    s3.meta.events.register("before-parameter-build.s3.UploadPart", failing)
    writer = await driver.open_writer("fail", None)
    await writer.write([os.urandom(6 * MiB)])  # part 1 fails in the background
    with pytest.raises(StoreUnavailable, match="part 1"):
        await writer.commit()
    assert s3_server.pending_uploads(endpoint, bucket) == []  # before any abort()
    await writer.abort()


async def test_a_multipart_commit_never_replaces(make_driver: Factory,
                                                 endpoint: s3_server.S3Endpoint,
                                                 bucket: str) -> None:
    driver = make_driver()
    first = os.urandom(11 * MiB)
    await put(driver, "once", first)
    with pytest.raises(ObjectExists):
        await put(driver, "once", os.urandom(12 * MiB))
    assert s3_server.pending_uploads(endpoint, bucket) == []
    assert await get(driver, "once") == first


async def test_commit_racing_another_writer(make_driver: Factory,
                                            endpoint: s3_server.S3Endpoint,
                                            bucket: str) -> None:
    """An object appears between the driver's HEAD and its final call: If-None-Match decides.
    Both servers honour it on CompleteMultipartUpload; on PutObject only moto does, Swift 2.30
    answers 501 and the later PUT wins (the race docs/stores.md describes)."""
    driver = make_driver()
    s3 = await driver.client()
    other = endpoint.client()

    def sneak_in(params: dict[str, Any], **_: Any) -> None:
        other.put_object(Bucket=bucket, Key=params["Key"], Body=b"the other writer")

    s3.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload", sneak_in)
    s3.meta.events.register("before-parameter-build.s3.PutObject", sneak_in)
    with pytest.raises(ObjectExists):
        await put(driver, "race-multi", os.urandom(6 * MiB))
    assert await get(driver, "race-multi") == b"the other writer"
    assert s3_server.pending_uploads(endpoint, bucket) == []
    if endpoint.name == "moto":
        with pytest.raises(ObjectExists):
            await put(driver, "race-put", b"mine")
        assert await get(driver, "race-put") == b"the other writer"
        assert driver.conditional_puts
    else:
        await put(driver, "race-put", b"mine")
        assert await get(driver, "race-put") == b"mine"
        assert not driver.conditional_puts  # learnt from the 501


async def test_part_size_follows_the_declared_size(make_driver: Factory) -> None:
    driver = make_driver(max_parts=2)
    data = os.urandom(16 * MiB)
    stored = await put(driver, "two-parts", data, size_hint=len(data))
    assert stored.version is not None and stored.version.endswith("-2")  # 2 parts of 8 MiB
    assert await get(driver, "two-parts") == data


async def test_too_many_parts_is_refused(make_driver: Factory,
                                         endpoint: s3_server.S3Endpoint,
                                         bucket: str) -> None:
    driver = make_driver(max_parts=1000)
    with pytest.raises(StoreFull):  # early: no part could be large enough
        await driver.open_writer("huge", 1000 * 5 * 1024 * MiB + 1)
    assert driver.part_size_for(1024**4) == 1049 * MiB  # 1 TiB in 1,000 parts
    small = make_driver(max_parts=2)
    with pytest.raises(StoreFull):  # size unknown: refused once part 3 would be needed
        await put(small, "unknown", os.urandom(16 * MiB))
    assert s3_server.pending_uploads(endpoint, bucket) == []


async def test_discard_aborts_an_upload_left_by_a_dead_writer(
        make_driver: Factory, endpoint: s3_server.S3Endpoint, bucket: str) -> None:
    driver = make_driver()
    writer = await driver.open_writer("orphan", None)
    await writer.write([os.urandom(12 * MiB)])
    await make_driver().discard("orphan")  # another process's driver, as the reaper's
    assert s3_server.pending_uploads(endpoint, bucket) == []
    await writer.abort()


@pytest.mark.parametrize("endpoint", ["swift"], indirect=True)  # moto accepts any credentials
async def test_wrong_credentials_are_a_clear_error(make_driver: Factory) -> None:
    driver = make_driver(secret_key="not-the-secret")
    with pytest.raises(StoreUnavailable, match="rejected the credentials"):
        await driver.check()
    with pytest.raises(StoreUnavailable, match="rejected the credentials"):
        await driver.open_reader("anything", 0, None)
    with pytest.raises(StoreUnavailable, match="rejected the credentials"):
        await put(driver, "anything", b"data")


async def test_a_missing_bucket_is_a_clear_error(make_driver: Factory) -> None:
    driver = make_driver(bucket="no-such-bucket-here")
    with pytest.raises(StoreUnavailable, match="bucket"):
        await driver.check()


async def test_server_gone_mid_stream(tmp_path: Path) -> None:
    """A moto of its own, killed while a download streams: an error, never a short stream."""
    endpoint = s3_server.start_moto(tmp_path / "moto.log")
    try:
        bucket = s3_server.new_bucket(endpoint)
        driver = S3Driver(**endpoint.driver_options(bucket), max_attempts=1, **SMALL)
        store = Store("doomed", driver)
        data = os.urandom(64 * MiB)
        writer = await store.open_writer("big", len(data))
        for start in range(0, len(data), 4 * MiB):
            await writer.write([data[start:start + 4 * MiB]])
        await writer.commit()
        reader = await store.open_reader("big")
        received = 0

        async def read_all() -> None:
            nonlocal received
            async for chunk in reader.chunks():
                if not received:
                    endpoint.stop()
                received += len(chunk)

        with pytest.raises(StoreUnavailable) as gone:
            await read_all()
        assert received < len(data)
        assert gone.value.store_id == "doomed"
        for call in (store.open_reader("big"), store.stat("big"), store.delete("big")):
            with pytest.raises(StoreUnavailable):
                await call
        await driver.aclose()
    finally:
        endpoint.stop()
