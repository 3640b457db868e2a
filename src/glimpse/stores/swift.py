"""The OpenStack Swift driver: objects in one container, large ones as Static Large Objects.

Layout: `<container>/<key>` holds a committed object: a plain object, or an SLO manifest whose
segments live in `<container>_segments/<key>/<upload id>/<index>` (a separate container, so
that nothing of an uncommitted write is ever visible under a key; the upload id keeps two
writes to one key apart, the `<key>/` prefix lets `discard` find what a dead writer left).

Writing, by what the writer knows:
- a declared size (`size_hint`) up to `large_object_size`: one streamed PUT to the key, whose
  body ends only at `commit()` (Swift stores nothing of a PUT whose body never ended);
- a larger declared size: segments sized so that the object fits in `max_segments` (a size
  beyond `max_segments` x 5 GiB is refused with `StoreFull` before any byte is accepted);
- no declared size: the first `min(large_object_size, 4 MiB)` bytes are held in memory; a commit
  within them makes one PUT, more bytes turn the write into segments of `segment_size`, larger
  only once needed for `max_object_size` to still fit in `max_segments` (then `StoreFull`).
Each segment is one streamed PUT: memory stays at a few chunks whatever the segment size, and a
segment's PUT completes (Swift's fsync and answer) while the next one already streams, at most
`concurrency` of them at once. The manifest (or the plain PUT) carries `If-None-Match: *`, so a
commit never replaces an object (`ObjectExists`). Abort and delete remove the segments.

Reading: a GET with `Range`; a download that breaks is resumed from the byte reached (at most
`read_retries` times, with `If-Match` on the first answer's etag); past that, or when Swift
cannot be reached, `StoreUnavailable`: never a short stream.

Authentication: tempauth/swauth (`auth_version` "1": `GET auth_url` with `X-Auth-User` and
`X-Auth-Key`) or Keystone v3 (keystoneauth1, in a thread: its calls block). Tokens are renewed
shortly before they expire, and once on a 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import httpcore
import httpx
from anyio import to_thread

from glimpse.stores.base import Capabilities, Chunk, ObjectInfo, Stored
from glimpse.stores.errors import (
    InvalidRange,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    StoreFull,
    StoreUnavailable,
    WriteDenied,
)

MiB = 1024 * 1024
GiB = 1024 * MiB
#: Swift's own cap on one object (plain object or segment).
MAX_SWIFT_OBJECT = 5 * GiB
#: What a write of unknown size may hold in memory while it could still become one plain PUT.
SMALL_BUFFER = 4 * MiB
#: The most one socket read of a Swift answer may return. httpcore asks for 64 KiB, which cuts
#: each of the event loop's reads (up to 256,000 bytes with uvloop) into four, copying the rest
#: every time, and pays its per-read costs (a cancel scope, h11, pausing and resuming the
#: transport) four times as often. Set on httpcore's connection class: every httpx client in
#: the process reads this way (the HTTP store's too), which only ever means fewer reads.
READ_SIZE = 1024 * 1024
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = max(
    READ_SIZE, httpcore.AsyncHTTP11Connection.READ_NUM_BYTES)
#: Pauses before sending again after a connection failure (None: give up).
TRANSPORT_RETRY_DELAYS = (0.1, 0.5, None)
#: Renew a token this long before Swift would refuse it.
TOKEN_MARGIN = 30.0


@dataclass(frozen=True)
class SwiftOptions:
    """The driver's configuration (`[stores.<id>]` options of driver `swift`)."""

    auth_url: str
    user: str
    key: str
    container: str = "glimpse"
    auth_version: str = "1"
    project_name: str | None = None
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    region_name: str | None = None
    interface: str = "public"
    large_object_size: int = GiB
    segment_size: int = 64 * MiB
    max_segments: int = 1000
    max_object_size: int = 1024**4
    concurrency: int = 4
    timeout: float = 60.0
    read_retries: int = 3
    create_container: bool = True

    def __post_init__(self) -> None:
        if self.auth_version not in ("1", "3"):
            raise ValueError("auth_version must be 1 (tempauth) or 3 (Keystone)")
        if self.auth_version == "3" and not self.project_name:
            raise ValueError("auth_version 3 needs project_name")
        if not 0 < self.large_object_size <= MAX_SWIFT_OBJECT:
            raise ValueError(f"large_object_size must be in 1..{MAX_SWIFT_OBJECT}")
        if not 0 < self.segment_size <= MAX_SWIFT_OBJECT:
            raise ValueError(f"segment_size must be in 1..{MAX_SWIFT_OBJECT}")
        if self.max_segments < 1 or self.concurrency < 1 or self.read_retries < 0:
            raise ValueError("max_segments and concurrency must be at least 1, "
                             "read_retries at least 0")
        if not self.container or "/" in self.container:
            raise ValueError("container must be a non-empty name without '/'")
        if self.max_segments * MAX_SWIFT_OBJECT < self.max_object_size:
            raise ValueError(f"max_object_size does not fit in max_segments segments of "
                             f"at most {MAX_SWIFT_OBJECT} bytes")


def _failure(response: httpx.Response, what: str, *, writing: bool = False) -> StoreError:
    """The store error for an unexpected Swift answer (one table for the whole driver)."""
    status = response.status_code
    message = f"{what}: Swift answered {status}"
    if status == 404:
        return ObjectNotFound(message)
    if status in (413, 507):
        return StoreFull(message)
    if status in (401, 403) and writing:
        return WriteDenied(message)
    return StoreUnavailable(message)


def _unreachable(exc: Exception, what: str) -> StoreUnavailable:
    return StoreUnavailable(f"{what}: Swift cannot be reached ({type(exc).__name__}: {exc})")


class _Session:
    """A token and the account's storage URL."""

    def __init__(self, token: str, storage_url: str, expires: float) -> None:
        self.token = token
        self.storage_url = storage_url.rstrip("/")
        self.expires = expires  # time.monotonic() deadline


class _StreamedPut:
    """One PUT whose body is fed chunk by chunk (`send`), ended by `finish` or cut by `cancel`.

    At most one chunk waits in the queue while the HTTP client writes the previous one: memory
    stays bounded whatever the object's size."""

    def __init__(self, driver: SwiftDriver, path: str, headers: dict[str, str],
                 content_length: int | None = None) -> None:
        self.size = 0
        self._queue: asyncio.Queue[Chunk | None] = asyncio.Queue(maxsize=1)
        if content_length is not None:
            headers = {**headers, "Content-Length": str(content_length)}
        self._task: asyncio.Task[httpx.Response] = asyncio.ensure_future(
            driver._put_stream(path, headers, self._body()))

    async def _body(self) -> AsyncIterator[Chunk]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    @property
    def ended_early(self) -> bool:
        return self._task.done()

    async def send(self, chunk: Chunk | None) -> None:
        """Queue `chunk` (None ends the body); returns early if the request already ended."""
        if self._task.done():
            return
        queued = asyncio.ensure_future(self._queue.put(chunk))
        await asyncio.wait({queued, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not queued.done():
            queued.cancel()
        elif chunk is not None:
            self.size += len(chunk)

    async def finish(self) -> httpx.Response:
        """End the body and wait for Swift's answer."""
        await self.send(None)
        return await self._task

    async def cancel(self) -> None:
        """Cut the request before its body ends: Swift keeps nothing of it."""
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


class SwiftWriter:
    def __init__(self, driver: SwiftDriver, key: str, size_hint: int | None) -> None:
        self._driver = driver
        self._key = key
        self._options = driver.options
        self._upload = uuid.uuid4().hex
        self._size = 0
        self._done = False
        self._buffer: list[Chunk] | None = None  # unknown size, still small
        self._plain: _StreamedPut | None = None
        self._segmented = False
        self._uniform: int | None = None  # the segment size, for a declared size
        self._limit = 0  # of the open segment
        self._closed = 0  # bytes in segments whose body ended
        self._segment: _StreamedPut | None = None
        self._segment_names: list[str] = []
        self._finishing: list[asyncio.Task[dict[str, Any]]] = []
        options = self._options
        if size_hint is None:
            self._buffer = []
        elif size_hint > options.large_object_size:
            self._segmented = True
            self._uniform = max(options.segment_size, math.ceil(size_hint / options.max_segments))
            if self._uniform > MAX_SWIFT_OBJECT:
                raise StoreFull(f"{size_hint} bytes do not fit in {options.max_segments} "
                                f"Swift segments of at most {MAX_SWIFT_OBJECT} bytes")

    def _next_limit(self) -> int:
        """The size of the next segment. Of unknown total: `segment_size` for as long as the
        segments left, at Swift's largest, could still hold the rest of `max_object_size`;
        then as large as needed (so early segments stay small, and the cap always fits)."""
        if self._uniform is not None:
            return self._uniform
        options = self._options
        later = options.max_segments - len(self._segment_names) - 1
        rest = options.max_object_size - self._closed
        return min(MAX_SWIFT_OBJECT, max(options.segment_size, rest - later * MAX_SWIFT_OBJECT))

    # -- writing ---------------------------------------------------------------------------

    async def write(self, chunks: Sequence[Chunk]) -> None:
        if self._done:
            raise StoreUnavailable("write after commit or abort")
        for chunk in chunks:
            if chunk:
                await self._write_one(chunk)
                self._size += len(chunk)

    async def _write_one(self, chunk: Chunk) -> None:
        if self._buffer is not None:
            held = sum(len(c) for c in self._buffer)
            if held + len(chunk) <= min(self._options.large_object_size, SMALL_BUFFER):
                self._buffer.append(chunk)
                return
            # too big for one small PUT: it becomes a large object, starting with what is held
            held_chunks, self._buffer = self._buffer, None
            self._segmented = True
            for held_chunk in held_chunks:
                await self._to_segments(held_chunk)
            await self._to_segments(chunk)
        elif self._segmented:
            await self._to_segments(chunk)
        else:
            if self._plain is None:
                self._plain = _StreamedPut(self._driver, self._driver.object_path(self._key),
                                           {"If-None-Match": "*"})
            await self._plain.send(chunk)
            await self._check_early(self._plain, "write")

    async def _check_early(self, put: _StreamedPut, what: str) -> None:
        """A PUT that ended before its body did: a refusal (412 is kept for the commit)."""
        if put.ended_early:
            try:
                response = await put.finish()
            except StoreError:
                raise
            if response.status_code not in (201, 412):
                raise _failure(response, what, writing=True)

    async def _to_segments(self, chunk: Chunk) -> None:
        view = memoryview(chunk)
        while view:
            if self._segment is None:
                await self._open_segment()
            assert self._segment is not None
            room = self._limit - self._segment.size
            piece, view = view[:room], view[room:]
            await self._segment.send(piece.tobytes() if len(piece) < len(chunk) else chunk)
            await self._check_early(self._segment, "segment write")
            if self._segment.size >= self._limit:
                await self._close_segment()

    async def _open_segment(self) -> None:
        index = len(self._segment_names)
        if index >= self._options.max_segments:
            raise StoreFull(f"the object outgrew {self._options.max_segments} segments "
                            f"({self._closed} bytes)")
        await self._driver.ensure_containers()
        name = f"{self._key}/{self._upload}/{index:08d}"
        self._limit = self._next_limit()
        self._segment_names.append(name)
        self._segment = _StreamedPut(self._driver, self._driver.segment_path(name), {})

    async def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        assert segment is not None
        self._closed += segment.size
        name = self._segment_names[-1]
        self._finishing.append(asyncio.ensure_future(self._finish_segment(segment, name)))
        # bounded: wait for the oldest segments still completing
        while sum(not t.done() for t in self._finishing) >= self._options.concurrency:
            await asyncio.wait([t for t in self._finishing if not t.done()],
                               return_when=asyncio.FIRST_COMPLETED)
        for task in self._finishing:
            failed = task.exception() if task.done() else None
            if failed is not None:
                raise failed

    async def _finish_segment(self, segment: _StreamedPut, name: str) -> dict[str, Any]:
        response = await segment.finish()
        if response.status_code != 201:
            raise _failure(response, "segment upload", writing=True)
        return {"path": f"/{self._driver.segment_container}/{name}",
                "etag": response.headers.get("etag", "").strip('"') or None,
                "size_bytes": segment.size}

    # -- commit and abort -----------------------------------------------------------------

    async def commit(self) -> Stored:
        if self._done:
            raise StoreUnavailable("commit after commit or abort")
        if self._segmented:
            version = await self._commit_manifest()
        else:
            version = await self._commit_plain()
        self._done = True
        return Stored(self._size, version)

    async def _commit_plain(self) -> str | None:
        if self._plain is None:
            await self._driver.ensure_containers()
            body = self._buffer or []
            response = await self._driver.put_small(self._driver.object_path(self._key), body)
        else:
            response = await self._plain.finish()
        if response.status_code == 412:
            raise ObjectExists(f"an object is already committed under {self._key!r}")
        if response.status_code != 201:
            raise _failure(response, "commit", writing=True)
        return response.headers.get("etag", "").strip('"') or None

    async def _commit_manifest(self) -> str | None:
        if self._segment is not None:
            await self._close_segment()
        manifest = [await task for task in self._finishing]
        response = await self._driver.request(
            "PUT", self._driver.object_path(self._key), writing=True,
            params={"multipart-manifest": "put"}, headers={"If-None-Match": "*"},
            content=json.dumps(manifest).encode())
        if response.status_code == 412:
            raise ObjectExists(f"an object is already committed under {self._key!r}")
        if response.status_code != 201:
            raise _failure(response, "manifest upload", writing=True)
        return response.headers.get("etag", "").strip('"') or None

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = None
        for put in (self._plain, self._segment):
            if put is not None:
                await put.cancel()
        self._plain = self._segment = None
        # segments whose body ended: let them land, so that their delete is not overtaken
        for task in self._finishing:
            with contextlib.suppress(BaseException):
                await task
        for name in self._segment_names:
            await self._driver.delete_segment(name)


class SwiftReader:
    def __init__(self, driver: SwiftDriver, key: str, response: httpx.Response | None,
                 size: int, offset: int, end: int) -> None:
        self.size = size
        self._driver = driver
        self._key = key
        self._response = response
        self._offset = offset
        self._end = end
        self._etag = response.headers.get("etag") if response is not None else None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            retries = 0
            while self._offset < self._end:
                if self._response is None:
                    self._response = await self._resume(retries)
                try:
                    # chunks as they arrive: re-slicing them to one size would copy each twice
                    async for part in self._response.aiter_raw():
                        part = part[: self._end - self._offset]
                        self._offset += len(part)
                        if part:
                            yield part
                    if self._offset < self._end:
                        raise httpx.RemoteProtocolError("body ended early")
                except httpx.TransportError as exc:
                    retries += 1
                    if retries > self._driver.options.read_retries:
                        raise _unreachable(exc, f"read of {self._key!r}") from exc
                    await self._response.aclose()
                    self._response = None
        finally:
            await self.aclose()

    async def _resume(self, retries: int) -> httpx.Response:
        await asyncio.sleep(0.2 * retries)
        headers = {"Range": f"bytes={self._offset}-{self._end - 1}"}
        if self._etag:
            headers["If-Match"] = self._etag  # the same object, or nothing
        response = await self._driver.request(
            "GET", self._driver.object_path(self._key), headers=headers, stream=True)
        if response.status_code != 206:
            await response.aclose()
            raise StoreUnavailable(f"resuming the read of {self._key!r}: Swift answered "
                                   f"{response.status_code}")
        return response

    async def aclose(self) -> None:
        if self._response is not None:
            response, self._response = self._response, None
            await response.aclose()


class SwiftDriver:
    capabilities = Capabilities(read=True, write=True, ranged_read=True)

    @property
    def url_prefix(self) -> str:
        """Location URLs of this store: `swift+<scheme>://<auth host>/<container>/<key>`, no
        credentials in them (unlike Glance's)."""
        url = httpx.URL(self.options.auth_url)
        return f"swift+{url.scheme}://{url.netloc.decode()}/{self.options.container}/"

    def __init__(self, options: SwiftOptions | None = None, **settings: Any) -> None:
        """Either `SwiftOptions`, or its fields as keywords (as configuration gives them).
        Raises `ValueError` for options that cannot work."""
        if options is None:
            options = SwiftOptions(**settings)
        elif settings:
            raise TypeError("give SwiftOptions or keywords, not both")
        self.options = options
        self.segment_container = f"{options.container}_segments"
        self._client: httpx.AsyncClient | None = None
        self._session: _Session | None = None
        self._auth_lock: asyncio.Lock | None = None
        self._containers_ready = False

    # -- plumbing --------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.options.timeout, connect=min(10.0,
                                                                        self.options.timeout)),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connections (the driver reopens them when used again)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def object_path(self, key: str) -> str:
        return f"/{quote(self.options.container)}/{quote(key)}"

    def segment_path(self, name: str) -> str:
        return f"/{quote(self.segment_container)}/{quote(name)}"

    async def _authenticate(self) -> _Session:
        if self.options.auth_version == "3":
            return await to_thread.run_sync(self._keystone_session)
        request = self.client.build_request("GET", self.options.auth_url, headers={
            "X-Auth-User": self.options.user, "X-Auth-Key": self.options.key})
        response = await self._send(request, "authentication")
        if response.status_code not in (200, 204):
            raise StoreUnavailable(
                f"authentication at {self.options.auth_url} refused ({response.status_code})")
        life = float(response.headers.get("x-auth-token-expires", 3600))
        return _Session(response.headers["x-auth-token"], response.headers["x-storage-url"],
                        time.monotonic() + life)

    def _keystone_session(self) -> _Session:
        """A fresh Keystone v3 login (blocking: run in a thread) and the catalog's storage URL."""
        from keystoneauth1 import exceptions, session
        from keystoneauth1.identity import v3

        options = self.options
        where = (f"Keystone authentication at {options.auth_url} (user {options.user!r}, "
                 f"project {options.project_name!r})")
        auth = v3.Password(auth_url=options.auth_url, username=options.user,
                           password=options.key, project_name=options.project_name,
                           user_domain_name=options.user_domain_name,
                           project_domain_name=options.project_domain_name)
        # A timeout, else a Keystone that accepts but never answers would hang the login.
        keystone = session.Session(auth=auth, timeout=options.timeout)
        try:
            access = auth.get_access(keystone)
            url = access.service_catalog.url_for(service_type="object-store",
                                                 interface=options.interface,
                                                 region_name=options.region_name)
        except exceptions.Unauthorized as exc:  # wrong password, user, project or domain
            raise StoreUnavailable(f"{where} refused: {exc}") from exc
        except exceptions.EndpointNotFound as exc:
            raise StoreUnavailable(f"{where}: the catalog has no object-store endpoint for "
                                   f"interface {options.interface!r}, region "
                                   f"{options.region_name!r} ({exc})") from exc
        except exceptions.ClientException as exc:
            raise StoreUnavailable(f"{where} failed: {exc}") from exc
        finally:
            keystone.session.close()  # its connection pool: each login has a session of its own
        if not access.auth_token or not url:
            raise StoreUnavailable(f"{where}: no token or no object-store endpoint")
        expires = access.expires.timestamp() - time.time() if access.expires else 3600.0
        return _Session(access.auth_token, url, time.monotonic() + expires)

    async def _current(self, stale: _Session | None = None) -> _Session:
        if self._auth_lock is None:
            self._auth_lock = asyncio.Lock()
        async with self._auth_lock:
            session = self._session
            if (session is None or session is stale
                    or session.expires - time.monotonic() < TOKEN_MARGIN):
                session = self._session = await self._authenticate()
            return session

    async def request(self, method: str, path: str, *, writing: bool = False,
                      headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None, content: bytes | None = None,
                      stream: bool = False) -> httpx.Response:
        """One request to the account (`path` below the storage URL), re-authenticating once
        on a 401. Transport failures are `StoreUnavailable`; answers are the caller's."""
        session = await self._current()
        for attempt in (0, 1):
            request = self.client.build_request(
                method, session.storage_url + path, params=params, content=content,
                headers={**(headers or {}), "X-Auth-Token": session.token})
            response = await self._send(request, f"{method} {path}", stream=stream)
            if response.status_code != 401 or attempt:
                return response
            await response.aclose()
            session = await self._current(stale=session)
        raise AssertionError("unreachable")

    async def _send(self, request: httpx.Request, what: str, *,
                    stream: bool = False) -> httpx.Response:
        """Send, again after a moment when the connection failed where a retry cannot do
        harm: before the request went out, or for a read (a proxy worker that just died, a
        kept-alive connection the server had closed)."""
        for delay in TRANSPORT_RETRY_DELAYS:
            try:
                return await self.client.send(request, stream=stream)
            except httpx.TransportError as exc:
                if not (isinstance(exc, httpx.ConnectError)
                        or request.method in ("GET", "HEAD")) or delay is None:
                    raise _unreachable(exc, what) from exc
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _put_stream(self, path: str, headers: dict[str, str],
                          body: AsyncIterator[Chunk]) -> httpx.Response:
        # A streamed body cannot be replayed: the token is renewed before, never after.
        session = await self._current()
        try:
            # httpx is typed for bytes, and hands each piece to h11, which joins them: slabs'
            # memoryviews go as they are (tests/stores/test_conformance.py).
            content = cast(AsyncIterator[bytes], body)
            return await self.client.put(session.storage_url + path, content=content,
                                         headers={**headers, "X-Auth-Token": session.token})
        except httpx.TransportError as exc:
            raise _unreachable(exc, f"PUT {path}") from exc

    async def put_small(self, path: str, chunks: list[Chunk]) -> httpx.Response:
        """PUT an object whose bytes are all in `chunks`: unlike a streamed body it can be sent
        again, so a token revoked meanwhile (401) is renewed and the PUT sent once more."""
        async def body() -> AsyncIterator[Chunk]:
            for chunk in chunks:
                yield chunk

        headers = {"If-None-Match": "*", "Content-Length": str(sum(len(c) for c in chunks))}
        stale = await self._current()
        response = await self._put_stream(path, headers, body())
        if response.status_code != 401:
            return response
        await response.aclose()
        await self._current(stale=stale)
        return await self._put_stream(path, headers, body())

    async def ensure_containers(self) -> None:
        if self._containers_ready or not self.options.create_container:
            return
        for container in (self.options.container, self.segment_container):
            response = await self.request("PUT", f"/{quote(container)}", writing=True)
            if response.status_code not in (201, 202, 204):
                raise _failure(response, f"creating container {container!r}", writing=True)
        self._containers_ready = True

    async def delete_segment(self, name: str) -> None:
        response = await self.request("DELETE", self.segment_path(name), writing=True)
        if response.status_code not in (204, 404):
            raise _failure(response, "segment delete", writing=True)

    async def check(self) -> None:
        """Prove the configuration at start-up: log in, and find the container (or be allowed
        to create it). Raises `StoreUnavailable` (or `WriteDenied`) saying what is wrong."""
        session = await self._current()
        response = await self.request("HEAD", f"/{quote(self.options.container)}")
        if response.status_code == 404 and self.options.create_container:
            await self.ensure_containers()
        elif response.status_code not in (200, 204):
            raise StoreUnavailable(f"container {self.options.container!r} at "
                                   f"{session.storage_url}: Swift answered "
                                   f"{response.status_code}")

    # -- the driver contract ---------------------------------------------------------------

    async def open_writer(self, key: str, size_hint: int | None = None) -> SwiftWriter:
        writer = SwiftWriter(self, key, size_hint)  # refuses what cannot fit, first
        await self.ensure_containers()
        return writer

    async def open_reader(self, key: str, offset: int = 0,
                          length: int | None = None) -> SwiftReader:
        if length == 0:
            size = (await self.stat(key)).size
            if offset >= size and not (offset == 0 and size == 0):
                raise InvalidRange(f"offset {offset} outside object of {size} bytes", size)
            return SwiftReader(self, key, None, size, offset, offset)
        headers = {}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{last}"
        response = await self.request("GET", self.object_path(key), headers=headers,
                                      stream=True)
        if response.status_code == 200:
            size = int(response.headers.get("content-length", 0))
            return SwiftReader(self, key, response, size, 0, size)
        if response.status_code != 206:
            await response.aclose()
        else:
            first, _, total = response.headers["content-range"].removeprefix(
                "bytes ").partition("/")
            start, _, stop = first.partition("-")
            size = int(total)
            return SwiftReader(self, key, response, size, int(start), int(stop) + 1)
        if response.status_code == 416:
            size = int(response.headers.get("content-range", "*/0").rpartition("/")[2])
            if offset == 0 and size == 0:
                return SwiftReader(self, key, None, 0, 0, 0)
            raise InvalidRange(f"offset {offset} outside object of {size} bytes", size)
        if response.status_code == 404:
            raise ObjectNotFound(f"no object {key!r}")
        raise _failure(response, f"read of {key!r}")

    async def stat(self, key: str) -> ObjectInfo:
        response = await self.request("HEAD", self.object_path(key))
        if response.status_code == 404:
            raise ObjectNotFound(f"no object {key!r}")
        if response.status_code not in (200, 204):
            raise _failure(response, f"stat of {key!r}")
        return ObjectInfo(int(response.headers.get("content-length", 0)),
                          response.headers.get("etag", "").strip('"') or None)

    async def delete(self, key: str) -> None:
        # An SLO goes with its segments; a plain object answers "Not an SLO manifest".
        response = await self.request(
            "DELETE", self.object_path(key), writing=True,
            params={"multipart-manifest": "delete"}, headers={"Accept": "application/json"})
        if response.status_code == 404:
            raise ObjectNotFound(f"no object {key!r}")
        if response.status_code != 200:
            raise _failure(response, f"delete of {key!r}", writing=True)
        result = response.json()
        errors = result.get("Errors") or []
        if any("Not an SLO manifest" in str(error) for error in errors):
            response = await self.request("DELETE", self.object_path(key), writing=True)
            if response.status_code == 404:
                raise ObjectNotFound(f"no object {key!r}")
            if response.status_code != 204:
                raise _failure(response, f"delete of {key!r}", writing=True)
            return
        if errors or not str(result.get("Response Status", "")).startswith("200"):
            raise StoreUnavailable(f"delete of {key!r}: {result.get('Response Status')} "
                                   f"{errors}")
        if not result.get("Number Deleted"):
            raise ObjectNotFound(f"no object {key!r}")

    async def discard(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            await self.delete(key)
        for name in await self._segments_of(key):
            await self.delete_segment(name)

    async def _segments_of(self, key: str) -> list[str]:
        names: list[str] = []
        marker = ""
        while True:
            response = await self.request(
                "GET", f"/{quote(self.segment_container)}",
                params={"format": "json", "prefix": f"{key}/", "marker": marker})
            if response.status_code == 404:
                return names
            if response.status_code != 200:
                raise _failure(response, f"listing the segments of {key!r}")
            page = [entry["name"] for entry in response.json()]
            if not page:
                return names
            names.extend(page)
            marker = page[-1]
