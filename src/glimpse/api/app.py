"""The one place where Glimpse is wired: settings → registry, stores, services → routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from glimpse.api import errors
from glimpse.api.middleware import ASGIApp, EdgeMiddleware
from glimpse.api.routes import data, images, schemas, versions
from glimpse.api.wiring import Services
from glimpse.config import Settings
from glimpse.registry.engine import concurrency, make_engine
from glimpse.registry.images import SqlImageRepository
from glimpse.services.downloads import DownloadService
from glimpse.services.images import ImageService, Limits
from glimpse.services.schemas import Schemas
from glimpse.services.uploads import UploadService, UploadSettings
from glimpse.stores.base import Store
from glimpse.stores.filesystem import FilesystemStore

STORE_ID = "file"


def build_services(settings: Settings) -> tuple[Services, SqlImageRepository]:
    engine = make_engine(settings.database)
    repo = SqlImageRepository(engine, threads=concurrency(settings.database))
    stores: dict[str, Store] = {STORE_ID: FilesystemStore(settings.images_dir, STORE_ID)}
    schemas_ = Schemas(settings.disk_formats, settings.container_formats)
    limits = Limits(
        property_quota=settings.image_property_quota,
        tag_quota=settings.image_tag_quota,
        default_page=settings.limit_param_default,
        max_page=settings.api_limit_max,
    )
    upload_settings = UploadSettings(
        store_id=STORE_ID,
        hashing_algorithm=settings.hashing_algorithm,
        size_cap=settings.image_size_cap,
        heartbeat_interval=settings.upload_heartbeat_interval,
        stale_after=settings.upload_stale_after,
    )
    built = Services(
        settings=settings,
        schemas=schemas_,
        images=ImageService(repo, stores, schemas_, limits),
        uploads=UploadService(repo, stores, upload_settings),
        downloads=DownloadService(repo, stores),
    )
    return built, repo


def create_app(settings: Settings) -> ASGIApp:
    built, repo = build_services(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        reaper = asyncio.create_task(built.uploads.run_reaper())
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            repo.close()

    app = Starlette(
        routes=[*versions.routes, *schemas.routes, *images.routes, *data.routes],
        exception_handlers={cls: errors.handle for cls in errors.HANDLED},
        lifespan=lifespan,
    )
    app.state.services = built
    return EdgeMiddleware(app, settings.default_project)
