"""The one place where Glimpse is wired: settings → registry, stores, services → routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette

from glimpse.api import errors
from glimpse.api.identity import Authenticator, NoAuth
from glimpse.api.middleware import ASGIApp, EdgeMiddleware
from glimpse.api.routes import data, images, info, locations, members, schemas, versions
from glimpse.api.routes import stores as store_routes
from glimpse.api.wiring import Services
from glimpse.config import Settings
from glimpse.domain.changes import Quotas
from glimpse.registry.deletions import SqlDeletionJobs
from glimpse.registry.engine import concurrency, make_engine
from glimpse.registry.images import SqlImageRepository
from glimpse.registry.members import SqlMemberRepository
from glimpse.registry.tasks import SqlTaskRepository
from glimpse.registry.uploads import SqlUploadSessions
from glimpse.registry.usage import SqlUsage
from glimpse.services.cleanup import Cleanup
from glimpse.services.discovery import StoreDiscovery
from glimpse.services.downloads import DownloadService
from glimpse.services.glance_download import GlanceDownloader
from glimpse.services.images import ImageService, Limits
from glimpse.services.imports import STAGING_STORE, ImportService, ImportSettings, ImportTask
from glimpse.services.imports import TASK_TYPE as IMPORT_TASK
from glimpse.services.inspection import InspectionSettings
from glimpse.services.legacy_tasks import TASK_TYPE as LEGACY_IMPORT
from glimpse.services.legacy_tasks import LegacyImport, LegacyTasks
from glimpse.services.locations import (
    TASK_TYPE as LOCATION_IMPORT,
)
from glimpse.services.locations import (
    LocationImport,
    LocationService,
    LocationSettings,
)
from glimpse.services.members import MemberService
from glimpse.services.mutations import Mutator
from glimpse.services.policy import Policy
from glimpse.services.protections import UNPROTECTED, PropertyRules
from glimpse.services.quotas import ConfiguredLimits, QuotaService, QuotaSource
from glimpse.services.schemas import Schemas
from glimpse.services.signature import CertificateStore
from glimpse.services.tasks import TaskRunner, TaskService
from glimpse.services.uploads import UploadService, UploadSettings
from glimpse.stores import catalog
from glimpse.stores.base import Store
from glimpse.stores.filesystem import FilesystemDriver


def build_services(settings: Settings) -> tuple[Services, Callable[[], Awaitable[None]]]:
    """The services of one app, and the function that releases what they hold."""
    engine = make_engine(settings.database)
    # A claimed deletion job is left to its claimer for a few sweeps before another takes it.
    lease = max(6 * settings.cleanup_interval, 1.0)
    repo = SqlImageRepository(engine, threads=concurrency(settings.database),
                              deletion_lease=lease)
    jobs = SqlDeletionJobs(engine, lease=lease)
    members = SqlMemberRepository(engine)
    policy = Policy(settings.policy_file or None)
    # Compiled once per process; `config` has already refused a broken file.
    protections = (PropertyRules.from_file(settings.property_protection_file)
                   if settings.property_protection_file else UNPROTECTED)
    stores = catalog.build(settings.store_specs)
    schemas_ = Schemas(settings.disk_formats, settings.container_formats)
    limits = Limits(
        property_quota=settings.image_property_quota,
        tag_quota=settings.image_tag_quota,
        default_page=settings.limit_param_default,
        max_page=settings.api_limit_max,
    )
    inspection = InspectionSettings(enabled=settings.require_image_format_match,
                                    vmdk_allowed_types=settings.vmdk_allowed_types)
    certificates = CertificateStore(settings.signature_certificates_dir)
    upload_settings = UploadSettings(
        store_id=settings.upload_store,
        hashing_algorithm=settings.hashing_algorithm,
        size_cap=settings.image_size_cap,
        heartbeat_interval=settings.upload_heartbeat_interval,
        stale_after=settings.upload_stale_after,
        inspection=inspection,
        certificates=certificates,
    )
    # Data staged for imports lives in a store of its own, never listed nor an upload target.
    staging_files = FilesystemDriver(settings.staging_path, direct_reads=True)  # read once
    staging = Store(STAGING_STORE, staging_files)
    cleanup = Cleanup(jobs, {**stores, STAGING_STORE: staging},
                      interval=settings.cleanup_interval)
    usage = SqlUsage(engine)
    source: QuotaSource
    keystone_limits = None
    if settings.use_keystone_limits:  # `config` has checked that auth = keystone
        from glimpse.api.limits import KeystoneLimits

        source = keystone_limits = KeystoneLimits(settings)
    else:
        source = ConfiguredLimits.of(
            image_size_total=settings.image_size_total,
            image_stage_total=settings.image_stage_total,
            image_count_total=settings.image_count_total,
            image_count_uploading=settings.image_count_uploading,
        )
    quotas = QuotaService(source, usage)
    task_repo = SqlTaskRepository(engine, lease=lease)
    sessions = SqlUploadSessions(engine)
    runner = TaskRunner(task_repo, lease=lease, interval=settings.cleanup_interval)
    mutate = Mutator(repo, cleanup, timeout=settings.write_retry_timeout,
                     quotas=Quotas(properties=settings.image_property_quota,
                                   tags=settings.image_tag_quota), runner=runner)
    location_settings = LocationSettings(
        show_multiple_locations=settings.show_multiple_locations,
        show_image_direct_url=settings.show_image_direct_url,
        do_secure_hash=settings.do_secure_hash,
        http_retries=settings.http_retries,
        hashing_algorithm=settings.hashing_algorithm,
        location_quota=(None if settings.image_location_quota < 0
                        else settings.image_location_quota),
        multistore=bool(settings.stores),
    )
    location_service = LocationService(repo, members, mutate, policy, stores, location_settings)
    import_service = ImportService(
        repo, members, mutate, policy, stores, staging, sessions, cleanup,
        ImportSettings(
            enabled_methods=settings.enabled_import_methods,
            hashing_algorithm=settings.hashing_algorithm, size_cap=settings.image_size_cap,
            default_store=settings.upload_store, multistore=bool(settings.stores),
            inspection=inspection,
            certificates=certificates,
            filters=settings.import_filter, heartbeat_interval=settings.upload_heartbeat_interval,
            conversion=settings.conversion,
            glance_download=GlanceDownloader(
                settings.keystone_auth_url, settings.web_download_timeout,
                settings.glance_download_properties) if settings.auth == "keystone" else None,
            self_url=settings.worker_self_reference_url.rstrip("/"),
        ), staging_files=staging_files, quotas=quotas)
    import_task = ImportTask(import_service)
    runner.register(IMPORT_TASK, import_task)
    runner.register(LEGACY_IMPORT, LegacyImport(repo, import_service, import_task, mutate))
    image_service = ImageService(repo, members, mutate, policy, schemas_, limits,
                                 protections=protections, quotas=quotas,
                                 locations=location_service)
    runner.register(LOCATION_IMPORT, LocationImport(repo, mutate, stores, location_settings,
                                                    inspection, settings.image_size_cap,
                                                    certificates))
    built = Services(
        settings=settings,
        schemas=schemas_,
        images=image_service,
        uploads=UploadService(repo, members, mutate, policy, cleanup, stores, upload_settings,
                              sessions, quotas=quotas),
        downloads=DownloadService(repo, members, policy, stores),
        members=MemberService(repo, members, policy, quota=(
            None if settings.image_member_quota < 0 else settings.image_member_quota)),
        discovery=StoreDiscovery(
            stores, settings.upload_store, multistore=bool(settings.stores), policy=policy,
            drivers={spec.id: (spec.driver, dict(spec.options)) for spec in settings.store_specs}),
        cleanup=cleanup,
        quotas=quotas,
        locations=location_service,
        tasks=TaskService(task_repo, repo, members, policy),
        runner=runner,
        imports=import_service,
        legacy_tasks=LegacyTasks(image_service, import_service, policy),
    )

    async def close() -> None:
        await runner.aclose()
        for store in stores.values():
            await store.aclose()
        if keystone_limits is not None:
            keystone_limits.close()
        usage.close()
        jobs.close()
        task_repo.close()
        sessions.close()
        members.close()
        repo.close()

    return built, close


def build_authenticator(settings: Settings) -> Authenticator:
    """The authenticator of `settings.auth` (validated settings name a known mode)."""
    if settings.auth == "keystone":
        from glimpse.api.keystone import KeystoneAuthenticator

        return KeystoneAuthenticator(settings)
    if settings.auth == "tokens":
        from glimpse.api.tokens import TokenAuthenticator

        return TokenAuthenticator(settings.tokens_path)
    return NoAuth(settings.default_project)


def create_app(settings: Settings) -> ASGIApp:
    authenticator = build_authenticator(settings)
    built, close = build_services(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        background = [asyncio.create_task(built.uploads.run_reaper()),
                      asyncio.create_task(built.cleanup.run_forever()),
                      asyncio.create_task(built.runner.run_forever())]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await close()
            authenticator.close()

    app = Starlette(
        routes=[*versions.routes, *schemas.routes, *images.routes, *members.routes,
                *data.routes, *info.routes, *store_routes.routes, *locations.routes],
        exception_handlers=errors.HANDLERS,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # Glance answers 404 to `/v2/images/`, not a redirect
    app.state.services = built
    return EdgeMiddleware(app, authenticator, access_log=settings.access_log)
