"""The filesystem driver: one file per object under a root folder.

Layout: `<root>/<key>` for committed objects; `<root>/.<key>.partial` while a writer is open (the
leading dot keeps it out of the key space). Commit = fsync the file, hard-link it into place
(which, unlike a rename, fails if an object is there: a commit never replaces one), fsync the
folder (if that fails the link is undone: nothing half-committed), drop the partial name.
Blocking calls run in worker threads, at most `threads` at once for this store (its own
`CapacityLimiter`), and a cancelled call still waits for its thread, so no descriptor is closed
under a running write.

Writes bypass the page cache (`O_DIRECT`) where the filesystem allows it: a chunk that is
aligned in memory and in length (a slab of a received body, `stores/slabs.py`) is written as it is
when the file offset is aligned; other bytes are copied into one aligned 1 MiB buffer per
writer and written from it as it fills, straight to the device, while the next batch is hashed;
the unaligned tail goes through the page cache at commit. Buffered writes cost this machine 0.5
to 2.7 CPU-s per GiB in the kernel's copy into fresh page-cache pages (and left the whole image
to be written back by the commit's fsync); direct writes 0.2. A filesystem that refuses
`O_DIRECT` when the file is created gets buffered writes, with the same results. Reads are
buffered (the page cache serves an image downloaded again), except with `direct_reads`, for
data read once: the staging area's, whose buffered read from the disk cost 0.3 to 2.2 CPU-s per
GiB here, direct 0.2.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from anyio import CancelScope, CapacityLimiter, to_thread

from glimpse.stores.base import Capabilities, Chunk, ObjectInfo, Stored, check_key
from glimpse.stores.errors import (
    InvalidRange,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    StoreFull,
    StoreUnavailable,
    WriteDenied,
)
from glimpse.stores.slabs import SlabPool

T = TypeVar("T")
CHUNK_SIZE = 2 * 1024 * 1024
_IOV_MAX = 1024
#: Direct writes: the buffer each writer fills and writes from, and the alignment of a direct
#: write's length (its address and offset are page aligned: an mmap, whole buffers).
DIRECT_BUFFER = 1024 * 1024
_DIRECT_ALIGN = 4096
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


def _set_direct(fd: int) -> bool:
    """Turn `O_DIRECT` on for `fd`; False where the filesystem refuses it (EINVAL)."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
    except OSError:
        return False
    return True


def _aligned(data: memoryview) -> bool:
    """Whether a direct write can take `data` as it is: a writable buffer (read-only ones are
    bytes objects, never aligned) whose address and length are multiples of the block size."""
    if data.readonly or not data.c_contiguous or not data.nbytes \
            or data.nbytes % _DIRECT_ALIGN:
        return False
    return ctypes.addressof(ctypes.c_char.from_buffer(data)) % _DIRECT_ALIGN == 0


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


class FilesystemWriter:
    def __init__(self, final: Path, partial: Path, fd: int, limiter: CapacityLimiter,
                 direct: bool = False) -> None:
        self._final = final
        self._partial = partial
        self._fd: int | None = fd
        self._limiter = limiter
        self._done = False
        self._size = 0
        # Direct writes (module docstring): the aligned buffer, a view of it, how much of it
        # is filled, and whether the file still takes direct writes.
        self._buffer = mmap.mmap(-1, DIRECT_BUFFER) if direct else None
        self._view = memoryview(self._buffer) if self._buffer is not None else None
        self._filled = 0
        self._direct = direct

    async def write(self, chunks: Sequence[Chunk]) -> None:
        if self._fd is None:
            raise StoreUnavailable("write after commit or abort")
        await to_thread.run_sync(self._write, self._fd, chunks, limiter=self._limiter)
        self._size += sum(len(c) for c in chunks)

    def _write(self, fd: int, chunks: Sequence[Chunk]) -> None:
        view = self._view
        if not self._direct or view is None:
            self._write_all(fd, chunks)
            return
        for chunk in chunks:
            data = memoryview(chunk)
            if not self._filled and _aligned(data):  # a whole slab (stores/slabs.py): as it is
                self._write_direct(fd, data)
                continue
            taken = 0
            while taken < len(data):
                count = min(len(data) - taken, DIRECT_BUFFER - self._filled)
                view[self._filled:self._filled + count] = data[taken:taken + count]
                self._filled += count
                taken += count
                if self._filled == DIRECT_BUFFER:
                    self._flush(fd, DIRECT_BUFFER)

    def _flush(self, fd: int, count: int) -> None:
        """Write the buffer's first `count` bytes (aligned) directly and empty it."""
        assert self._view is not None
        self._write_direct(fd, self._view[:count])
        self._filled = 0

    def _write_direct(self, fd: int, data: memoryview) -> None:
        """Write aligned `data` directly. A short direct write (the device filling up) leaves
        an unaligned offset: the rest of the file is then written buffered."""
        try:
            written = os.write(fd, data)
        except OSError as exc:
            raise _translate(exc, "write") from exc
        if written < len(data):
            self._stop_direct(fd)
            self._write_all(fd, [data[written:]])

    def _stop_direct(self, fd: int) -> None:
        if self._direct:
            self._direct = False
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
            except OSError as exc:
                raise _translate(exc, "write") from exc

    def _write_tail(self, fd: int) -> None:
        """At commit: what is left in the buffer, its aligned part directly, the rest
        buffered."""
        if self._view is None or not self._filled:
            return
        filled = self._filled
        aligned = filled - filled % _DIRECT_ALIGN if self._direct else 0
        if aligned:
            self._flush(fd, aligned)
        if aligned < filled:
            self._stop_direct(fd)
            self._write_all(fd, [self._view[aligned:filled]])
        self._filled = 0

    def _release(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None

    @staticmethod
    def _write_all(fd: int, chunks: Sequence[Chunk]) -> None:
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

    async def commit(self) -> Stored:
        if self._fd is None:
            raise StoreUnavailable("commit after commit or abort")
        await to_thread.run_sync(self._commit, limiter=self._limiter)
        self._done = True
        return Stored(self._size)

    def _commit(self) -> None:
        assert self._fd is not None
        try:
            self._write_tail(self._fd)
            self._release()
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            os.link(self._partial, self._final)
        except FileExistsError as exc:
            raise ObjectExists(f"an object is already committed under {self._final.name!r}"
                               ) from exc
        except OSError as exc:
            raise _translate(exc, "commit") from exc
        try:
            _fsync_dir(self._final.parent)
        except OSError as exc:
            self._final.unlink(missing_ok=True)  # not durable: not committed
            raise _translate(exc, "commit") from exc
        self._partial.unlink(missing_ok=True)

    async def abort(self) -> None:
        if self._done:
            return
        await to_thread.run_sync(self._abort, limiter=self._limiter)

    def _abort(self) -> None:
        self._release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._partial.unlink(missing_ok=True)
        self._done = True


class FilesystemReader:
    """Reads ahead: the next chunk is read in a worker thread while the current one is sent.

    `direct` (a descriptor opened with `O_DIRECT`): each chunk is read past the page cache into
    a slab (from the block boundary at or before it); a chunk that starts on a block boundary
    is handed over as a view of its slab, which a direct write takes as it is, and another is
    copied out of it."""

    def __init__(self, fd: int, size: int, offset: int, length: int,
                 limiter: CapacityLimiter, direct: bool = False) -> None:
        self.size = size
        self._limiter = limiter
        self._fd: int | None = fd
        self._offset = offset
        self._remaining = length
        self._ahead: asyncio.Future[Chunk] | None = None
        self._ahead_count = 0
        # Slabs a chunk ahead, the current one and the pipeline's batches (bounded by it).
        self._slabs = SlabPool(CHUNK_SIZE + _DIRECT_ALIGN, keep=8) if direct else None

    @staticmethod
    def _pread(fd: int, count: int, offset: int, slab: mmap.mmap | None) -> Chunk:
        if slab is None:
            return os.pread(fd, count, offset)
        start = offset - offset % _DIRECT_ALIGN
        skip = offset - start
        span = -(-(skip + count) // _DIRECT_ALIGN) * _DIRECT_ALIGN
        view = memoryview(slab)
        got = os.preadv(fd, [view[:span]], start)
        data = view[skip:max(skip, min(got, skip + count))]
        return data if not skip else data.tobytes()

    def _read_next(self) -> asyncio.Future[Chunk] | None:
        if self._remaining <= 0 or self._fd is None:
            return None
        count = self._ahead_count = min(CHUNK_SIZE, self._remaining)
        slab = self._slabs.take() if self._slabs is not None else None
        future = asyncio.ensure_future(to_thread.run_sync(
            self._pread, self._fd, count, self._offset, slab, limiter=self._limiter))
        self._offset += count
        self._remaining -= count
        return future

    async def chunks(self) -> AsyncIterator[Chunk]:
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
        self._slabs = None


@dataclass(frozen=True)
class FilesystemOptions:
    """The driver's configuration (`[stores.<id>]` options of driver `filesystem`)."""

    path: str
    threads: int = 16
    #: Write past the page cache (`O_DIRECT`) where the filesystem allows it.
    direct_writes: bool = True

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path must name a folder")
        if self.threads < 1:
            raise ValueError("threads must be at least 1")


class FilesystemDriver:
    capabilities = Capabilities(read=True, write=True, ranged_read=True)

    @property
    def url_prefix(self) -> str:
        """Location URLs of this store: `file://<folder>/<key>`."""
        return f"file://{self.root.absolute()}/"

    def __init__(self, path: Path | str, threads: int = 16, direct_writes: bool = True,
                 direct_reads: bool = False) -> None:
        """`direct_reads`: read past the page cache too, for data read once (the staging
        area's); a store's images are read buffered, so that the page cache serves an image
        downloaded again."""
        FilesystemOptions(str(path), threads, direct_writes)
        self.root = Path(path)
        self._limiter = CapacityLimiter(threads)
        self._direct_writes = direct_writes
        self._direct_reads = direct_reads
        self.root.mkdir(parents=True, exist_ok=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / key, self.root / f".{key}.partial"

    async def open_writer(self, key: str, size_hint: int | None = None) -> FilesystemWriter:
        final, partial = self._paths(key)
        try:
            fd, direct = await self._run(self._create, partial)
        except FileExistsError as exc:
            raise WriteDenied(f"a write to {key!r} is already in progress") from exc
        except OSError as exc:
            raise _translate(exc, "open") from exc
        return FilesystemWriter(final, partial, fd, self._limiter, direct)

    def _create(self, partial: Path) -> tuple[int, bool]:
        """The partial file, and whether it takes direct writes (the filesystem refuses
        `O_DIRECT` with EINVAL)."""
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        return fd, self._direct_writes and _set_direct(fd)

    async def open_reader(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> FilesystemReader:
        final, _ = self._paths(key)
        try:
            fd, direct = await self._run(self._open_read, final)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r}") from exc
        except OSError as exc:
            raise _translate(exc, "open") from exc
        size = os.fstat(fd).st_size
        if offset < 0 or (offset >= size and not (offset == 0 and size == 0)):
            os.close(fd)
            raise InvalidRange(f"offset {offset} outside object of {size} bytes", size)
        end = size if length is None else min(size, offset + length)
        return FilesystemReader(fd, size, offset, end - offset, self._limiter, direct)

    def _open_read(self, final: Path) -> tuple[int, bool]:
        fd = os.open(final, os.O_RDONLY | os.O_CLOEXEC)
        return fd, self._direct_reads and _set_direct(fd)

    async def stat(self, key: str) -> ObjectInfo:
        final, _ = self._paths(key)
        try:
            found = await self._run(os.stat, final)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r}") from exc
        except OSError as exc:
            raise _translate(exc, "stat") from exc
        return ObjectInfo(found.st_size, f"{found.st_ino:x}-{found.st_mtime_ns:x}")

    async def delete(self, key: str) -> None:
        final, _ = self._paths(key)
        try:
            await self._run(final.unlink)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r}") from exc
        except OSError as exc:
            raise _translate(exc, "delete") from exc

    def path_of(self, key: str) -> Path:
        """The file of the committed object `key` (for programs that need a local path, such
        as qemu-img on staged data); it may not exist. Files named with a leading dot in
        `root` are never objects."""
        return self._paths(check_key(key))[0]

    async def adopt(self, key: str, path: Path) -> None:
        """Commit the file `path` (in `root`, its name starting with a dot, so out of the key
        space) as object `key`, as a writer commits: fsync, hard link (never replacing an
        object: ObjectExists), fsync of the folder, `path` removed. On failure too `path` is
        removed."""
        if path.parent.resolve() != self.root.resolve() or not path.name.startswith("."):
            raise StoreUnavailable(f"cannot adopt {path}: not a dot-file in {self.root}")
        final, _ = self._paths(check_key(key))
        try:
            fd = await self._run(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _translate(exc, "adopt") from exc
        writer = FilesystemWriter(final, path, fd, self._limiter)
        try:
            await writer.commit()
        except BaseException:
            with CancelScope(shield=True):
                await writer.abort()
            raise

    async def check(self) -> None:
        if not await self._run(os.access, self.root, os.W_OK | os.X_OK):
            raise WriteDenied(f"cannot write to the folder {self.root}")

    async def aclose(self) -> None:
        pass

    async def discard(self, key: str) -> None:
        final, partial = self._paths(key)
        try:
            for path in (partial, final):
                await self._run(_unlink, path)
        except OSError as exc:
            raise _translate(exc, "discard") from exc
