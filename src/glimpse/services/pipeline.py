"""The one streaming pipeline every byte of image data goes through on its way into Glimpse.

Chunks are bytes or, for a large request body, memoryviews of the slabs it was received into
(`stores/slabs.py`: a stage that keeps a piece of one keeps the slab from being refilled). They
are gathered into batches of about `BUFFER_SIZE` bytes (never copied into one buffer);
each batch goes to every stage — the MD5 `checksum`, the `os_hash_value`, the format inspector,
the signature check — and to the store write. Each of those is a lane: a task of its own that
takes the batches in order, one at a time (a stage's `update` in a worker thread), so the lanes
run in parallel and each may run up to `LANE_DEPTH` batches ahead of the slowest, instead of all
waiting for the slowest at every batch. At most `LANE_DEPTH + 2` batches are alive at a time
(the slowest lane's current and waiting ones, the one being gathered), so memory stays flat
whatever the image size. The byte count is checked against the size cap, the declared size and
the quota budget as the data arrives.

A stage refuses data by raising (`RefusedData`, `Invalid`) from `update` or `finish`; the caller
then aborts the writer, so nothing refused is ever committed. After a failure the lanes skip the
batches they have not started, and every lane finishes the one it works on before the failure
(the first in stage order, the store write last) is raised, so a writer is never aborted while
a write still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from anyio import CancelScope, to_thread

from glimpse.domain.errors import Invalid, TooLarge
from glimpse.stores.base import Chunk, Writer

BUFFER_SIZE = 4 * 1024 * 1024


class Stage(Protocol):
    """A step every batch passes through, in order; `update` runs in a worker thread, in
    parallel with the other stages and the store write, and may raise to refuse the data."""

    def update(self, chunks: Sequence[Chunk]) -> None: ...


class Hasher:
    def __init__(self, algorithm: str) -> None:
        self._hash = (
            hashlib.md5(usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
        )

    def update(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            self._hash.update(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@dataclass
class Bounds:
    """What the byte count is held to while the data streams."""

    #: The largest image accepted (`image_size_cap`).
    cap: int
    #: The size the client declared, if it did: more is refused at once, less at the end.
    declared: int | None = None
    #: Bytes the owner's project has left, and the check that refuses going past them exactly.
    left: int | None = None
    over_budget: Callable[[int], None] | None = None
    #: Raises when the caller lost its right to go on (its upload claim, say).
    still_allowed: Callable[[], None] | None = None


#: Batches a stage may have waiting beyond the one it works on: lets each stage run ahead of
#: the slowest by that much, so none idles while another finishes a batch.
LANE_DEPTH = 1


class _Lane:
    """One stage, or the store write: takes the batches in order, one at a time, in a task of
    its own. After any lane fails (`stop`), the rest skip what they have not started."""

    def __init__(self, work: Callable[[list[Chunk]], Awaitable[object]],
                 stop: asyncio.Event) -> None:
        self._work = work
        self._stop = stop
        self._queue: asyncio.Queue[list[Chunk] | None] = asyncio.Queue(LANE_DEPTH)
        self.error: BaseException | None = None
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while (batch := await self._queue.get()) is not None:
            if self._stop.is_set():
                continue
            try:
                await self._work(batch)
            except BaseException as exc:  # raised by stream() once every lane has stopped
                self.error = exc
                self._stop.set()

    async def put(self, batch: list[Chunk]) -> None:
        await self._queue.put(batch)

    async def close(self) -> None:
        """Wait until the lane has finished (or skipped) everything given to it."""
        if not self._task.done():
            await self._queue.put(None)
        await self._task


async def stream(chunks: AsyncIterator[Chunk], stages: Sequence[Stage], writer: Writer | None,
                 bounds: Bounds) -> int:
    """Pass `chunks` through `stages` and into `writer` (None: only the stages); returns the
    byte count. The caller commits or aborts the writer."""
    cap = bounds.cap
    quota_cap = cap if bounds.left is None else min(cap, bounds.left)
    size = 0
    batch: list[Chunk] = []
    batched = 0
    stop = asyncio.Event()

    def in_thread(stage: Stage) -> Callable[[list[Chunk]], Awaitable[None]]:
        return lambda chunks: to_thread.run_sync(stage.update, chunks)

    lanes = [_Lane(in_thread(stage), stop) for stage in stages]
    if writer is not None:
        lanes.append(_Lane(writer.write, stop))

    async def close() -> None:
        """Every lane finished; the first failure, in stage order, raised."""
        with CancelScope(shield=True):
            for lane in lanes:
                await lane.close()
        for lane in lanes:
            if lane.error is not None:
                raise lane.error

    async def feed(batch: list[Chunk]) -> None:
        for lane in lanes:
            await lane.put(batch)
        if stop.is_set():
            await close()

    closed = False
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > quota_cap:
                if size > cap:
                    raise TooLarge(f"Image data exceeds the limit of {cap} bytes.")
                assert bounds.over_budget is not None
                bounds.over_budget(size)
            if bounds.declared is not None and size > bounds.declared:
                raise Invalid(f"Received more data than the {bounds.declared} bytes declared "
                              "in x-openstack-image-size.")
            if bounds.still_allowed is not None:
                bounds.still_allowed()
            batch.append(chunk)  # no copy: stages and the store take the chunks as they are
            batched += len(chunk)
            if batched >= BUFFER_SIZE:
                await feed(batch)
                batch, batched = [], 0
        if batch:
            await feed(batch)
        closed = True
        await close()
    finally:
        if not closed:
            stop.set()
            with contextlib.suppress(BaseException):
                await close()
    if bounds.declared is not None and size != bounds.declared:
        raise Invalid(f"Received {size} bytes but x-openstack-image-size declared "
                      f"{bounds.declared}.")
    return size
