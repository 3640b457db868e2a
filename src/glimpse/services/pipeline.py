"""The one streaming pipeline every byte of image data goes through on its way into Glimpse.

Chunks are gathered into batches of about `BUFFER_SIZE` bytes (never copied into one buffer);
each batch goes to every stage — the MD5 `checksum`, the `os_hash_value`, the format inspector,
the signature check — each in its own worker thread, in parallel with the store write. At most
two batches are alive at a time, so memory stays flat whatever the image size. The byte count is
checked against the size cap, the declared size and the quota budget as the data arrives.

A stage refuses data by raising (`RefusedData`, `Invalid`) from `update` or `finish`; the caller
then aborts the writer, so nothing refused is ever committed. Every stage and the store write of a
batch finish before a failure is raised, so a writer is never aborted while a write still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from anyio import CancelScope, to_thread

from glimpse.domain.errors import Invalid, TooLarge
from glimpse.stores.base import Writer

BUFFER_SIZE = 4 * 1024 * 1024


class Stage(Protocol):
    """A step every batch passes through, in order; `update` runs in a worker thread, in
    parallel with the other stages and the store write, and may raise to refuse the data."""

    def update(self, chunks: Sequence[bytes]) -> None: ...


class Hasher:
    def __init__(self, algorithm: str) -> None:
        self._hash = (
            hashlib.md5(usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
        )

    def update(self, chunks: Sequence[bytes]) -> None:
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


async def stream(chunks: AsyncIterator[bytes], stages: Sequence[Stage], writer: Writer | None,
                 bounds: Bounds) -> int:
    """Pass `chunks` through `stages` and into `writer` (None: only the stages); returns the
    byte count. The caller commits or aborts the writer."""
    cap = bounds.cap
    quota_cap = cap if bounds.left is None else min(cap, bounds.left)
    size = 0
    batch: list[bytes] = []
    batched = 0
    pending: asyncio.Future[None] | None = None

    async def process(chunks: list[bytes]) -> None:
        work = [to_thread.run_sync(stage.update, chunks) for stage in stages]
        if writer is not None:
            work.append(writer.write(chunks))
        results = await asyncio.gather(*work, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

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
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(process(batch))
                batch, batched = [], 0
        if pending is not None:
            await pending
            pending = None
        if batch:
            await process(batch)
    finally:
        if pending is not None:
            with CancelScope(shield=True), contextlib.suppress(BaseException):
                await pending
    if bounds.declared is not None and size != bounds.declared:
        raise Invalid(f"Received {size} bytes but x-openstack-image-size declared "
                      f"{bounds.declared}.")
    return size
