"""The streaming pipeline (`services/pipeline.py`) with real hashers and a real filesystem
writer: results, the lanes running ahead of the slowest stage within their bound, failures
raised in stage order only once every lane has stopped, and a cancelled stream that never
leaves a store write running."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from glimpse.domain.errors import Invalid, RefusedData, TooLarge
from glimpse.services.pipeline import BUFFER_SIZE, LANE_DEPTH, Bounds, Hasher, stream
from glimpse.stores.base import Stored, Writer
from glimpse.stores.filesystem import FilesystemDriver

pytestmark = pytest.mark.anyio
MiB = 1 << 20
CHUNK = 256 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def chunks_of(data: bytes, size: int = CHUNK) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at:at + size]
        await asyncio.sleep(0)


class Counting:
    """A stage that counts the batches it has taken, optionally slowly, optionally refusing
    the `refuse_at`-th (1-based) with `error`."""

    def __init__(self, log: list[str], name: str, delay: float = 0.0, refuse_at: int = 0,
                 error: Exception | None = None) -> None:
        self.log, self.name, self.delay = log, name, delay
        self.refuse_at, self.error = refuse_at, error
        self.batches = 0
        self._lock = threading.Lock()

    def update(self, chunks: Sequence[bytes]) -> None:
        with self._lock:
            self.batches += 1
            self.log.append(self.name)
        time.sleep(self.delay)
        if self.batches == self.refuse_at:
            assert self.error is not None
            raise self.error


class Watched:
    """A real filesystem writer, watched: whether a write is running, how many ran."""

    def __init__(self, inner: Writer, delay: float = 0.0) -> None:
        self.inner, self.delay = inner, delay
        self.running = False
        self.writes = 0
        self.started = asyncio.Event()

    async def write(self, chunks: Sequence[bytes]) -> None:
        self.running = True
        self.started.set()
        try:
            await asyncio.sleep(self.delay)
            await self.inner.write(chunks)
            self.writes += 1
        finally:
            self.running = False

    async def commit(self) -> Stored:
        return await self.inner.commit()

    async def abort(self) -> None:
        await self.inner.abort()


async def writer_in(tmp_path: Path, delay: float = 0.0) -> tuple[FilesystemDriver, Watched]:
    driver = FilesystemDriver(tmp_path / "objects")
    return driver, Watched(await driver.open_writer("key"), delay)


async def test_hashes_and_the_stored_bytes_are_those_of_the_data(tmp_path: Path) -> None:
    data = os.urandom(3 * BUFFER_SIZE + 12345)
    driver, writer = await writer_in(tmp_path)
    md5, sha = Hasher("md5"), Hasher("sha512")
    size = await stream(chunks_of(data, 100_003), [md5, sha], writer, Bounds(cap=1 << 30))
    await writer.commit()
    assert size == len(data)
    assert md5.hexdigest() == hashlib.md5(data).hexdigest()
    assert sha.hexdigest() == hashlib.sha512(data).hexdigest()
    assert driver.path_of("key").read_bytes() == data


async def test_lanes_run_ahead_of_the_slowest_stage_within_their_bound(tmp_path: Path) -> None:
    """The fast stage takes batches while the slow one still works (not in lockstep), but
    never more than LANE_DEPTH + 2 ahead of when the slow one started its current batch (its
    current one, the ones waiting for it, the one being fed): that bounds the batches
    alive."""
    log: list[str] = []
    fast, slow = Counting(log, "fast"), Counting(log, "slow", delay=0.05)
    data = os.urandom(12 * BUFFER_SIZE)
    await stream(chunks_of(data), [fast, slow], None, Bounds(cap=1 << 30))
    assert fast.batches == slow.batches == 12
    leads, ahead = [], 0
    for name in log:
        ahead += 1 if name == "fast" else -1
        leads.append(ahead)
    assert max(leads) > 1  # lockstep would keep the fast stage at most one batch ahead
    assert max(leads) <= LANE_DEPTH + 2


async def test_the_first_failure_in_stage_order_is_raised_after_every_lane_stopped(
        tmp_path: Path) -> None:
    log: list[str] = []
    first = Counting(log, "a", delay=0.02, refuse_at=4, error=RefusedData("a refuses"))
    second = Counting(log, "b", refuse_at=2, error=Invalid("b refuses"))
    _, writer = await writer_in(tmp_path, delay=0.02)
    with pytest.raises(Invalid, match="b refuses"):
        await stream(chunks_of(os.urandom(8 * BUFFER_SIZE)), [first, second], writer,
                     Bounds(cap=1 << 30))
    assert not writer.running
    # after b's refusal at its 2nd batch, the lanes skipped what they had not started
    assert first.batches <= 2 + LANE_DEPTH + 1
    assert writer.writes <= 2 + LANE_DEPTH + 1
    await writer.abort()
    assert list((tmp_path / "objects").iterdir()) == []


async def test_a_store_write_failure_is_raised_and_the_stages_stop(tmp_path: Path) -> None:
    class Failing(Watched):
        async def write(self, chunks: Sequence[bytes]) -> None:
            if self.writes == 1:
                raise OSError("disk on fire")
            await super().write(chunks)

    driver = FilesystemDriver(tmp_path / "objects")
    writer = Failing(await driver.open_writer("key"))
    stage = Counting([], "s")
    with pytest.raises(OSError, match="disk on fire"):
        await stream(chunks_of(os.urandom(10 * BUFFER_SIZE)), [stage], writer,
                     Bounds(cap=1 << 30))
    assert stage.batches < 10


async def test_too_large_stops_the_stream_and_waits_for_the_lanes(tmp_path: Path) -> None:
    _, writer = await writer_in(tmp_path, delay=0.05)
    with pytest.raises(TooLarge):
        await stream(chunks_of(os.urandom(6 * BUFFER_SIZE)), [Hasher("md5")], writer,
                     Bounds(cap=3 * BUFFER_SIZE))
    assert not writer.running


async def test_a_cancelled_stream_leaves_no_write_running(tmp_path: Path) -> None:
    _, writer = await writer_in(tmp_path, delay=0.2)
    task = asyncio.ensure_future(stream(chunks_of(os.urandom(8 * BUFFER_SIZE)),
                                        [Hasher("sha512")], writer, Bounds(cap=1 << 30)))
    await writer.started.wait()
    assert writer.running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not writer.running
    await writer.abort()


async def test_a_stage_that_is_behind_takes_its_next_batch_without_the_event_loop() -> None:
    """A stage's lane drains the batches waiting for it on its worker thread: while the event
    loop is blocked, a slow stage still goes on from one batch to the next."""
    spans: list[tuple[float, float]] = []

    class Slow:
        def update(self, chunks: Sequence[bytes]) -> None:
            start = time.monotonic()
            time.sleep(0.1)
            spans.append((start, time.monotonic()))

    blocked: list[float] = []

    async def batches() -> AsyncIterator[bytes]:
        for _ in range(2):
            yield os.urandom(BUFFER_SIZE)  # one batch each
            await asyncio.sleep(0.02)  # the lane's task starts its drain
        blocked.append(time.monotonic())
        time.sleep(0.4)  # noqa: ASYNC251 (blocks the event loop on purpose: no task runs)
        blocked.append(time.monotonic())
        yield os.urandom(BUFFER_SIZE)

    await stream(batches(), [Slow()], None, Bounds(cap=1 << 30))
    assert len(spans) == 3
    second_started = spans[1][0]
    assert blocked[0] < second_started < blocked[1]
