"""The store contract (see `glimpse.stores.base`), checked for every driver."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

import anyio
import pytest

from glimpse.stores.base import Capabilities, Store
from glimpse.stores.errors import (
    InvalidKey,
    InvalidRange,
    ObjectExists,
    ObjectNotFound,
    Unsupported,
    WriteDenied,
)
from glimpse.stores.slabs import SlabPool

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def put(store: Store, key: str, *chunks: bytes) -> None:
    writer = await store.open_writer(key)
    try:
        for chunk in chunks:
            await writer.write([chunk])
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise


async def get(store: Store, key: str, offset: int = 0, length: int | None = None) -> bytes:
    reader = await store.open_reader(key, offset, length)
    return b"".join([chunk async for chunk in reader.chunks()])


async def test_round_trip(store: Store) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    await put(store, "img-1", data[:1000], data[1000:])
    assert await get(store, "img-1") == data
    reader = await store.open_reader("img-1")
    assert reader.size == len(data)
    await reader.aclose()


async def test_vectored_write_keeps_order(store: Store) -> None:
    parts = [os.urandom(n) for n in (1, 0, 70_000, 3, 1 << 20, 5)]
    writer = await store.open_writer("vec")
    await writer.write(parts)
    await writer.write(parts[::-1])
    await writer.commit()
    assert await get(store, "vec") == b"".join(parts) + b"".join(parts[::-1])


async def test_slab_chunks(store: Store) -> None:
    """Chunks as a large request body arrives: memoryviews of slabs, each slab refilled for a
    later chunk as soon as the writer has let go of it (a driver that holds chunks, as Swift
    does small objects, keeps its slabs from being refilled)."""
    size = 1024 * 1024
    pool = SlabPool(size=size, keep=2)
    parts = [os.urandom(size) for _ in range(11)] + [os.urandom(size - 7)]
    writer = await store.open_writer("slabs")
    for at in range(0, len(parts), 2):
        batch = []
        for part in parts[at:at + 2]:
            view = memoryview(pool.take())[:len(part)]
            view[:] = part
            batch.append(view)
        await writer.write(batch)
        del batch, view
    await writer.commit()
    assert await get(store, "slabs") == b"".join(parts)


async def test_empty_object(store: Store) -> None:
    await put(store, "empty")
    assert await get(store, "empty") == b""


async def test_ranges(store: Store) -> None:
    data = bytes(range(256)) * 40
    await put(store, "r", data)
    assert await get(store, "r", 10, 20) == data[10:30]
    assert await get(store, "r", len(data) - 5) == data[-5:]
    assert await get(store, "r", 100, 10**9) == data[100:]
    with pytest.raises(InvalidRange):
        await store.open_reader("r", len(data))


async def test_not_visible_before_commit(store: Store) -> None:
    writer = await store.open_writer("pending")
    await writer.write([b"half"])
    with pytest.raises(ObjectNotFound):
        await store.open_reader("pending")
    await writer.commit()
    assert await get(store, "pending") == b"half"


async def test_abort_leaves_nothing_and_is_idempotent(store: Store, tmp_path: object) -> None:
    writer = await store.open_writer("gone")
    await writer.write([b"x" * 1000])
    await writer.abort()
    await writer.abort()
    with pytest.raises(ObjectNotFound):
        await store.open_reader("gone")
    await put(store, "gone", b"again")  # the key is free again
    assert await get(store, "gone") == b"again"


async def test_abort_after_commit_keeps_object(store: Store) -> None:
    writer = await store.open_writer("kept")
    await writer.write([b"data"])
    await writer.commit()
    await writer.abort()
    assert await get(store, "kept") == b"data"


async def test_failed_write_aborts_cleanly(store: Store) -> None:
    class Boom(Exception):
        pass

    async def failing_write() -> None:
        writer = await store.open_writer("boom")
        try:
            await writer.write([b"partial"])
            raise Boom
        except BaseException:
            await writer.abort()
            raise

    with pytest.raises(Boom):
        await failing_write()
    with pytest.raises(ObjectNotFound):
        await store.open_reader("boom")


async def test_not_found(store: Store) -> None:
    with pytest.raises(ObjectNotFound):
        await store.open_reader("missing")
    with pytest.raises(ObjectNotFound):
        await store.delete("missing")


async def test_delete(store: Store) -> None:
    await put(store, "d", b"1")
    await store.delete("d")
    with pytest.raises(ObjectNotFound):
        await store.open_reader("d")


async def test_discard_removes_partial_and_committed(store: Store) -> None:
    writer = await store.open_writer("orphan")
    await writer.write([b"left behind by a dead process"])
    await store.discard("orphan")  # as the reaper does, without the writer
    await store.discard("orphan")
    await put(store, "orphan", b"fresh")
    await store.discard("orphan")
    with pytest.raises(ObjectNotFound):
        await store.open_reader("orphan")


@pytest.mark.parametrize("key", ["../escape", "a/b", "/abs", ".hidden", "", "a" * 201, "a..b",
                                 "sp ace", "nul\x00"])
async def test_invalid_keys(store: Store, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.open_writer(key)
    with pytest.raises(InvalidKey):
        await store.open_reader(key)
    with pytest.raises(InvalidKey):
        await store.discard(key)


async def test_concurrent_writers_to_distinct_keys(store: Store) -> None:
    payloads = {f"c{i}": os.urandom(100_000) for i in range(8)}
    async with anyio.create_task_group() as tg:
        for key, data in payloads.items():
            tg.start_soon(put, store, key, data[:50_000], data[50_000:])
    for key, data in payloads.items():
        assert await get(store, key) == data


async def test_large_stream_keeps_memory_flat(store: Store) -> None:
    """256 MiB through a writer and a reader, with Python's allocations staying small."""
    chunk = os.urandom(1024 * 1024)
    tracemalloc.start()
    try:
        writer = await store.open_writer("big")
        for _ in range(128):
            await writer.write([chunk, chunk])
        await writer.commit()
        digest = hashlib.sha256()
        reader = await store.open_reader("big")
        async for part in reader.chunks():
            digest.update(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == hashlib.sha256(chunk * 256).hexdigest()
    assert peak < 16 * 1024 * 1024, f"peak traced memory {peak} bytes"


async def test_commit_reports_what_it_stored_and_stat_agrees(store: Store) -> None:
    data = os.urandom(70_001)
    writer = await store.open_writer("stored", len(data))
    await writer.write([data[:1], data[1:]])
    stored = await writer.commit()
    assert stored.size == len(data)
    info = await store.stat("stored")
    assert info.size == len(data)
    with pytest.raises(ObjectNotFound):
        await store.stat("never-written")


async def test_a_commit_never_replaces_a_committed_object(store: Store) -> None:
    await put(store, "once", b"first")
    writer = await store.open_writer("once")
    await writer.write([b"second"])
    with pytest.raises(ObjectExists) as refused:
        await writer.commit()
    await writer.abort()
    assert refused.value.store_id == store.id
    assert await get(store, "once") == b"first"


async def test_errors_carry_the_store_id(store: Store) -> None:
    for call in (store.open_reader("absent"), store.delete("absent"), store.stat("absent")):
        with pytest.raises(ObjectNotFound) as missing:
            await call
        assert missing.value.store_id == store.id
    with pytest.raises(InvalidKey) as bad:
        await store.open_writer("../x")
    assert bad.value.store_id is None or bad.value.store_id == store.id


async def test_capabilities_are_checked_before_the_driver_is_called(store: Store) -> None:
    await put(store, "ro", b"data")
    read_only = Store("ro-view", store.driver)
    read_only.capabilities = Capabilities(read=True, write=False, ranged_read=False)
    for call in (read_only.open_writer("ro2"), read_only.delete("ro"),
                 read_only.discard("ro")):
        with pytest.raises(WriteDenied) as refused:
            await call
        assert refused.value.store_id == "ro-view"
    with pytest.raises(Unsupported):
        await read_only.open_reader("ro", 1, 2)
    assert await get(read_only, "ro") == b"data"  # whole reads still work
    assert await get(store, "ro") == b"data"  # and nothing was deleted


async def test_negative_ranges_are_refused_before_the_driver(store: Store) -> None:
    await put(store, "neg", b"data")
    for offset, length in ((-1, None), (0, -1)):
        with pytest.raises(InvalidRange) as refused:
            await store.open_reader("neg", offset, length)
        assert refused.value.store_id == store.id
