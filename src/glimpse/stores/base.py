"""The contract between the services and every store driver.

A store keeps immutable objects under keys (`[A-Za-z0-9][A-Za-z0-9._-]*`, at most 200 characters).
Drivers never hash, count or cap what they are given: the upload pipeline does that once, for all.

Writing: `open_writer(key)` returns a `Writer`. Nothing written is visible under `key` until
`commit()` returns; `abort()` removes every trace of the write and may be called any number of
times, also after a failed `commit()`. Every caller follows

    writer = await store.open_writer(key)
    try:
        ... await writer.write([chunk, ...]) ...
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise

Reading: `open_reader(key, offset, length)` checks existence and the range *before* returning, so
an API can still answer 404 or 416; then `chunks()` streams the bytes lazily.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from glimpse.stores.errors import InvalidKey

KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_key(key: str) -> str:
    """Return `key` if it is a valid store key, else raise `InvalidKey`."""
    if not KEY_PATTERN.fullmatch(key) or ".." in key:
        raise InvalidKey(f"invalid store key {key!r}")
    return key


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do, fixed per driver and checked before a call."""

    read: bool = True
    write: bool = True
    ranged_read: bool = True


class Writer(Protocol):
    async def write(self, chunks: Sequence[bytes]) -> None:
        """Append `chunks`, in order (a vectored write: callers need not join them first).

        Raises `StoreFull`, `WriteDenied` or `StoreUnavailable`.
        """
        ...

    async def commit(self) -> None:
        """Make the object visible under its key, durably. Afterwards `abort()` does nothing."""
        ...

    async def abort(self) -> None:
        """Discard everything written; idempotent; never raises for a missing partial object."""
        ...


class Reader(Protocol):
    #: Size of the whole object, not of the requested range.
    size: int

    def chunks(self) -> AsyncIterator[bytes]:
        """The requested bytes, in order, in chunks of the driver's choosing."""
        ...

    async def aclose(self) -> None:
        ...


class Store(Protocol):
    """A byte store. `id` names it in image locations; `capabilities` never change."""

    id: str
    capabilities: Capabilities

    async def open_writer(self, key: str) -> Writer:
        ...

    async def open_reader(self, key: str, offset: int = 0, length: int | None = None) -> Reader:
        """Raises `ObjectNotFound`, or `InvalidRange` if `offset` is at or past the end."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the committed object. Raises `ObjectNotFound` if there is none."""
        ...

    async def discard(self, key: str) -> None:
        """Remove whatever a write to `key` left, committed or partial. Idempotent.

        Used to clean up after a writer whose process died before it could commit or abort.
        """
        ...
