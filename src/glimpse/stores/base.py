"""The contract between the services and the byte stores: drivers, and the one wrapper around them.

A store keeps immutable objects under keys (`[A-Za-z0-9][A-Za-z0-9._-]*`, at most 200 characters).
Drivers never hash, count or cap what they are given: the upload pipeline does that once, for all.
Services hold `Store`s, never drivers: `Store` wraps every `Driver` the same way (key checks,
capability checks, the store id stamped on every error), so that drivers stay dumb.

Keys look different in some stores (an HTTP store's keys are URLs): a driver that defines
`check_key(key) -> key` (raising `InvalidKey`) replaces the pattern above for its store;
`Store` calls it before every keyed call. Drivers without one get `check_key` of this module.

Writing: `open_writer(key, size_hint)` returns a `Writer`. Nothing written is visible under `key`
until `commit()` returns; `abort()` removes every trace of the write and may be called any number
of times, also after a failed `commit()`. Every caller follows

    writer = await store.open_writer(key, size_hint)
    try:
        ... await writer.write([chunk, ...]) ...        # never two writes at once
        stored = await writer.commit()
    except BaseException:
        await writer.abort()                            # only once no write is running
        raise

Reading: `open_reader(key, offset, length)` checks existence and the range *before* returning, so
an API can still answer 404 or 416; then `chunks()` streams the bytes lazily, and `aclose()`
releases what the reader holds (always call it; `chunks()` calls it when exhausted).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from glimpse.stores.errors import InvalidKey, InvalidRange, StoreError, Unsupported, WriteDenied

KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
T = TypeVar("T")


def check_key(key: str) -> str:
    """Return `key` if it is a valid store key, else raise `InvalidKey`."""
    if not KEY_PATTERN.fullmatch(key) or ".." in key:
        raise InvalidKey(f"invalid store key {key!r}")
    return key


#: A piece of image data: bytes, or a memoryview of the slab it was received or read into
#: (`stores/slabs.py`), which whoever gets it only reads.
Chunk = bytes | memoryview


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do, fixed per driver and checked by `Store` before a call."""

    read: bool = True
    write: bool = True
    ranged_read: bool = True


@dataclass(frozen=True)
class Stored:
    """What a commit stored: its size and the backend's version of it (an etag), if any."""

    size: int
    version: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    """A committed object, as `stat` finds it."""

    size: int
    version: str | None = None


class Writer(Protocol):
    async def write(self, chunks: Sequence[Chunk]) -> None:
        """Append `chunks`, in order (a vectored write: callers need not join them first).

        A chunk is bytes or, from a large request body, a memoryview of the slab it was
        received into (`stores/slabs.py`): the driver only reads it, and one it keeps after
        returning stays as it was (a slab is not refilled while anything refers to it).
        Raises `StoreFull`, `WriteDenied` or `StoreUnavailable`.
        """
        ...

    async def commit(self) -> Stored:
        """Make the object visible under its key, durably, all or nothing. Raises
        `ObjectExists` (and stores nothing) if an object is already committed under the key: a
        commit never replaces one. Afterwards `abort()` does nothing."""
        ...

    async def abort(self) -> None:
        """Discard everything written; idempotent; never raises for a missing partial object."""
        ...


class Reader(Protocol):
    #: Size of the whole object, not of the requested range.
    size: int

    def chunks(self) -> AsyncIterator[Chunk]:
        """The requested bytes, in order, in chunks of the driver's choosing. A backend that
        fails mid-stream raises `StoreUnavailable`: never a silently short stream."""
        ...

    async def aclose(self) -> None:
        """Release the reader (connections, descriptors); idempotent."""
        ...


class Driver(Protocol):
    """A backend. Implement these; `Store` adds checks and error stamping around them."""

    capabilities: Capabilities

    async def open_writer(self, key: str, size_hint: int | None) -> Writer:
        """A writer for `key`. `size_hint` is the declared size of what will be written, when
        known (multipart and segmented backends size their parts from it); a write may pass it
        only if the caller lets it (the pipeline enforces sizes)."""
        ...

    async def open_reader(self, key: str, offset: int, length: int | None) -> Reader:
        """Raises `ObjectNotFound`, or `InvalidRange` if `offset` is at or past the end."""
        ...

    async def stat(self, key: str) -> ObjectInfo:
        """Raises `ObjectNotFound`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the committed object. Raises `ObjectNotFound` if there is none."""
        ...

    async def discard(self, key: str) -> None:
        """Remove whatever a write to `key` left, committed or partial. Idempotent.

        Used by deletion jobs, and to clean up after a writer whose process died.
        """
        ...

    async def check(self) -> None:
        """Prove the configuration at start-up (log in, find the container or bucket, can
        write): raises a `StoreError` saying what is wrong."""
        ...

    async def aclose(self) -> None:
        """Release connections; the driver may reopen them if used again."""
        ...


async def drain(reader: Reader) -> AsyncIterator[Chunk]:
    """The reader's chunks, the reader closed at the end whatever happens (an exhausted stream,
    an error, or a consumer that stops early)."""
    try:
        async for chunk in reader.chunks():
            yield chunk
    finally:
        await reader.aclose()


async def _stamped(store_id: str, call: Awaitable[T]) -> T:
    try:
        return await call
    except StoreError as exc:
        exc.stamp(store_id)
        raise


class _StampedWriter:
    def __init__(self, store_id: str, inner: Writer) -> None:
        self._id = store_id
        self._inner = inner

    async def write(self, chunks: Sequence[Chunk]) -> None:
        await _stamped(self._id, self._inner.write(chunks))

    async def commit(self) -> Stored:
        return await _stamped(self._id, self._inner.commit())

    async def abort(self) -> None:
        await _stamped(self._id, self._inner.abort())


class _StampedReader:
    def __init__(self, store_id: str, inner: Reader) -> None:
        self._id = store_id
        self._inner = inner
        self.size = inner.size

    async def chunks(self) -> AsyncIterator[Chunk]:
        try:
            async for chunk in self._inner.chunks():
                yield chunk
        except StoreError as exc:
            exc.stamp(self._id)
            raise

    async def aclose(self) -> None:
        await _stamped(self._id, self._inner.aclose())


class Store:
    """A configured store: `id` names it in image locations; its driver's capabilities never
    change. Every call checks the key and the capability first, and every `StoreError` leaving
    it carries `store_id`."""

    def __init__(self, store_id: str, driver: Driver, description: str = "",
                 weight: int = 0) -> None:
        self.id = store_id
        self.driver = driver
        self.description = description
        self.weight = weight
        self.capabilities = driver.capabilities
        # the driver's own key syntax, if it has one (see the module docstring)
        self._check_key: Callable[[str], str] = getattr(driver, "check_key", check_key)

    def _require(self, what: str, allowed: bool) -> None:
        if not allowed:
            error = WriteDenied if what in ("writes", "deletes") else Unsupported
            raise error(f"store {self.id!r} does not support {what}").stamp(self.id)

    async def open_writer(self, key: str, size_hint: int | None = None) -> Writer:
        self._check_key(key)
        self._require("writes", self.capabilities.write)
        return _StampedWriter(self.id, await _stamped(self.id,
                                                      self.driver.open_writer(key, size_hint)))

    async def open_reader(self, key: str, offset: int = 0, length: int | None = None) -> Reader:
        self._check_key(key)
        if offset < 0 or (length is not None and length < 0):
            raise InvalidRange(f"bad range: offset {offset}, length {length}", 0).stamp(self.id)
        self._require("reads", self.capabilities.read)
        if offset or length is not None:
            self._require("ranged reads", self.capabilities.ranged_read)
        return _StampedReader(self.id, await _stamped(
            self.id, self.driver.open_reader(key, offset, length)))

    async def stat(self, key: str) -> ObjectInfo:
        self._check_key(key)
        return await _stamped(self.id, self.driver.stat(key))

    async def delete(self, key: str) -> None:
        self._check_key(key)
        self._require("deletes", self.capabilities.write)
        await _stamped(self.id, self.driver.delete(key))

    async def discard(self, key: str) -> None:
        self._check_key(key)
        self._require("deletes", self.capabilities.write)
        await _stamped(self.id, self.driver.discard(key))

    def url(self, key: str) -> str:
        """The URL a client sees for the location `key` (Glance's location `url`)."""
        prefix: str | None = getattr(self.driver, "url_prefix", "")
        return key if prefix is None else prefix + key

    def key_of(self, url: str) -> str | None:
        """The key of the location `url` in this store; None if the URL is not one of this
        store's. Raises `InvalidKey` if it is, but names a key the store refuses."""
        prefix: str | None = getattr(self.driver, "url_prefix", "")
        if prefix is None:  # keys are URLs: an HTTP store
            if not url.lower().startswith(("http://", "https://")):
                return None
            return self._check_key(url)
        if not prefix or not url.startswith(prefix):
            return None
        return self._check_key(url[len(prefix):])

    async def check(self) -> None:
        await _stamped(self.id, self.driver.check())

    async def aclose(self) -> None:
        await self.driver.aclose()
