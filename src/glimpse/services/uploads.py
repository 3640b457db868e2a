"""Uploading image data: the streaming pipeline into a store, and the reaper of dead uploads.

The pipeline (`services.pipeline`) counts bytes against the size cap, the declared size and the
bytes the owner's project has left of `image_size_total` (`services.quotas`), computes the MD5
`checksum` and the `os_hash_value`, inspects the format (`services.inspection`: data that is not
what its `disk_format` says, or is unsafe, is refused with 415 before anything is committed) and
checks the signature of signed images (`services.signature`), all in one pass.

An upload opens an upload session (`domain.uploads`: its store, key and heartbeat, a record of
its own) in the change that claims the image (queued → saving), proves it is alive through the
session's heartbeat, and either finishes (→ active, the session closed as its data becomes the
location) or gives the image back (→ queued, the session closed as its data goes to a deletion
job). If its process dies, any server's reaper notices the stale session, gives the image back
if the session held it, and discards the partial data; sessions still alive, in any process, are
left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from anyio import CancelScope, to_thread

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Conflict, Gone, Invalid, NotFound, TooLarge
from glimpse.domain.images import Digest, Image, ImageStatus, Location
from glimpse.domain.members import MemberStatus
from glimpse.domain.ports import ImageRepository, MemberRepository, UploadSessions
from glimpse.domain.uploads import Purpose, UploadSession
from glimpse.services.cleanup import Cleanup
from glimpse.services.inspection import FormatInspection, InspectionSettings
from glimpse.services.members import membership_of
from glimpse.services.mutations import Mutator
from glimpse.services.pipeline import Bounds, Hasher, Stage, stream
from glimpse.services.policy import Policy
from glimpse.services.quotas import QuotaService, UploadBudget
from glimpse.services.signature import CertificateStore, SignatureVerification
from glimpse.stores.base import Chunk, Store, Writer

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class UploadSettings:
    store_id: str
    hashing_algorithm: str = "sha512"
    size_cap: int = 1024**4
    heartbeat_interval: float = 10.0
    stale_after: float = 60.0
    inspection: InspectionSettings = field(default_factory=InspectionSettings)
    certificates: CertificateStore = field(default_factory=lambda: CertificateStore(""))


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
        sessions: UploadSessions,
        clock: Callable[[], datetime] = _now,
        quotas: QuotaService | None = None,
    ) -> None:
        self._repo = repo
        self._sessions = sessions
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
        chunks: AsyncIterator[Chunk],
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
        member = await membership_of(self._members, ctx, image_id)
        budget = await self._budget(ctx, image_id, member, declared_size)
        limits = budget.limits if budget is not None else None
        store = self._store(store_id)
        session = UploadSession.open(image_id, store.id, Purpose.UPLOAD, self._clock())
        location = session.location

        def begin(image: Image) -> None:
            self._policy.check("upload_image", ctx, image, member, "upload data to")
            image.begin_upload(session.id)

        # image_count_uploading, exactly
        claimed = await self._mutate(image_id, begin, limits, opened=[session])
        lost = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(image_id, session.id, lost))
        try:
            writer = await store.open_writer(location.key, declared_size)
            try:
                digest = await self._stream(claimed, chunks, writer, declared_size, lost,
                                            budget)
                await writer.commit()
            except BaseException:
                with CancelScope(shield=True):
                    await writer.abort()
                raise

            def finish(image: Image) -> None:
                image.finish_upload(session.id, digest, location)

            try:
                # image_size_total, exactly: a refusal gives the image back and its data goes.
                return await self._mutate(image_id, finish, limits, closed=[session.id])
            except NotFound as exc:
                raise Gone(f"Image {image_id} was deleted during the upload; "
                           "its data has been discarded.") from exc
        except BaseException:
            with CancelScope(shield=True):
                await self._give_back(session)
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _stream(
        self,
        image: Image,
        chunks: AsyncIterator[Chunk],
        writer: Writer,
        declared_size: int | None,
        lost: asyncio.Event,
        budget: UploadBudget | None = None,
    ) -> Digest:
        """Stream the data through the pipeline into `writer`: hashed, inspected and, for a
        signed image, verified; refused data raises before the caller commits."""
        md5 = Hasher("md5")
        multihash = Hasher(self._settings.hashing_algorithm)
        inspection = FormatInspection(image.disk_format, image.container_format,
                                      self._settings.inspection)
        signature = await to_thread.run_sync(SignatureVerification.for_image, image.properties,
                                             self._settings.certificates)
        stages: list[Stage] = [md5, multihash, inspection, *([signature] if signature else [])]

        def still_allowed() -> None:
            if lost.is_set():
                raise Conflict("The upload lost its claim on the image (deleted or reset).")

        bounds = Bounds(self._settings.size_cap, declared_size,
                        budget.bytes_left if budget is not None else None,
                        budget.check if budget is not None else None, still_allowed)
        size = await stream(chunks, stages, writer, bounds)
        inspected = await to_thread.run_sync(inspection.finish)
        if signature is not None:
            await to_thread.run_sync(signature.finish)
        return Digest(size, md5.hexdigest(), self._settings.hashing_algorithm,
                      multihash.hexdigest(), inspected.virtual_size)

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

    async def _heartbeat(self, image_id: str, session_id: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval)
            try:
                alive = await self._sessions.touch(session_id, self._clock())
            except Exception:  # a passing registry fault must not kill the upload
                log.exception("image %s: heartbeat failed", image_id)
                continue
            if not alive:
                lost.set()
                return

    async def _give_back(self, session: UploadSession) -> None:
        """After a failed upload: return the image to queued (if the session still holds it)
        and remove whatever was written (committed or partial), through a deletion job recorded
        with the change that closes the session."""

        def restore(image: Image) -> list[Location]:
            image.fail_upload(session.id)
            return [session.location]

        try:
            await self._mutate(session.image_id, restore, closed=[session.id])
            return
        except NotFound:
            pass  # deleted meanwhile: no image change accounts for the data
        except Exception:
            log.exception("image %s: could not return it to queued", session.image_id)
        await self._cleanup.discard([session.location], session.image_id)
        await self._sessions.end(session.id)

    # -- the reaper -------------------------------------------------------------------------------

    async def reap(self) -> list[str]:
        """Settle the sessions that stopped proving they are alive; returns their images' ids."""
        cutoff = self._clock() - timedelta(seconds=self._settings.stale_after)
        return [session.image_id for session in await self._sessions.stale(cutoff)
                if await self._release(session)]

    async def _release(self, stale: UploadSession) -> bool:
        # Sessions recorded before sessions named their store wrote to the default one.
        location = (stale.location if stale.location.store
                    else Location(self._settings.store_id, stale.location.key))
        held: list[bool] = []

        def reset(image: Image) -> list[Location]:
            held[:] = [image.fail_upload(stale.id) or image.fail_stage(stale.id)]
            # A session still open never wrote a location: its data is partial or orphaned.
            return [location]

        try:
            await self._mutate(stale.image_id, reset, closed=[stale.id])
        except NotFound:  # the image was deleted: no change of it accounts for the data
            await self._cleanup.discard([location], stale.image_id)
            await self._sessions.end(stale.id)
        except Conflict:
            return False
        log.warning("image %s: upload session %s (%s) stopped without finishing; its data was "
                    "removed%s", stale.image_id, stale.id, stale.purpose,
                    " and the image returned to queued" if any(held) else "")
        return True

    async def run_reaper(self) -> None:
        """Reap forever, every half stale period; meant to run as a background task."""
        while True:
            try:
                await self.reap()
            except Exception:
                log.exception("upload reaper failed; retrying")
            await asyncio.sleep(self._settings.stale_after / 2)
