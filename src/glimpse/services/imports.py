"""Interoperable image import: staging (`PUT /stage`), `POST /import` and the import task.

Methods (Glance's): `glance-direct` imports data staged with `PUT /v2/images/{id}/stage`;
`web-download` fetches a URL (through the import filters and SSRF checks of `stores.web`) into
the staging area first; `glance-download` does the same with an image of another Glance found
through the Keystone catalog, copying its formats and some properties (`services.glance_download`;
only with `auth = keystone`); `copy-image` copies an active image's data to more stores. The request
records an `api_image_import` task with the image change that takes the import lock
(`os_glance_import_task`), so two imports never run at once; the task then streams the data
through the one pipeline (hashes, format inspection, signature) into each target store under an
upload session of its own, reporting progress in `os_glance_importing_to_stores` and
`os_glance_failed_import`, as Glance does. With `all_stores_must_succeed` (the default) a
failed store fails the import: the image goes back to queued and every copy it made is removed;
otherwise the image becomes active with the stores that worked. A task whose server dies is run
again by another server (`services.tasks`).

Staged data is a location of its own status (`staged`) in the staging store, so the registry
always knows of it: deleting the image or finishing the import removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from anyio import CancelScope, to_thread

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Conflict, Invalid, NotFound, RefusedData, TooLarge
from glimpse.domain.images import Digest, Image, ImageStatus, Location, LocationStatus
from glimpse.domain.members import MemberStatus
from glimpse.domain.ports import ImageRepository, MemberRepository, UploadSessions
from glimpse.domain.tasks import Task
from glimpse.domain.uploads import Purpose, UploadSession
from glimpse.services.cleanup import Cleanup
from glimpse.services.conversion import ConversionFailed, ConversionSettings, convert
from glimpse.services.glance_download import GlanceDownloader
from glimpse.services.inspection import FormatInspection, InspectionSettings
from glimpse.services.members import membership_of
from glimpse.services.mutations import Mutator
from glimpse.services.pipeline import Bounds, Hasher, Stage, stream
from glimpse.services.policy import Policy
from glimpse.services.quotas import QuotaService, UploadBudget
from glimpse.services.signature import CertificateStore, SignatureVerification
from glimpse.services.tasks import TaskFailed
from glimpse.stores.base import Chunk, Reader, Store, drain
from glimpse.stores.errors import ObjectNotFound, StoreError
from glimpse.stores.web import ImportFilter, open_download

log = logging.getLogger(__name__)

TASK_TYPE = "api_image_import"
STAGING_STORE = "os_glance_staging_store"
METHODS = ("glance-direct", "web-download", "copy-image")
#: Offered only where a `GlanceDownloader` is configured (auth = keystone).
GLANCE_DOWNLOAD = "glance-download"
LOCK = "os_glance_import_task"
IMPORTING = "os_glance_importing_to_stores"
FAILED = "os_glance_failed_import"


@dataclass(frozen=True)
class ImportSettings:
    enabled_methods: tuple[str, ...] = METHODS
    hashing_algorithm: str = "sha512"
    size_cap: int = 1024**4
    default_store: str = ""
    multistore: bool = False
    inspection: InspectionSettings = field(default_factory=InspectionSettings)
    certificates: CertificateStore = field(default_factory=lambda: CertificateStore(""))
    filters: ImportFilter | None = None
    heartbeat_interval: float = 10.0
    conversion: ConversionSettings = field(default_factory=ConversionSettings)
    glance_download: GlanceDownloader | None = None
    #: This server's URL as the other servers of the deployment reach it
    #: (`worker_self_reference_url`): recorded with the data it stages, so that a server that
    #: does not share its staging area hands the import (or the delete) to it. "": not recorded.
    self_url: str = ""


class StagedElsewhere(Exception):
    """The image's staged data is in another server's staging area, which this server does not
    share: the request goes to that server (`url`, its `worker_self_reference_url`)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class StagingSource(Protocol):
    """Data a download method stages (`stores.web.WebDownload`,
    `services.glance_download.RemoteData`): `size` as announced, if it was."""

    size: int | None

    def chunks(self) -> AsyncIterator[Chunk]:
        """The data, once; closes the source when it ends."""
        ...

    async def aclose(self) -> None:
        """Close the source; idempotent."""
        ...


class StagingFiles(Protocol):
    """The staging store's objects as local files, for conversion with qemu-img (the
    filesystem driver is one)."""

    def path_of(self, key: str) -> Path:
        """The file of object `key`."""
        ...

    async def adopt(self, key: str, path: Path) -> None:
        """Commit `path`, a dot-file in the folder of `path_of`'s files, as object `key`
        (never replacing one); `path` is gone afterwards, committed or not."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class ImportService:
    def __init__(self, repo: ImageRepository, members: MemberRepository, mutate: Mutator,
                 policy: Policy, stores: dict[str, Store], staging: Store,
                 sessions: UploadSessions, cleanup: Cleanup, settings: ImportSettings,
                 clock: Callable[[], datetime] = _now,
                 staging_files: StagingFiles | None = None,
                 quotas: QuotaService | None = None) -> None:
        self._repo = repo
        self._quotas = quotas
        self._cleanup = cleanup
        self._members = members
        self._mutate = mutate
        self._policy = policy
        self._stores = stores
        self._staging = staging
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._staging_files = staging_files
        # task id -> the token of the user who asked for a glance-download: held in memory
        # only (never in the registry), for the task this server runs (see `ImportTask`)
        self._tokens: dict[str, str] = {}

    @property
    def methods(self) -> tuple[str, ...]:
        if self._settings.glance_download is None:  # glance-download needs auth = keystone
            return tuple(m for m in self._settings.enabled_methods if m != GLANCE_DOWNLOAD)
        return self._settings.enabled_methods

    # -- PUT /stage ---------------------------------------------------------------------------

    async def stage(self, ctx: RequestContext, image_id: str, chunks: AsyncIterator[Chunk],
                    declared_size: int | None) -> None:
        """Stream the data into the staging area: the image goes queued → uploading."""
        if "glance-direct" not in self.methods:
            raise NotFound("The glance-direct import method is not enabled on this server.")
        member = await membership_of(self._members, ctx, image_id)
        session = UploadSession.open(image_id, self._staging.id, Purpose.STAGE, self._clock())
        image = await self._repo.get(image_id)
        self._policy.check("upload_image", ctx, image, member, "stage data for")
        # image_stage_total and image_count_uploading: refused before any byte when the
        # declared size does not fit, checked as the data arrives, and exactly when it is done.
        budget = await self._quotas.budget(image.owner) if self._quotas is not None else None
        limits = budget.limits if budget is not None else None
        if budget is not None:
            budget.check_staged(declared_size or 0)

        def begin(image: Image) -> None:
            self._policy.check("upload_image", ctx, image, member, "stage data for")
            image.begin_stage(session.id)

        await self._mutate(image_id, begin, limits, opened=[session])
        try:
            size = await self._write(session, chunks, [], declared_size, None, budget)

            def finish(image: Image) -> None:
                image.finish_stage(session.id, session.location, size, self.staged_metadata())

            await self._mutate(image_id, finish, limits, closed=[session.id])
        except BaseException:
            with CancelScope(shield=True):
                await self._settle_failed(session, lambda img: img.fail_stage(session.id))
            raise

    async def _write(self, session: UploadSession, chunks: AsyncIterator[Chunk],
                     stages: Sequence[Stage], declared: int | None,
                     size_hint: int | None, staged_budget: UploadBudget | None = None) -> int:
        """Stream into the session's store under its key, with a heartbeat; commits on
        success, aborts (nothing left) on any failure."""
        store = self._store_of(session.location.store)
        beat = asyncio.create_task(self._heartbeat(session))
        try:
            writer = await store.open_writer(session.location.key, size_hint or declared)
            try:
                bounds = Bounds(self._settings.size_cap, declared)
                if staged_budget is not None:
                    limit = staged_budget.limits.image_stage_total
                    bounds.left = (None if limit is None
                                   else limit - staged_budget.usage.image_stage_total)
                    bounds.over_budget = staged_budget.check_staged
                size = await stream(chunks, stages, writer, bounds)
                for stage in stages:
                    finish = getattr(stage, "finish", None)
                    if finish is not None:
                        await to_thread.run_sync(finish)
                await writer.commit()
            except BaseException:
                with CancelScope(shield=True):
                    await writer.abort()
                raise
            return size
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _heartbeat(self, session: UploadSession) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval)
            with contextlib.suppress(Exception):
                await self._sessions.touch(session.id, self._clock())

    async def _settle_failed(self, session: UploadSession,
                             change: Callable[[Image], object]) -> None:
        """After a failed write: undo its image change and remove what it wrote."""

        def undo(image: Image) -> list[Location]:
            change(image)
            return [session.location]

        try:
            await self._mutate(session.image_id, undo, closed=[session.id])
        except NotFound:  # deleted meanwhile: no image change accounts for the data
            await self._cleanup.discard([session.location], session.image_id)
            await self._sessions.end(session.id)
        except Exception:
            log.exception("image %s: could not settle failed session %s", session.image_id,
                          session.id)

    def _store_of(self, store_id: str) -> Store:
        if store_id == self._staging.id:
            return self._staging
        return self._stores[store_id]

    # -- POST /import ---------------------------------------------------------------------------

    def _targets(self, body: dict[str, Any], copies: bool, image: Image) -> list[str]:
        writable = [s.id for s in sorted(self._stores.values(), key=lambda s: -s.weight)
                    if s.capabilities.write]
        stores = body.get("stores")
        if body.get("all_stores"):
            if stores is not None:
                raise Invalid("'stores' and 'all_stores' cannot be given together.")
            targets = writable
        elif stores is not None:
            if not isinstance(stores, list) or not all(isinstance(s, str) for s in stores) \
                    or not stores:
                raise Invalid("'stores' must be a non-empty list of store ids.")
            for store_id in stores:
                if store_id not in self._stores:
                    raise Invalid(f"Store {store_id!r} is not one of this server's stores.")
                if store_id not in writable:
                    raise Invalid(f"Store {store_id!r} is read-only.")
            targets = list(dict.fromkeys(stores))
        else:
            if copies:
                raise Invalid("copy-image needs 'stores' or 'all_stores'.")
            targets = [self._settings.default_store]
        if copies:
            held = {loc.store for loc in image.readable_locations}
            targets = [s for s in targets if s not in held]
            if not targets:
                raise Conflict(f"Image {image.id} is already in every store asked for.")
        return targets

    async def begin(self, ctx: RequestContext, image_id: str, body: Any,
                    forwarded: bool = False) -> Task:
        """Start an import: check the request, record the task (which runs it). Raises
        `StagedElsewhere` for a glance-direct of data another server staged in an area this
        one does not share, unless the request was `forwarded` here by another server."""
        if not isinstance(body, dict):
            raise Invalid("Request body must be a JSON object.")
        method = body.get("method")
        name = method.get("name") if isinstance(method, dict) else None
        if not isinstance(name, str):
            raise Invalid("The import 'method' must be an object with a 'name'.")
        if name not in self.methods:
            raise Invalid(f"Import method {name!r} is not one of this server's: "
                          f"{', '.join(self.methods) or 'none'}.")
        assert isinstance(method, dict)
        if (body.get("stores") is not None or body.get("all_stores")) \
                and not self._settings.multistore:
            raise Invalid("This server has one store: 'stores' and 'all_stores' need "
                          "several.")
        must = body.get("all_stores_must_succeed", True)
        if not isinstance(must, bool):
            raise Invalid("'all_stores_must_succeed' must be a boolean.")
        if name == "web-download":
            self.check_uri(method.get("uri"))
        if name == GLANCE_DOWNLOAD:
            self._check_glance_download(ctx, method)
        copies = name == "copy-image"
        member = await membership_of(self._members, ctx, image_id)
        image = await self._repo.get(image_id)
        self._policy.check_visible(ctx, image, member)
        if copies:
            self._policy.check("copy_image", ctx, image, member, "copy")
        else:
            self._policy.check("modify_image", ctx, image, member, "import data to")
        targets = self._targets(body, copies, image)
        task = Task.new(TASK_TYPE, image.owner, self._clock().replace(microsecond=0),
                        image_id=image_id, request_id=ctx.request_id, user_id=ctx.user_id,
                        input_={"image_id": image_id, "import_req": body, "backend": targets})
        if name == "glance-direct" and not forwarded:
            await self._check_staged_here(image)
        if name == GLANCE_DOWNLOAD and ctx.auth_token:
            self._tokens[task.id] = ctx.auth_token  # for the task, never in its input
        try:
            await self.record(ctx, task, name, targets, member)
        except BaseException:
            self._tokens.pop(task.id, None)
            raise
        return task

    def staged_metadata(self, replaced: dict[str, Any] | None = None) -> dict[str, Any]:
        """The metadata of a staged location this server records: the server (when its
        `self_url` is set) and what the import replaced, if anything."""
        metadata: dict[str, Any] = {STAGE_HOST: self._settings.self_url} \
            if self._settings.self_url else {}
        if replaced:
            metadata[REPLACED] = replaced
        return metadata

    async def _check_staged_here(self, image: Image) -> None:
        """`StagedElsewhere` when another server recorded the image's staged data and it is
        not in this server's staging area."""
        staged = image.staged
        host = staged.metadata.get(STAGE_HOST) if staged is not None else None
        if staged is None or not isinstance(host, str) or not host \
                or host == self._settings.self_url:
            return
        try:
            await self._staging.stat(staged.key)
        except ObjectNotFound:
            raise StagedElsewhere(host) from None
        except StoreError:
            return  # the task reports what is wrong with the staging area

    async def check_delete_here(self, ctx: RequestContext, image_id: str) -> None:
        """Before a delete: `StagedElsewhere` when the image has data another server staged
        and this one cannot reach, so that server deletes it (and its staged data) instead.
        An image the caller cannot see is left for the delete to refuse."""
        if not self._settings.self_url:
            return
        member = await membership_of(self._members, ctx, image_id)
        try:
            image = await self._repo.get(image_id)
            self._policy.check_visible(ctx, image, member)
        except NotFound:
            return
        await self._check_staged_here(image)

    def _check_glance_download(self, ctx: RequestContext, method: dict[str, Any]) -> None:
        """A glance-download request names a remote image by UUID and a region; the interface
        defaults to public (as in Glance, written into the request the task records)."""
        remote_id = method.get("glance_image_id")
        if not isinstance(remote_id, str) or not remote_id:
            raise Invalid("glance-download needs the 'glance_image_id' of the remote image.")
        try:
            uuid.UUID(remote_id)
        except ValueError:
            raise Invalid(f"Remote image id does not look like a UUID: {remote_id[:80]}"
                          ) from None
        region = method.get("glance_region")
        if not isinstance(region, str) or not region:
            raise Invalid("glance-download needs the 'glance_region' of the remote image "
                          "service.")
        interface = method.setdefault("glance_service_interface", "public")
        if not isinstance(interface, str) or not interface:
            raise Invalid("'glance_service_interface' must be an endpoint interface such as "
                          "public.")
        if not ctx.auth_token:
            raise Invalid("glance-download reads the remote image with the caller's token, "
                          "and this request has none.")

    def check_uri(self, uri: object) -> str:
        """The web-download URI if the import filters let it through (no network), else
        `Invalid` saying why."""
        if not isinstance(uri, str) or not uri:
            raise Invalid("web-download needs the 'uri' of the image data.")
        assert self._settings.filters is not None
        try:
            return self._settings.filters.check(uri)
        except StoreError as exc:
            raise Invalid(f"URI {uri[:120]} does not pass filtering: {exc.message}") from exc

    def default_targets(self) -> list[str]:
        """The stores an import without `stores` writes to."""
        return [self._settings.default_store]

    async def record(self, ctx: RequestContext, task: Task, name: str, targets: list[str],
                     member: MemberStatus | None) -> None:
        """Take the import lock of `task.image_id` for `task` (importing with method `name`
        to `targets`) and record the task with that change, which starts it; `Conflict` if
        another import holds the lock or the image is not in the status `name` needs."""
        assert task.image_id is not None
        image_id = task.image_id
        copies = name == "copy-image"

        def change(img: Image) -> None:
            if img.properties.get(LOCK):
                raise Conflict(f"Image {image_id} has an import in progress "
                               f"(task {img.properties[LOCK]}).")
            if not copies:
                self._policy.check("modify_image", ctx, img, member, "import data to")
            img.begin_import(name, needs_staged=name == "glance-direct", copies=copies)
            img.properties[LOCK] = task.id
            img.properties[IMPORTING] = ",".join(targets)
            img.properties[FAILED] = ""

        await self._mutate(image_id, change, tasks=[task])


#: Key of a staged location's metadata: what the import replaced on the image to stage it (the
#: disk_format and container_format a conversion changed, and the properties a glance-download
#: copied over), restored if the import fails. Kept with the staged data, in the change that
#: records it, so a task resumed by another server restores it too.
REPLACED = "replaced"
#: Key of a staged location's metadata: the `self_url` of the server that staged the data.
STAGE_HOST = "host"


def _replaced(image: Image) -> dict[str, Any] | None:
    staged = image.staged
    found = staged.metadata.get(REPLACED) if staged is not None else None
    return found if isinstance(found, dict) else None


class ImportTask:
    """The `api_image_import` task (see the module docstring)."""

    def __init__(self, service: ImportService) -> None:
        self._svc = service

    async def run(self, task: Task) -> dict[str, object] | None:
        svc = self._svc
        assert task.image_id is not None
        image_id = task.image_id
        request = task.input.get("import_req") or {}
        method = str(request.get("method", {}).get("name"))
        targets = [str(s) for s in task.input.get("backend") or []]
        must = request.get("all_stores_must_succeed", True) is not False
        try:
            image = await svc._repo.get(image_id)
        except NotFound as exc:
            raise TaskFailed("The image was deleted.") from exc
        if image.properties.get(LOCK) != task.id:
            raise TaskFailed("The image is no longer waiting for this import.")
        if method == "web-download":
            image = await self._download(task, image, str(request["method"]["uri"]))
        elif method == GLANCE_DOWNLOAD:
            image = await self._glance_download(task, image, request["method"])
        if method != "copy-image":  # a copy moves data already converted
            await self._check_staged(image)
            image = await self._convert(task, image)
        source = self._source(image, method, targets)
        digest: Digest | None = None
        done: list[str] = []
        for store_id in targets:
            try:
                digest = await self._import_to(image, store_id, source, method, digest)
                done.append(store_id)
            except (RefusedData, TooLarge, Invalid) as exc:
                raise TaskFailed(f"Image data refused: {exc.message}") from exc
            except (StoreError, Conflict) as exc:
                log.warning("image %s: import to store %s failed: %s", image_id, store_id, exc)
                await self._progress(image_id, store_id, failed=True)
                if must:
                    raise TaskFailed(f"Import to store {store_id} failed: {exc}") from exc
        if not done:
            raise TaskFailed("The import stored the data in no store.")

        def finish(img: Image) -> list[Location]:
            staged = img.finish_import(digest)
            img.properties.pop(LOCK, None)
            img.properties[IMPORTING] = ""
            return staged

        # image_size_total, exactly, when the image becomes active (a copy adds no size)
        limits = (await svc._quotas.limits(image.owner) if svc._quotas is not None
                  else None)
        try:
            await svc._mutate(image_id, finish, limits)
        except TooLarge as exc:
            raise TaskFailed(exc.message) from exc
        return {"image_id": image_id, "stores": done}

    def _source(self, image: Image, method: str, targets: list[str]) -> Location:
        if method == "copy-image":
            # Not a copy an earlier run of this task made in a target: that one is replaced.
            readable = [loc for loc in image.readable_locations if loc.store not in targets]
            if not readable:
                raise TaskFailed("The image has no data to copy.")
            return readable[0]
        staged = image.staged
        if staged is None:
            raise TaskFailed("No staged data to import.")
        return staged

    async def _convert(self, task: Task, image: Image) -> Image:
        """Conversion on import (docs/conversion.md): the staged data converted to the
        configured format becomes the staged data, with the new disk_format and container_format
        bare, in the change that hands the old file to a deletion job. Nothing happens without
        an output format or when the image is in it already (so also when a resumed task had
        converted before). A refusal or a qemu-img failure fails the task with its message."""
        svc = self._svc
        settings = svc._settings.conversion
        if settings.output_format is None or image.disk_format == settings.output_format:
            return image
        files = svc._staging_files
        staged = image.staged
        assert staged is not None  # run() checked it (_check_staged)
        if files is None:
            raise TaskFailed("Image conversion needs a staging area of local files.")
        session = UploadSession.open(image.id, svc._staging.id, Purpose.STAGE, svc._clock())
        await svc._mutate(image.id, lambda img: None, opened=[session])
        beat = asyncio.create_task(svc._heartbeat(session))
        try:
            try:
                source = files.path_of(staged.key)
                result = await convert(source, image.disk_format or "", settings, source.parent)
                if result.path == source:  # nothing to convert after all
                    raise TaskFailed("Image conversion produced no new data.")
                await files.adopt(session.location.key, result.path)
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
        except BaseException as exc:
            with CancelScope(shield=True):
                await svc._settle_failed(session, lambda img: None)
            if isinstance(exc, RefusedData):
                raise TaskFailed(f"Image conversion refused the data: {exc.message}") from exc
            if isinstance(exc, (ConversionFailed, StoreError)):
                raise TaskFailed(f"Image conversion failed: {exc}") from exc
            raise
        def swap(img: Image) -> list[Location]:
            if img.status != ImageStatus.IMPORTING or img.properties.get(LOCK) != task.id:
                raise Conflict(f"Image {img.id} is no longer importing with task {task.id}")
            replaced = _replaced(img) or {"disk_format": img.disk_format,
                                          "container_format": img.container_format}
            old = img.drop_staged()
            img.locations.append(Location(session.location.store, session.location.key,
                                          LocationStatus.STAGED,
                                          svc.staged_metadata(replaced)))
            img.disk_format = result.disk_format
            img.container_format = "bare"
            img.size = result.size
            img.virtual_size = result.virtual_size
            return old

        try:
            image = await svc._mutate(image.id, swap, closed=[session.id])
        except BaseException as exc:
            with CancelScope(shield=True):
                await svc._settle_failed(session, lambda img: None)
            if isinstance(exc, Conflict):
                raise TaskFailed(f"The image changed during its conversion: {exc.message}"
                                 ) from exc
            raise
        log.info("image %s: converted to %s (%d bytes)", image.id, result.disk_format,
                 result.size)
        return image

    async def _check_staged(self, image: Image) -> None:
        """The staged data is in this server's staging area; else the task fails saying why
        (servers of one deployment must share `staging_dir`)."""
        staged = image.staged
        if staged is None:
            raise TaskFailed("The image has no staged data to import.")
        try:
            await self._svc._staging.stat(staged.key)
        except ObjectNotFound as exc:
            raise TaskFailed("The staged data is not in this server's staging area: the "
                             "servers of a deployment must share one staging_dir "
                             "(docs/import.md).") from exc
        except StoreError as exc:
            raise TaskFailed(f"The staged data cannot be read: {exc}") from exc

    async def _download(self, task: Task, image: Image, uri: str) -> Image:
        """web-download: fetch the URI into the staging area (once; a resumed task that finds
        the data staged already goes on)."""
        svc = self._svc
        if image.staged is not None:
            return image
        filters = svc._settings.filters
        assert filters is not None
        return await self._stage_from(
            image, lambda: open_download(uri, filters, svc._settings.size_cap),
            f"web-download of {uri[:120]}")

    async def _glance_download(self, task: Task, image: Image,
                               method: dict[str, Any]) -> Image:
        """glance-download: find the remote image through the caller's Keystone catalog, stage
        its data and, in the change that records the staged data, take its disk_format,
        container_format and the configured properties (the image's own are remembered, and
        restored if the import fails). Once: a resumed task that finds the data staged goes on.

        The caller's token is held in memory by the server that took the request, never
        recorded: a task resumed by another server (or after a restart) before its data was
        staged has no token, and fails saying so."""
        svc = self._svc
        if image.staged is not None:
            return image
        downloader = svc._settings.glance_download
        token = svc._tokens.pop(task.id, None)
        if downloader is None:
            raise TaskFailed("glance-download is not available on this server.")
        if token is None:
            raise TaskFailed("glance-download reads the remote image with the token of the "
                             "user who asked for it, which only the server that took the "
                             "request held, and that server stopped before the data was "
                             "staged: import again.")
        remote_id = str(method.get("glance_image_id"))
        region = str(method.get("glance_region"))
        interface = str(method.get("glance_service_interface") or "public")
        what = f"glance-download of image {remote_id} from region {region!r} ({interface})"
        try:
            found = await downloader.find(token, region, interface, remote_id)
        except StoreError as exc:
            raise TaskFailed(f"{what} failed: {exc.message}") from exc

        def adopt(img: Image) -> dict[str, Any]:
            replaced = {"disk_format": img.disk_format,
                        "container_format": img.container_format,
                        "properties": {key: img.properties.get(key) for key in found.properties}}
            img.disk_format = found.disk_format or img.disk_format
            img.container_format = found.container_format or img.container_format
            img.properties.update(found.properties)
            return replaced

        return await self._stage_from(image, lambda: downloader.open_data(found, token), what,
                                      adopt)

    async def _stage_from(self, image: Image,
                          open_source: Callable[[], Awaitable[StagingSource]], what: str,
                          adopt: Callable[[Image], dict[str, Any]] | None = None) -> Image:
        """Stream a source (opened by `open_source`, under an upload session of the staging
        store) into the staging area and record it as the image's staged data, with `adopt`'s
        change if given (what it replaced is kept with the staged data: `REPLACED`). A source
        that fails (a `StoreError`) fails the task with `what` and its message; nothing is left
        staged."""
        svc = self._svc
        session = UploadSession.open(image.id, svc._staging.id, Purpose.STAGE, svc._clock())
        await svc._mutate(image.id, lambda img: None, opened=[session])
        try:
            source = await open_source()
        except StoreError as exc:
            await svc._settle_failed(session, lambda img: None)
            raise TaskFailed(f"{what} failed: {exc.message}") from exc
        except BaseException:
            with CancelScope(shield=True):
                await svc._settle_failed(session, lambda img: None)
            raise
        try:
            size = await svc._write(session, source.chunks(), [], None, source.size)
        except BaseException as exc:
            with CancelScope(shield=True):
                await source.aclose()
                await svc._settle_failed(session, lambda img: None)
            if isinstance(exc, StoreError):
                raise TaskFailed(f"{what} failed: {exc.message}") from exc
            raise

        def staged(img: Image) -> None:
            if img.status != ImageStatus.IMPORTING:
                raise Conflict(f"Image {img.id} is {img.status}")
            img.locations = [loc for loc in img.locations
                             if loc.status != LocationStatus.STAGED]
            replaced = adopt(img) if adopt is not None else None
            img.locations.append(Location(session.location.store, session.location.key,
                                          LocationStatus.STAGED,
                                          svc.staged_metadata(replaced)))
            img.size = size

        return await svc._mutate(image.id, staged, closed=[session.id])

    async def _import_to(self, image: Image, store_id: str, source: Location, method: str,
                         previous: Digest | None) -> Digest:
        svc = self._svc
        store = svc._stores.get(store_id)
        if store is None or not store.capabilities.write:
            raise Conflict(f"store {store_id!r} is not a writable store of this server")
        purpose = Purpose.COPY if method == "copy-image" else Purpose.IMPORT
        session = UploadSession.open(image.id, store_id, purpose, svc._clock())
        await svc._mutate(image.id, lambda img: None, opened=[session])
        md5 = Hasher("md5")
        multihash = Hasher(svc._settings.hashing_algorithm)
        stages: list[Stage] = [md5, multihash]
        # Every path that brings bytes into a store inspects them, copies too: the bytes read
        # back from a store are checked again, never trusted for having passed once.
        inspection = FormatInspection(image.disk_format, image.container_format,
                                      svc._settings.inspection)
        stages.append(inspection)
        signature = await to_thread.run_sync(SignatureVerification.for_image,
                                             image.properties, svc._settings.certificates)
        if signature is not None:
            stages.append(signature)
        reader: Reader = await svc._store_of(source.store).open_reader(source.key)
        try:
            size = await svc._write(session, drain(reader), stages, None, reader.size)
        except BaseException:
            with CancelScope(shield=True):
                await svc._settle_failed(session, lambda img: None)
            raise
        virtual = inspection.finish().virtual_size  # finished by `_write`: its result again
        digest = Digest(size, md5.hexdigest(), svc._settings.hashing_algorithm,
                        multihash.hexdigest(), virtual)
        location = session.location

        def add(img: Image) -> list[Location]:
            # The targets held no copy when the import began (`_targets`), so a copy in this
            # store is an earlier run's of this task (its server died): replaced, not kept.
            earlier = [loc for loc in img.readable_locations
                       if loc.store == store_id and not loc.same_place(location)]
            img.add_imported(location, digest)
            img.locations = [loc for loc in img.locations
                             if not any(loc.same_place(e) for e in earlier)]
            remaining = [s for s in img.properties.get(IMPORTING, "").split(",")
                         if s and s != store_id]
            img.properties[IMPORTING] = ",".join(remaining)
            weights = {s.id: s.weight for s in svc._stores.values()}
            img.locations.sort(key=lambda loc: (loc.status == LocationStatus.STAGED,
                                                -weights.get(loc.store, 0), loc.store))
            return earlier

        try:
            await svc._mutate(image.id, add, closed=[session.id])
        except BaseException:
            with CancelScope(shield=True):
                await svc._settle_failed(session, lambda img: None)
            raise
        return digest

    async def _progress(self, image_id: str, store_id: str, failed: bool) -> None:
        def change(img: Image) -> None:
            remaining = [s for s in img.properties.get(IMPORTING, "").split(",")
                         if s and s != store_id]
            img.properties[IMPORTING] = ",".join(remaining)
            if failed:
                failures = [s for s in img.properties.get(FAILED, "").split(",") if s]
                img.properties[FAILED] = ",".join(dict.fromkeys([*failures, store_id]))

        with contextlib.suppress(NotFound, Conflict):
            await self._svc._mutate(image_id, change)

    async def failed(self, task: Task, message: str) -> None:
        if task.image_id is None:
            return
        targets = [str(s) for s in task.input.get("backend") or []]
        self._svc._tokens.pop(task.id, None)

        def change(img: Image) -> list[Location]:
            if img.properties.get(LOCK) != task.id:
                return []
            replaced = _replaced(img)
            gone = img.fail_import()
            if replaced:  # the data is gone: the image is as before its import
                img.disk_format = replaced.get("disk_format")
                img.container_format = replaced.get("container_format")
                for key, value in (replaced.get("properties") or {}).items():
                    if value is None:
                        img.properties.pop(key, None)
                    else:
                        img.properties[key] = value
            img.properties.pop(LOCK, None)
            failures = [s for s in img.properties.get(FAILED, "").split(",") if s]
            pending = [s for s in img.properties.get(IMPORTING, "").split(",") if s]
            img.properties[FAILED] = ",".join(dict.fromkeys([*failures, *pending] or targets))
            img.properties[IMPORTING] = ""
            return gone

        with contextlib.suppress(NotFound, Conflict):
            await self._svc._mutate(task.image_id, change)



