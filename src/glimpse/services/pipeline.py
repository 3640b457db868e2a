"""The one streaming pipeline every byte of image data goes through on its way into Glimpse.

Chunks are bytes or, for a large request body, memoryviews of the slabs it was received into
(`stores/slabs.py`: a stage that keeps a piece of one keeps the slab from being refilled). They
are gathered into batches of about `BUFFER_SIZE` bytes (never copied into one buffer);
each batch goes to every stage — the MD5 `checksum`, the `os_hash_value`, the format inspector,
the signature check — and to the store write. Each of those is a lane that takes the batches in
order, one at a time; a stage's lane runs `update` on a worker thread that goes from one waiting
batch to the next without a trip through the event loop, so a stage that is behind (the slower
hash) never waits for the loop to be scheduled between batches. The lanes run in parallel and
each may run up to `LANE_DEPTH` batches ahead of the slowest, instead of all waiting for the
slowest at every batch. At most `LANE_DEPTH + 2` batches are alive at a time
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

import abc
import asyncio
import contextlib
import hashlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
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


#: Batches a lane may have waiting beyond the one it works on: lets each lane run ahead of
#: the slowest by that much, so none idles while another finishes a batch.
LANE_DEPTH = 1


class _Lane(abc.ABC):
    """One stage, or the store write: takes the batches in order, one at a time, with at most
    `LANE_DEPTH` waiting (`put` waits for room). A task of its own `drain`s what has arrived
    whenever the lane is idle. After any lane fails (`stop`), the rest skip what they have not
    started. `_done` may be called from any thread."""

    def __init__(self, stop: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = stop
        self._batches: deque[list[Chunk]] = deque()
        self._lock = threading.Lock()
        self._given = 0  # put and not yet done (worked or skipped)
        self._room: asyncio.Future[None] | None = None
        self._arrived = asyncio.Event()
        self._closing = False
        self.error: BaseException | None = None
        self._task = asyncio.ensure_future(self._run())

    async def put(self, batch: list[Chunk]) -> None:
        while True:
            with self._lock:
                if self._given <= LANE_DEPTH:
                    self._given += 1
                    break
                self._room = room = self._loop.create_future()
            await room
        self._batches.append(batch)
        self._arrived.set()

    async def close(self) -> None:
        """Wait until the lane has finished (or skipped) everything given to it."""
        self._closing = True
        self._arrived.set()
        await self._task

    async def _run(self) -> None:
        while True:
            if self._batches:
                await self.drain()
            elif self._closing:
                return
            else:  # only the loop puts and closes, so nothing arrives between check and wait
                self._arrived.clear()
                await self._arrived.wait()

    @abc.abstractmethod
    async def drain(self) -> None:
        """Work through `_batches` until it is empty, calling `_done` after each batch."""

    def _failed(self, exc: BaseException) -> None:  # raised by stream() once all have stopped
        self.error = exc
        self._stop.set()

    def _done(self) -> None:
        with self._lock:
            self._given -= 1
            room, self._room = self._room, None
        if room is not None:
            self._loop.call_soon_threadsafe(_wake, room)


def _wake(room: asyncio.Future[None]) -> None:
    if not room.done():
        room.set_result(None)


class _StageLane(_Lane):
    """A stage's lane drains on a worker thread, batch after batch, and comes back to the event
    loop only when it has run dry: a stage that is behind (the slowest hash, say) never waits
    for the loop between batches."""

    def __init__(self, stage: Stage, stop: threading.Event) -> None:
        self._stage = stage
        super().__init__(stop)

    async def drain(self) -> None:
        await to_thread.run_sync(self._drain)

    def _drain(self) -> None:
        while self._batches:
            batch = self._batches.popleft()
            if not self._stop.is_set():
                try:
                    self._stage.update(batch)
                except BaseException as exc:
                    self._failed(exc)
            del batch  # no reference left: its slabs may be refilled (stores/slabs.py)
            self._done()


class _WriteLane(_Lane):
    """The store write's lane: the writer's own `write`, batch after batch."""

    def __init__(self, writer: Writer, stop: threading.Event) -> None:
        self._writer = writer
        super().__init__(stop)

    async def drain(self) -> None:
        while self._batches:
            batch = self._batches.popleft()
            if not self._stop.is_set():
                try:
                    await self._writer.write(batch)
                except BaseException as exc:
                    self._failed(exc)
            del batch
            self._done()


async def stream(chunks: AsyncIterator[Chunk], stages: Sequence[Stage], writer: Writer | None,
                 bounds: Bounds) -> int:
    """Pass `chunks` through `stages` and into `writer` (None: only the stages); returns the
    byte count. The caller commits or aborts the writer."""
    cap = bounds.cap
    quota_cap = cap if bounds.left is None else min(cap, bounds.left)
    size = 0
    batch: list[Chunk] = []
    batched = 0
    stop = threading.Event()
    lanes: list[_Lane] = [_StageLane(stage, stop) for stage in stages]
    if writer is not None:
        lanes.append(_WriteLane(writer, stop))

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
