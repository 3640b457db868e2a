"""Uploading image data: one streaming pipeline for every store, and the reaper of dead uploads.

The pipeline counts bytes, enforces the size cap, the declared size and the bytes the owner's
project has left of `image_size_total` (`services.quotas`), and computes the MD5
`checksum` and the `os_hash_value` — each hash in its own worker thread, in parallel with the
store write — over batches of about `BUFFER_SIZE` bytes of received chunks (never copied into
one buffer). At most two batches are alive at a time, so memory stays flat whatever the image
size. Later stages (format inspection, signature checks)
join as further `Stage`s.

An upload claims the image (queued → saving) under a fresh upload id, proves it is alive with a
heartbeat, and either finishes (→ active) or gives the image back (→ queued) after removing its
data. If its process dies, any server's reaper notices the stale heartbeat, gives the image back
and discards the partial data; uploads that are still alive, in any process, are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from anyio import CancelScope, to_thread

from glimpse.domain.changes import diff
from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Conflict, Gone, Invalid, NotFound, StaleImage, TooLarge
from glimpse.domain.images import Digest, Image, ImageStatus, Location
from glimpse.domain.members import MemberStatus
from glimpse.domain.ports import ImageRepository, MemberRepository
from glimpse.services.cleanup import Cleanup
from glimpse.services.members import membership_of
from glimpse.services.mutations import Mutator
from glimpse.services.policy import Policy
from glimpse.services.quotas import QuotaService, UploadBudget
from glimpse.stores.base import Store, Writer

log = logging.getLogger(__name__)

BUFFER_SIZE = 4 * 1024 * 1024


class Stage(Protocol):
    """A step every batch of chunks passes through, in order; `update` runs in a worker
    thread, in parallel with the other stages and the store write."""

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


@dataclass(frozen=True)
class UploadSettings:
    store_id: str
    hashing_algorithm: str = "sha512"
    size_cap: int = 1024**4
    heartbeat_interval: float = 10.0
    stale_after: float = 60.0


def data_key(image_id: str, upload_id: str) -> str:
    """Each upload writes under its own key, so a late zombie can never clobber a newer upload."""
    return f"{image_id}.{upload_id}"


def _now() -> datetime:
    return datetime.now(UTC)


class UploadService:
    def __init__(
        self,
        repo: ImageRepository,
        members: MemberRepository,
        mutate: Mutator,
        policy: Policy,
        cleanup: Cleanup,
        stores: dict[str, Store],
        settings: UploadSettings,
        clock: Callable[[], datetime] = _now,
        quotas: QuotaService | None = None,
    ) -> None:
        self._repo = repo
        self._members = members
        self._policy = policy
        self._mutate = mutate
        self._cleanup = cleanup
        self._stores = stores
        self._settings = settings
        self._clock = clock
        self._quotas = quotas

    def _store(self, store_id: str | None) -> Store:
        """The store an upload goes to: the one asked for (`X-Image-Meta-Store`), else the
        default. An unknown or read-only store is refused before any byte is read."""
        if store_id is None:
            return self._stores[self._settings.store_id]
        store = self._stores.get(store_id)
        if store is None:
            raise Invalid(f"Store {store_id!r} is not one of this server's stores "
                          f"({', '.join(self._stores)}).")
        if not store.capabilities.write:
            raise Invalid(f"Store {store_id!r} is read-only.")
        return store

    async def upload(
        self,
        ctx: RequestContext,
        image_id: str,
        chunks: AsyncIterator[bytes],
        declared_size: int | None = None,
        store_id: str | None = None,
    ) -> Image:
        """Stream `chunks` into the store as the data of image `image_id`; returns it active.

        `store_id` picks the store (the default one if None).

        Raises `TooLarge` over the size cap or a quota of the owner's project (a declared size
        before any byte is read; otherwise as soon as the data passes it, or, exactly, when the
        upload finishes), `Invalid` when `declared_size` does not match, `Conflict` unless the
        image is queued, `Gone` if it was deleted meanwhile. On any failure the image is back in
        `queued` (unless deleted) and no data is left in the store.
        """
        cap = self._settings.size_cap
        if declared_size is not None and declared_size > cap:
            raise TooLarge(f"Image size {declared_size} exceeds the limit of {cap} bytes.")
        upload_id = str(uuid.uuid4())

        member = await membership_of(self._members, ctx, image_id)
        budget = await self._budget(ctx, image_id, member, declared_size)
        limits = budget.limits if budget is not None else None
        store = self._store(store_id)

        def begin(image: Image) -> None:
            self._policy.check("upload_image", ctx, image, member, "upload data to")
            image.begin_upload(upload_id, self._clock(), store.id)

        await self._mutate(image_id, begin, limits)  # image_count_uploading, exactly
        location = Location(store.id, data_key(image_id, upload_id))
        lost = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(image_id, upload_id, lost))
        try:
            writer = await store.open_writer(location.key, declared_size)
            try:
                digest = await self._stream(chunks, writer, declared_size, lost, budget)
                await writer.commit()
            except BaseException:
                with CancelScope(shield=True):
                    await writer.abort()
                raise

            def finish(image: Image) -> None:
                image.finish_upload(upload_id, digest, location)

            try:
                # image_size_total, exactly: a refusal gives the image back and its data goes.
                return await self._mutate(image_id, finish, limits)
            except NotFound as exc:
                raise Gone(f"Image {image_id} was deleted during the upload; "
                           "its data has been discarded.") from exc
        except BaseException:
            with CancelScope(shield=True):
                await self._give_back(image_id, upload_id, location)
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _stream(
        self,
        chunks: AsyncIterator[bytes],
        writer: Writer,
        declared_size: int | None,
        lost: asyncio.Event,
        budget: UploadBudget | None = None,
    ) -> Digest:
        md5 = Hasher("md5")
        multihash = Hasher(self._settings.hashing_algorithm)
        stages: list[Stage] = [md5, multihash]
        cap = self._settings.size_cap
        left = budget.bytes_left if budget is not None else None
        quota_cap = cap if left is None else min(cap, left)
        size = 0
        batch: list[bytes] = []
        batched = 0
        pending: asyncio.Future[None] | None = None

        async def process(chunks: list[bytes]) -> None:
            # Every stage and the store write finish before a failure is raised, so the writer
            # is never aborted while one of its writes still runs.
            results = await asyncio.gather(
                *(to_thread.run_sync(stage.update, chunks) for stage in stages),
                writer.write(chunks),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > quota_cap:
                    if size > cap:
                        raise TooLarge(f"Image data exceeds the limit of {cap} bytes.")
                    assert budget is not None
                    budget.check(size)
                if declared_size is not None and size > declared_size:
                    raise Invalid(f"Received more data than the {declared_size} bytes declared "
                                  "in x-openstack-image-size.")
                if lost.is_set():
                    raise Conflict("The upload lost its claim on the image (deleted or reset).")
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
        if declared_size is not None and size != declared_size:
            raise Invalid(f"Received {size} bytes but x-openstack-image-size declared "
                          f"{declared_size}.")
        return Digest(size, md5.hexdigest(), self._settings.hashing_algorithm,
                      multihash.hexdigest())

    async def _budget(self, ctx: RequestContext, image_id: str, member: MemberStatus | None,
                      declared_size: int | None) -> UploadBudget | None:
        """The quota budget of this upload, from a snapshot of its project's usage; refuses a
        declared size (or a project already over its limit) before any byte is read."""
        if self._quotas is None or not self._quotas.enforced:
            return None
        image = await self._repo.get(image_id)
        # Only a caller who may upload learns about quotas (no leak of the image or the usage);
        # an image that is not queued gets its 409 from `begin`.
        self._policy.check("upload_image", ctx, image, member, "upload data to")
        budget = await self._quotas.budget(image.owner)
        if budget is not None and image.status == ImageStatus.QUEUED:
            budget.check(declared_size or 0)
        return budget

    async def _heartbeat(self, image_id: str, upload_id: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval)
            try:
                alive = await self._repo.touch_upload(image_id, upload_id, self._clock())
            except Exception:  # a passing registry fault must not kill the upload
                log.exception("image %s: heartbeat failed", image_id)
                continue
            if not alive:
                lost.set()
                return

    async def _give_back(self, image_id: str, upload_id: str, location: Location) -> None:
        """After a failed upload: return the image to queued and remove whatever was written
        (committed or partial), through a deletion job recorded with the status change."""

        def restore(image: Image) -> list[Location]:
            return [location] if image.fail_upload(upload_id) else []

        try:
            await self._mutate(image_id, restore)
            return
        except NotFound:
            pass  # deleted meanwhile: no image change accounts for the data
        except Exception:
            log.exception("image %s: could not return it to queued", image_id)
        await self._cleanup.discard([location], image_id)

    # -- the reaper -------------------------------------------------------------------------------

    async def reap(self) -> list[str]:
        """Give back images whose upload stopped proving it is alive; returns their ids."""
        cutoff = self._clock() - timedelta(seconds=self._settings.stale_after)
        return [image.id for image in await self._repo.stale_uploads(cutoff)
                if await self._release(image, cutoff)]

    async def _release(self, stale: Image, cutoff: datetime) -> bool:
        upload_id = stale.upload_id
        if upload_id is None:
            return False
        location = Location(stale.upload_store or self._settings.store_id,
                            data_key(stale.id, upload_id))
        if stale.status == ImageStatus.DELETED:
            released = copy.deepcopy(stale)
            released.release_upload()
            change = diff(stale, released, [location])
            try:
                await self._repo.update(change)
            except (StaleImage, NotFound):
                return False  # another reaper got there first
            await self._cleanup.run(list(change.discard))
        else:
            took: list[bool] = []

            def reset(image: Image) -> list[Location]:
                took.clear()  # decided afresh on every attempt
                heartbeat = image.upload_heartbeat
                if heartbeat is not None and heartbeat >= cutoff:
                    return []  # it came back to life
                if not image.fail_upload(upload_id):
                    return []
                took.append(True)
                return [location]

            try:
                await self._mutate(stale.id, reset)
            except (NotFound, Conflict):
                return False
            if not took:
                return False
        log.warning("image %s: upload %s stopped without finishing; partial data removed and "
                    "the image returned to queued (unless deleted)", stale.id, upload_id)
        return True

    async def run_reaper(self) -> None:
        """Reap forever, every half stale period; meant to run as a background task."""
        while True:
            try:
                await self.reap()
            except Exception:
                log.exception("upload reaper failed; retrying")
            await asyncio.sleep(self._settings.stale_after / 2)
