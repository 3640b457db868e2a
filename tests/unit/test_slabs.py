"""The slab pool (glimpse.stores.slabs): a slab is lent again only once nothing refers to it,
whatever was sliced from it; aligned; at most `keep` kept."""

from __future__ import annotations

import ctypes
import mmap

import pytest

from glimpse.stores.slabs import SlabPool


def address(slab: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(slab))


def test_a_free_slab_is_lent_again() -> None:
    pool = SlabPool(size=mmap.PAGESIZE * 4, keep=4)
    first = pool.take()
    key = id(first)
    del first
    assert id(pool.take()) == key
    assert pool.kept() == 1


@pytest.mark.parametrize("hold", ["slab", "view", "slice", "slice of a slice", "bytes copy"])
def test_a_slab_something_refers_to_is_not_lent(hold: str) -> None:
    pool = SlabPool(size=mmap.PAGESIZE, keep=4)
    slab = pool.take()
    slab[:5] = b"hello"
    key = id(slab)
    view = memoryview(slab)
    held = {"slab": slab, "view": view, "slice": view[1:3], "slice of a slice": view[1:4][1:],
            "bytes copy": bytes(view[:5])}[hold]
    before = bytes(held[:3])
    del slab, view
    other = pool.take()
    if hold == "bytes copy":  # a copy does not refer to the slab
        assert id(other) == key
    else:
        assert id(other) != key
        other[:5] = b"XXXXX"
        assert bytes(held[:3]) == before  # untouched by the other lender
    del held, other


def test_slabs_are_page_aligned_and_past_keep_are_temporary() -> None:
    pool = SlabPool(size=mmap.PAGESIZE * 2, keep=2)
    slabs = [pool.take() for _ in range(4)]
    assert len({id(s) for s in slabs}) == 4
    assert all(address(s) % mmap.PAGESIZE == 0 and len(s) == mmap.PAGESIZE * 2 for s in slabs)
    assert pool.kept() == 2


def test_size_must_be_whole_pages() -> None:
    with pytest.raises(ValueError, match="page size"):
        SlabPool(size=mmap.PAGESIZE + 1)
