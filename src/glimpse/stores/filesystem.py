"""The filesystem store: one file per object under a root folder.

Layout: `<root>/<key>` for committed objects; `<root>/.<key>.partial` while a writer is open (the
leading dot keeps it out of the key space). Commit = fsync the file, rename it into place, fsync the
folder. Blocking calls run in worker threads so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from anyio import CancelScope, to_thread

from glimpse.stores.base import Capabilities, check_key
from glimpse.stores.errors import (
    InvalidRange,
    ObjectNotFound,
    StoreError,
    StoreFull,
    StoreUnavailable,
    WriteDenied,
)

CHUNK_SIZE = 2 * 1024 * 1024
_IOV_MAX = 1024
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def _translate(exc: OSError, what: str) -> StoreError:
    if exc.errno in _FULL:
        return StoreFull(f"{what}: no space left in the filesystem store ({exc.strerror})")
    if exc.errno in _DENIED:
        return WriteDenied(f"{what}: the filesystem store refused the write ({exc.strerror})")
    return StoreUnavailable(f"{what}: filesystem store error ({exc.strerror})")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


class FilesystemWriter:
    def __init__(self, final: Path, partial: Path, fd: int) -> None:
        self._final = final
        self._partial = partial
        self._fd: int | None = fd
        self._done = False

    async def write(self, chunks: Sequence[bytes]) -> None:
        if self._fd is None:
            raise StoreUnavailable("write after commit or abort")
        await to_thread.run_sync(self._write_all, self._fd, chunks)

    @staticmethod
    def _write_all(fd: int, chunks: Sequence[bytes]) -> None:
        pending = [memoryview(c) for c in chunks if c]
        try:
            while pending:
                written = os.writev(fd, pending[:_IOV_MAX])
                if written == 0:
                    raise StoreUnavailable("write made no progress")
                while written and written >= len(pending[0]):  # drop what is fully written
                    written -= len(pending[0])
                    pending.pop(0)
                if written:
                    pending[0] = pending[0][written:]
        except OSError as exc:
            raise _translate(exc, "write") from exc

    async def commit(self) -> None:
        if self._fd is None:
            raise StoreUnavailable("commit after commit or abort")
        await to_thread.run_sync(self._commit)
        self._done = True

    def _commit(self) -> None:
        assert self._fd is not None
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            os.replace(self._partial, self._final)
            _fsync_dir(self._final.parent)
        except OSError as exc:
            raise _translate(exc, "commit") from exc

    async def abort(self) -> None:
        if self._done:
            return
        await to_thread.run_sync(self._abort)

    def _abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._partial.unlink(missing_ok=True)
        self._done = True


class FilesystemReader:
    """Reads ahead: the next chunk is read in a worker thread while the current one is sent."""

    def __init__(self, fd: int, size: int, offset: int, length: int) -> None:
        self.size = size
        self._fd: int | None = fd
        self._offset = offset
        self._remaining = length
        self._ahead: asyncio.Future[bytes] | None = None
        self._ahead_count = 0

    def _read_next(self) -> asyncio.Future[bytes] | None:
        if self._remaining <= 0 or self._fd is None:
            return None
        count = self._ahead_count = min(CHUNK_SIZE, self._remaining)
        future = asyncio.ensure_future(
            to_thread.run_sync(os.pread, self._fd, count, self._offset)
        )
        self._offset += count
        self._remaining -= count
        return future

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            self._ahead = self._read_next()
            while self._ahead is not None:
                expected = self._ahead_count
                data = await self._ahead
                if len(data) != expected:
                    raise StoreUnavailable("object shrank while being read")
                self._ahead = self._read_next()
                yield data
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._ahead is not None:
            # never close the descriptor under a read still running in its thread
            with CancelScope(shield=True), contextlib.suppress(BaseException):
                await self._ahead
            self._ahead = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FilesystemStore:
    capabilities = Capabilities(read=True, write=True, ranged_read=True)

    def __init__(self, root: Path, store_id: str = "file") -> None:
        self.id = store_id
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _paths(self, key: str) -> tuple[Path, Path]:
        check_key(key)
        return self.root / key, self.root / f".{key}.partial"

    async def open_writer(self, key: str) -> FilesystemWriter:
        final, partial = self._paths(key)
        try:
            fd = await to_thread.run_sync(
                os.open, partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640
            )
        except FileExistsError as exc:
            raise WriteDenied(f"a write to {key!r} is already in progress") from exc
        except OSError as exc:
            raise _translate(exc, "open") from exc
        return FilesystemWriter(final, partial, fd)

    async def open_reader(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> FilesystemReader:
        final, _ = self._paths(key)
        try:
            fd = await to_thread.run_sync(os.open, final, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r} in store {self.id!r}") from exc
        except OSError as exc:
            raise _translate(exc, "open") from exc
        size = os.fstat(fd).st_size
        if offset < 0 or (offset >= size and not (offset == 0 and size == 0)):
            os.close(fd)
            raise InvalidRange(f"offset {offset} outside object of {size} bytes", size)
        end = size if length is None else min(size, offset + length)
        return FilesystemReader(fd, size, offset, end - offset)

    async def delete(self, key: str) -> None:
        final, _ = self._paths(key)
        try:
            await to_thread.run_sync(final.unlink)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r} in store {self.id!r}") from exc

    async def discard(self, key: str) -> None:
        final, partial = self._paths(key)
        for path in (partial, final):
            await to_thread.run_sync(_unlink, path)
