"""The S3 driver: one object per key in one bucket of any S3-compatible endpoint (AWS, Swift's
s3api, moto).

Writing. A writer buffers what it is given; an object that ends at or below `multipart_threshold` is
sent with one PutObject at commit. Once it grows past the threshold the writer starts a multipart
upload and sends parts while the caller goes on writing, several at once: every part buffer (the one
being filled included) holds one of `parts_in_flight` slots, so a writer's memory is bounded by
`parts_in_flight * part size` (the first part is `max(part_size, multipart_threshold)`). The part
size follows the declared size (`size_hint`), so that an object fits within `max_parts` parts
(10,000 on S3, 1,000 on Swift's s3api by default); when a part would have to exceed S3's 5 GiB, the
writer is refused before any byte is accepted (`StoreFull`). With an unknown size the part size is
the configured one, and the write that needs part `max_parts + 1` fails with `StoreFull`. Any
failure (a part refused, a lost connection, `abort()`, a cancelled commit) aborts the multipart
upload, so nothing is left behind; `discard` also aborts uploads left by a process that died.

Nothing is visible before commit: S3 shows an object only once PutObject or CompleteMultipartUpload
returns. A commit never replaces an object: a HEAD right before the final call refuses an existing
object, and the call itself carries `If-None-Match: *`, which makes the refusal atomic where the
server honours it (AWS and moto on both calls: 412). Swift 2.30's s3api honours it on
CompleteMultipartUpload but answers 501 to a conditional PutObject: the driver then stops sending it
on PutObject and relies on the HEAD alone. There one race remains for objects below the threshold:
two writers committing the same key at the same moment may both pass the HEAD, and the later PUT
replaces the earlier. Glimpse writes each key once (keys are image ids), so only a duplicated upload
of one image could hit it.

Reading is one GET (with `Range` for a ranged read), opened before `open_reader` returns so that a
missing object or a bad range fails early; the body is streamed and its length checked, so a server
that goes away mid-stream raises `StoreUnavailable`, never a short stream.

The client is aiobotocore (async-native: no thread pool, and cancelling a request really stops it),
created on first use in the running event loop; `aclose()` releases its connections. Checksums are
sent only where an operation requires them: boto3 ≥ 1.36's default CRC32 trailers are refused by
Swift 2.30's s3api.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import io
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from anyio import CancelScope
from botocore.exceptions import BotoCoreError, ClientError

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

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

MiB = 1024 * 1024
#: S3's limits: a part (and a single PUT) is at most 5 GiB.
MAX_PART_SIZE = 5 * 1024 * MiB
CHUNK_SIZE = 1 * MiB
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_MISSING = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412"}
_FULL = {"EntityTooLarge", "QuotaExceeded", "TooManyParts", "InsufficientStorage"}
_CREDENTIALS = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AuthorizationHeaderMalformed",
                "InvalidToken", "ExpiredToken", "AuthorizationQueryParametersError"}
_DENIED = {"AccessDenied", "403", "AllAccessDisabled", "AccountProblem"}
_NETWORK_ERRORS = (BotoCoreError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


@functools.cache
def _session() -> AioSession:
    """One botocore session for every S3 store: it loads the S3 model (megabytes of JSON) once."""
    return get_session()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def translate(exc: BaseException, what: str, key: str | None = None,
              writing: bool = False) -> StoreError:
    """Map a botocore/aiohttp error to the stores' error tree (the one place that does)."""
    if isinstance(exc, StoreError):
        return exc
    subject = f"{what} {key!r}" if key else what
    if isinstance(exc, ClientError):
        code, status = _code(exc), _status(exc)
        detail = exc.response.get("Error", {}).get("Message") or code or f"HTTP {status}"
        if code in _MISSING:
            return ObjectNotFound(f"{subject}: no such object")
        if code == "NoSuchBucket":
            return StoreUnavailable(f"{subject}: the bucket does not exist ({detail})")
        if code in _EXISTS or status == 412:  # s3api says InvalidRequest, with a 412
            return ObjectExists(f"{subject}: an object is already committed under the key")
        if code == "ConditionalRequestConflict":
            return WriteDenied(f"{subject}: a concurrent write to the key is in progress")
        if code in _FULL:
            return StoreFull(f"{subject}: the S3 store refused the size ({code}: {detail})")
        if code in _CREDENTIALS:
            return StoreUnavailable(
                f"{subject}: the S3 endpoint rejected the credentials ({code}): check "
                f"access_key, secret_key and region")
        if code in _DENIED:
            if writing:
                return WriteDenied(f"{subject}: the S3 store refused the write ({code})")
            return StoreUnavailable(f"{subject}: access denied by the S3 store ({code})")
        return StoreUnavailable(f"{subject}: S3 error {code or status} ({detail})")
    if isinstance(exc, _NETWORK_ERRORS):
        return StoreUnavailable(f"{subject}: the S3 endpoint failed ({type(exc).__name__}: {exc})")
    return StoreUnavailable(f"{subject}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _translated(what: str, key: str | None = None, writing: bool = False) -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except (ClientError, *_NETWORK_ERRORS) as exc:
        raise translate(exc, what, key, writing) from exc


def _etag(response: Any) -> str | None:
    tag = response.get("ETag")
    return str(tag).strip('"') if tag else None


class S3Writer:
    def __init__(self, driver: S3Driver, key: str, part_size: int, in_flight: int) -> None:
        self._driver = driver
        self._key = key
        self._part_size = part_size
        self._slots = asyncio.Semaphore(in_flight)
        # The part being filled (holds one slot). A BytesIO, not a bytearray: aiohttp streams a
        # BytesIO in small pieces, but copies a bytes-like body whole (twice, on Python 3.11).
        self._buf: io.BytesIO | None = None
        # Buffers of parts already sent, reused for the next parts: no reallocation while a
        # buffer fills, no fresh pages per part (at most `in_flight` buffers ever exist).
        self._spare: list[io.BytesIO] = []
        self._upload_id: str | None = None
        self._etags: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_part = 1
        self._size = 0
        self._error: BaseException | None = None
        self._finished = False  # committed or aborted

    def _limit(self) -> int:
        """How many bytes the current buffer may hold."""
        threshold = self._driver.multipart_threshold
        if self._upload_id is None:
            return threshold
        if self._next_part == 1:
            return max(self._part_size, threshold)
        return self._part_size

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise translate(self._error, "upload part of", self._key, writing=True)

    async def write(self, chunks: Sequence[Chunk]) -> None:
        if self._finished:
            raise StoreUnavailable("write after commit or abort")
        try:
            await self._write(chunks)
        except BaseException:
            await self._cleanup()
            raise

    async def _write(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            while view:
                if self._buf is None:
                    await self._slots.acquire()
                    self._buf = self._new_buffer()
                    self._raise_failure()
                if self._buf.tell() >= self._limit():  # full, and more is coming
                    if self._upload_id is None:
                        await self._begin_multipart()
                    if self._buf.tell() >= self._limit():
                        self._flush()
                        continue
                taken = self._buf.write(view[:self._limit() - self._buf.tell()])
                self._size += taken
                view = view[taken:]
                if self._upload_id is not None and self._buf.tell() >= self._limit():
                    self._flush()  # eagerly: parts go out while the caller writes on
        self._raise_failure()

    def _new_buffer(self) -> io.BytesIO:
        """A spare buffer, or a new one: sized to a whole part at once once the object is known
        to be multipart (growing a BytesIO by small writes copies it over and over)."""
        if self._spare:
            return self._spare.pop()
        buf = io.BytesIO()
        if self._upload_id is not None:
            buf.seek(self._limit() - 1)
            buf.write(b"\0")
            buf.seek(0)
        return buf

    async def _begin_multipart(self) -> None:
        s3 = await self._driver.client()
        with _translated("start multipart upload of", self._key, writing=True):
            created = await s3.create_multipart_upload(Bucket=self._driver.bucket, Key=self._key)
        self._upload_id = created["UploadId"]

    def _flush(self) -> None:
        """Send the current buffer as the next part, in a task that keeps its slot until done."""
        assert self._buf is not None
        assert self._upload_id is not None
        number = self._next_part
        if number > self._driver.max_parts:
            raise StoreFull(
                f"write {self._key!r}: the object needs more than {self._driver.max_parts} parts "
                f"of {self._part_size} bytes (declare its size to get larger parts)")
        body, self._buf = self._buf, None
        body.truncate()  # a reused or pre-sized buffer may be longer than this part
        self._next_part += 1
        task = asyncio.ensure_future(self._upload_part(number, self._upload_id, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _upload_part(self, number: int, upload_id: str, body: io.BytesIO) -> None:
        body.seek(0)
        kept = False
        try:
            s3 = await self._driver.client()
            sent = await s3.upload_part(Bucket=self._driver.bucket, Key=self._key,
                                        UploadId=upload_id, PartNumber=number, Body=body)
            self._etags[number] = str(sent["ETag"])
            if not self._finished:
                body.seek(0)
                self._spare.append(body)  # the next part fills it in place
                kept = True
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # reported by the next write or the commit
            if self._error is None:
                self._error = exc
        finally:
            if not kept:
                body.close()  # frees the part now, whoever still holds the object
            self._slots.release()

    async def commit(self) -> Stored:
        if self._finished:
            raise StoreUnavailable("commit after commit or abort")
        try:
            if self._upload_id is None:
                version = await self._put()
            else:
                version = await self._complete()
        except BaseException:
            await self._cleanup()
            raise
        self._finished = True
        self._buf = None
        self._spare.clear()
        return Stored(self._size, version)

    async def _put(self) -> str | None:
        body = self._buf if self._buf is not None else io.BytesIO()
        body.seek(0)
        await self._driver.refuse_existing(self._key)
        s3 = await self._driver.client()
        with _translated("commit", self._key, writing=True):
            if self._driver.conditional_puts:
                try:
                    done = await s3.put_object(Bucket=self._driver.bucket, Key=self._key,
                                               Body=body, IfNoneMatch="*")
                    return _etag(done)
                except ClientError as exc:
                    if _code(exc) != "NotImplemented":
                        raise
                # Swift 2.30's s3api: "Conditional object PUTs are not supported" (501); its
                # CompleteMultipartUpload does honour If-None-Match
                self._driver.conditional_puts = False
                body.seek(0)
            done = await s3.put_object(Bucket=self._driver.bucket, Key=self._key, Body=body)
        return _etag(done)

    async def _complete(self) -> str | None:
        assert self._upload_id is not None
        if self._buf is not None and self._buf.tell():
            self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks)
        self._raise_failure()
        await self._driver.refuse_existing(self._key)
        parts: Any = {"Parts": [{"PartNumber": n, "ETag": tag}
                                for n, tag in sorted(self._etags.items())]}
        s3 = await self._driver.client()
        with _translated("commit", self._key, writing=True):
            if self._driver.conditional_writes:
                done = await s3.complete_multipart_upload(
                    Bucket=self._driver.bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload=parts, IfNoneMatch="*")
            else:
                done = await s3.complete_multipart_upload(
                    Bucket=self._driver.bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload=parts)
        self._upload_id = None
        return _etag(done)

    async def abort(self) -> None:
        await self._cleanup()

    async def _cleanup(self) -> None:
        """Stop the parts in flight and abort the multipart upload; idempotent, never cancelled
        halfway (an upload left behind would hold its parts until `discard`)."""
        if self._finished:
            return
        self._finished = True
        self._buf = None
        self._spare.clear()
        with CancelScope(shield=True):
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if self._upload_id is not None:
                upload_id, self._upload_id = self._upload_id, None
                await self._driver.abort_upload(self._key, upload_id)


class S3Reader:
    def __init__(self, body: Any, size: int, length: int) -> None:
        self.size = size
        self._body = body
        self._length = length

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            received = 0
            while self._body is not None:
                with _translated("read"):
                    data: bytes = await self._body.read(CHUNK_SIZE)
                if not data:
                    break
                received += len(data)
                yield data
            if received != self._length:
                raise StoreUnavailable(
                    f"read: the S3 endpoint sent {received} of {self._length} bytes")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            closed = body.close()
            if inspect.isawaitable(closed):
                await closed


@dataclass(frozen=True)
class S3Options:
    """The driver's configuration: the `[stores.<id>]` options of driver `s3` (sizes in bytes;
    docs/stores.md explains each). Raises `ValueError` for options that cannot work."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    addressing_style: str = "path"
    multipart_threshold: int = 16 * MiB
    part_size: int = 16 * MiB
    max_parts: int = 10_000
    parts_in_flight: int = 4
    conditional_writes: bool = True
    max_connections: int = 32
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.addressing_style not in ("path", "virtual"):
            raise ValueError(
                f"addressing_style must be path or virtual, not {self.addressing_style!r}")
        if not 0 <= self.multipart_threshold <= MAX_PART_SIZE:
            raise ValueError("multipart_threshold must be between 0 and 5 GiB")
        if not 0 < self.part_size <= MAX_PART_SIZE:
            raise ValueError("part_size must be between 1 byte and 5 GiB (S3 wants >= 5 MiB)")
        if not 1 <= self.max_parts <= 10_000:
            raise ValueError("max_parts must be between 1 and 10,000")
        for name in ("parts_in_flight", "max_connections", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither")


class S3Driver:
    """A bucket of an S3 endpoint. Built from `S3Options`, or from its fields as keywords (as
    configuration gives them)."""

    capabilities = Capabilities(read=True, write=True, ranged_read=True)

    @property
    def url_prefix(self) -> str:
        """Location URLs of this store: `s3[+https]://<endpoint host>/<bucket>/<key>`, no
        credentials in them (unlike Glance's)."""
        endpoint = urlsplit(self.endpoint_url or "https://s3.amazonaws.com")
        scheme = "s3+https" if endpoint.scheme == "https" else "s3"
        return f"{scheme}://{endpoint.netloc}/{self.bucket}/"

    def __init__(self, options: S3Options | None = None, **settings: Any) -> None:
        if options is None:
            options = S3Options(**settings)
        elif settings:
            raise TypeError("give S3Options or keywords, not both")
        self.options = options
        self.bucket = options.bucket
        self.endpoint_url = options.endpoint_url
        self.multipart_threshold = options.multipart_threshold
        self.part_size = options.part_size
        self.max_parts = options.max_parts
        self.parts_in_flight = options.parts_in_flight
        self.conditional_writes = options.conditional_writes
        #: turned off for good when the server answers 501 to a conditional PutObject
        self.conditional_puts = options.conditional_writes
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": cast(Literal["path", "virtual"], options.addressing_style)},
            # boto3 >= 1.36 adds CRC32 trailers (aws-chunked bodies): Swift 2.30 refuses them
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": options.max_attempts, "mode": "standard"},
            max_pool_connections=options.max_connections,
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
        )
        self._client: S3Client | None = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> S3Client:
        """The client, created on first use (it belongs to the running event loop)."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    stack = AsyncExitStack()
                    self._client = await stack.enter_async_context(_session().create_client(
                        "s3", endpoint_url=self.endpoint_url, region_name=self.options.region,
                        aws_access_key_id=self.options.access_key,
                        aws_secret_access_key=self.options.secret_key, config=self._config))
                    self._stack = stack
        return self._client

    async def aclose(self) -> None:
        """Release the client and its connections; the driver opens a new one if used again."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def check(self) -> None:
        """Fail loudly (`StoreUnavailable`) unless the bucket can be listed with these credentials:
        for start-up. ListObjectsV2, not HeadBucket: a HEAD's bare 403 does not say why."""
        s3 = await self.client()
        with _translated(f"bucket {self.bucket!r} at {self.endpoint_url or 'AWS'}"):
            await s3.list_objects_v2(Bucket=self.bucket, MaxKeys=1)

    def part_size_for(self, size_hint: int | None) -> int:
        """The part size that fits `size_hint` bytes in `max_parts` parts (whole MiB)."""
        size = self.part_size
        if size_hint is not None and size_hint > self.max_parts * size:
            size = -(-size_hint // self.max_parts)
            size = -(-size // MiB) * MiB
        return size

    async def open_writer(self, key: str, size_hint: int | None = None) -> S3Writer:
        part_size = self.part_size_for(size_hint)
        if part_size > MAX_PART_SIZE:
            raise StoreFull(
                f"write {key!r}: {size_hint} bytes do not fit in {self.max_parts} parts of at "
                f"most 5 GiB")
        budget = self.parts_in_flight * self.part_size  # larger parts: fewer at once
        return S3Writer(self, key, part_size, max(1, budget // part_size))

    async def refuse_existing(self, key: str) -> None:
        """The HEAD before a commit, for servers that ignore `If-None-Match`."""
        try:
            await self.stat(key)
        except ObjectNotFound:
            return
        raise ObjectExists(f"commit {key!r}: an object is already committed under the key")

    async def abort_upload(self, key: str, upload_id: str) -> None:
        s3 = await self.client()
        with _translated("abort multipart upload of", key, writing=True):
            try:
                await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if _code(exc) not in ("NoSuchUpload", "404"):
                    raise

    async def open_reader(self, key: str, offset: int = 0,
                          length: int | None = None) -> S3Reader:
        if length == 0:
            size = (await self.stat(key)).size
            if offset >= size and not (offset == 0 and size == 0):
                raise InvalidRange(f"offset {offset} outside object of {size} bytes", size)
            return S3Reader(None, size, 0)
        ranged = bool(offset) or length is not None
        extra: dict[str, Any] = {}
        if ranged:
            end = "" if length is None else str(offset + length - 1)
            extra["Range"] = f"bytes={offset}-{end}"
        s3 = await self.client()
        with _translated("read", key):
            try:
                got = await s3.get_object(Bucket=self.bucket, Key=key, **extra)
            except ClientError as exc:
                if _code(exc) != "InvalidRange" and _status(exc) != 416:
                    raise
                size = (await self.stat(key)).size
                if offset == 0 and size == 0:  # any range of an empty object: nothing
                    return S3Reader(None, 0, 0)
                raise InvalidRange(
                    f"read {key!r}: offset {offset} outside object of {size} bytes", size
                ) from None
        body, count = got["Body"], int(got["ContentLength"])
        if not ranged:
            return S3Reader(body, count, count)
        found = _CONTENT_RANGE.fullmatch(str(got.get("ContentRange", "")))
        if found is None or int(found[1]) != offset:
            body.close()
            raise StoreUnavailable(f"read {key!r}: the S3 endpoint ignored the Range header")
        return S3Reader(body, int(found[3]), count)

    async def stat(self, key: str) -> ObjectInfo:
        s3 = await self.client()
        with _translated("stat", key):
            try:
                head = await s3.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _MISSING or _status(exc) == 404:
                    raise ObjectNotFound(f"no object {key!r}") from None
                if _status(exc) == 403:
                    # a HEAD's 403 has no body to say why: a listing names the reason
                    # (SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied)
                    await self.check()
                raise
        return ObjectInfo(int(head["ContentLength"]), _etag(head))

    async def delete(self, key: str) -> None:
        # DeleteObject succeeds for a missing key: the HEAD gives the contract's ObjectNotFound
        await self.stat(key)
        s3 = await self.client()
        with _translated("delete", key, writing=True):
            await s3.delete_object(Bucket=self.bucket, Key=key)

    async def discard(self, key: str) -> None:
        s3 = await self.client()
        with _translated("discard", key, writing=True):
            await s3.delete_object(Bucket=self.bucket, Key=key)
            for upload_id in await self._uploads(key):
                await self.abort_upload(key, upload_id)

    async def _uploads(self, key: str) -> list[str]:
        """Ids of the multipart uploads in progress for exactly `key`."""
        s3 = await self.client()
        found: list[str] = []
        key_marker = upload_marker = ""
        while True:
            page = await s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key,
                                                   KeyMarker=key_marker,
                                                   UploadIdMarker=upload_marker)
            found += [u["UploadId"] for u in page.get("Uploads", [])
                      if u.get("Key") == key and "UploadId" in u]
            if not page.get("IsTruncated"):
                return found
            key_marker = page.get("NextKeyMarker", "")
            upload_marker = page.get("NextUploadIdMarker", "")
