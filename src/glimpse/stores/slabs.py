"""Slabs: page-aligned buffers that large request bodies are received into, and reused.

A body the client sends with a `Content-Length` is read from the socket straight into a slab
(`api/http.py`), and the filled slab goes to the app as one memoryview: the hashers hash it,
the inspector reads it and the filesystem store writes it with `O_DIRECT` (it is aligned), all
from the same memory, where before each piece was copied by the event loop (into a new bytes
object), by the HTTP parser (again) and by the store (into its aligned buffer).

A slab is lent, never handed back: it is free again when nothing refers to it any more, which
the pool sees from its reference count (`sys.getrefcount`: every memoryview of a slab holds one
reference to it, whatever was sliced from it). So a stage that keeps a piece of the data for
later keeps its slab out of the pool, and no slab is ever refilled while anything can still
read it. A pool keeps up to `keep` slabs (16 MiB at the defaults) and makes temporary ones
past that; each event loop has one (`api/http.py`), used from its thread only.
"""

from __future__ import annotations

import mmap
import sys

SLAB_SIZE = 1024 * 1024
KEEP = 16


def _refs(slab: mmap.mmap) -> int:
    return sys.getrefcount(slab)


def _idle_refs() -> int:
    """The count `_refs` sees for a slab held only by the pool's list, read the way `take`
    reads it (the list, the loop variable, the argument of `_refs`, that of getrefcount)."""
    slabs = [mmap.mmap(-1, mmap.PAGESIZE)]
    for slab in slabs:
        count = _refs(slab)
    slabs[0].close()
    return count


_IDLE = _idle_refs()


class SlabPool:
    def __init__(self, size: int = SLAB_SIZE, keep: int = KEEP) -> None:
        if size % mmap.PAGESIZE:
            raise ValueError(f"slab size {size} is not a multiple of the page size")
        self.size = size
        self._keep = keep
        self._slabs: list[mmap.mmap] = []

    def take(self) -> mmap.mmap:
        """A slab nothing refers to: a kept one if one is free, else a new one."""
        for slab in self._slabs:
            if _refs(slab) <= _IDLE:
                return slab
        slab = mmap.mmap(-1, self.size)
        if len(self._slabs) < self._keep:
            self._slabs.append(slab)
        return slab

    def kept(self) -> int:
        return len(self._slabs)

