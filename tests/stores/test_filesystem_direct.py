"""The filesystem driver's direct writes (`O_DIRECT` through an aligned buffer, the unaligned
tail buffered at commit) against buffered writes, and its direct reads (the staging area's):
the same bytes for every size and range around the buffer and block boundaries, and, direct,
the data not left in the page cache (util-linux `fincore` reads the kernel's residency of the
file)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from glimpse.stores.filesystem import CHUNK_SIZE, DIRECT_BUFFER, FilesystemDriver
from glimpse.stores.slabs import SlabPool

pytestmark = pytest.mark.anyio
BLOCK = 4096


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` cut into chunks of `sizes`, cycling."""
    chunks, at, i = [], 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)]
        chunks.append(data[at:at + size])
        at += size
        i += 1
    return chunks


SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, DIRECT_BUFFER - 1, DIRECT_BUFFER, DIRECT_BUFFER + 1,
         2 * DIRECT_BUFFER + BLOCK + 7]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
@pytest.mark.parametrize("size", SIZES)
async def test_every_size_round_trips(tmp_path: Path, direct: bool, size: int) -> None:
    driver = FilesystemDriver(tmp_path / "objects", direct_writes=direct)
    data = os.urandom(size)
    writer = await driver.open_writer("key")
    # odd chunk sizes, several write calls: the buffer fills across chunks and calls
    chunks = chunked(data, [65536 + 3, 1, 300_001])
    for at in range(0, len(chunks), 3):
        await writer.write(chunks[at:at + 3])
    stored = await writer.commit()
    assert stored.size == size
    assert driver.path_of("key").read_bytes() == data
    assert [p.name for p in driver.root.iterdir()] == ["key"]  # no partial file left


async def test_abort_leaves_nothing(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "objects")
    writer = await driver.open_writer("key")
    await writer.write([os.urandom(DIRECT_BUFFER + 5)])
    await writer.abort()
    assert list(driver.root.iterdir()) == []


def slabbed(pool: SlabPool, data: bytes) -> memoryview:
    """`data` in a slab of `pool`, as the HTTP layer hands a received body over."""
    view = memoryview(pool.take())[:len(data)]
    view[:] = data
    return view


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
async def test_slabs_mixed_with_other_chunks(tmp_path: Path, direct: bool) -> None:
    """Whole slabs are written as they are where the file offset allows, and copied through
    the buffer where it does not (after an unaligned chunk): the same bytes either way, and no
    slab kept by the writer."""
    pool = SlabPool(size=DIRECT_BUFFER, keep=8)
    driver = FilesystemDriver(tmp_path / "objects", direct_writes=direct)
    parts = [os.urandom(n) for n in (DIRECT_BUFFER, DIRECT_BUFFER, 777, DIRECT_BUFFER,
                                     DIRECT_BUFFER - 777, DIRECT_BUFFER, 5)]
    chunks = [slabbed(pool, p) if len(p) == DIRECT_BUFFER else p for p in parts]
    writer = await driver.open_writer("key")
    await writer.write(chunks[:2])
    await writer.write(chunks[2:])
    await writer.commit()
    assert driver.path_of("key").read_bytes() == b"".join(parts)
    del chunks
    assert len({id(pool.take()) for _ in range(3)}) == 1  # every slab free again


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux fincore")
async def test_slabs_are_written_directly(tmp_path: Path) -> None:
    pool = SlabPool(size=DIRECT_BUFFER, keep=8)
    driver = FilesystemDriver(tmp_path / "objects")
    writer = await driver.open_writer("key")
    for _ in range(8):
        await writer.write([slabbed(pool, os.urandom(DIRECT_BUFFER))])
    await writer.commit()
    assert resident(driver.path_of("key")) == 0


def resident(path: Path) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux fincore")
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
async def test_direct_writes_bypass_the_page_cache(tmp_path: Path, direct: bool) -> None:
    driver = FilesystemDriver(tmp_path / "objects", direct_writes=direct)
    size = 16 * DIRECT_BUFFER + 100
    writer = await driver.open_writer("key")
    await writer.write(chunked(os.urandom(size), [262144]))
    await writer.commit()
    cached = resident(driver.path_of("key"))
    if direct:
        assert cached <= BLOCK, cached  # at most the tail's page
    else:
        assert cached >= size - BLOCK, cached


async def read_all(driver: FilesystemDriver, key: str, offset: int = 0,
                   length: int | None = None) -> bytes:
    reader = await driver.open_reader(key, offset, length)
    return b"".join([chunk async for chunk in reader.chunks()])


@pytest.mark.parametrize("size", [1, BLOCK - 1, BLOCK + 1, CHUNK_SIZE + 7,
                                  2 * CHUNK_SIZE + BLOCK])
async def test_direct_reads_return_every_range(tmp_path: Path, size: int) -> None:
    driver = FilesystemDriver(tmp_path / "objects", direct_reads=True)
    data = os.urandom(size)
    writer = await driver.open_writer("key")
    await writer.write([data])
    await writer.commit()
    assert await read_all(driver, "key") == data
    for offset in sorted({0, 1, BLOCK - 1, BLOCK, size // 2, size - 1} & set(range(size))):
        for length in (None, 1, BLOCK + 3, CHUNK_SIZE + 1):
            end = size if length is None else offset + length
            assert await read_all(driver, "key", offset, length) == data[offset:end], \
                (offset, length)


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux fincore")
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
async def test_direct_reads_bypass_the_page_cache(tmp_path: Path, direct: bool) -> None:
    driver = FilesystemDriver(tmp_path / "objects", direct_reads=direct)
    size = 8 * CHUNK_SIZE
    writer = await driver.open_writer("key")  # written directly: not in the page cache
    await writer.write([os.urandom(size)])
    await writer.commit()
    assert len(await read_all(driver, "key")) == size
    cached = resident(driver.path_of("key"))
    if direct:
        assert cached == 0, cached
    else:
        assert cached >= size - BLOCK, cached


async def test_direct_reads_into_slabs_held_or_passed_on(tmp_path: Path) -> None:
    """A direct reader hands chunks over as views of its slabs: holding more of them than it
    keeps (20 chunks, 8 kept) leaves every one as read, and passing each straight to a direct
    writer (an import pass) copies the object exactly, written from the slabs as they are."""
    driver = FilesystemDriver(tmp_path / "objects", direct_reads=True)
    data = os.urandom(20 * CHUNK_SIZE + BLOCK + 5)
    writer = await driver.open_writer("source")
    await writer.write([data])
    await writer.commit()
    reader = await driver.open_reader("source")
    held = [chunk async for chunk in reader.chunks()]
    assert len(held) == 21 and all(isinstance(c, memoryview) for c in held)
    assert b"".join(held) == data
    del held
    copy = await driver.open_writer("copy")
    reader = await driver.open_reader("source")
    async for chunk in reader.chunks():
        await copy.write([chunk])
    await copy.commit()
    if shutil.which("fincore"):  # before reading it back, which fills the page cache
        assert resident(driver.path_of("copy")) <= BLOCK  # direct, at most the tail's page
    assert driver.path_of("copy").read_bytes() == data
