"""What the routes reach through the request: the services and the settings of this app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request

from glimpse.config import Settings
from glimpse.domain.context import RequestContext
from glimpse.services.cleanup import Cleanup
from glimpse.services.discovery import StoreDiscovery
from glimpse.services.downloads import DownloadService
from glimpse.services.images import ImageService
from glimpse.services.imports import ImportService
from glimpse.services.legacy_tasks import LegacyTasks
from glimpse.services.locations import LocationService
from glimpse.services.members import MemberService
from glimpse.services.quotas import QuotaService
from glimpse.services.schemas import Schemas
from glimpse.services.tasks import TaskRunner, TaskService
from glimpse.services.uploads import UploadService


@dataclass(frozen=True)
class Services:
    settings: Settings
    schemas: Schemas
    images: ImageService
    uploads: UploadService
    downloads: DownloadService
    members: MemberService
    discovery: StoreDiscovery
    cleanup: Cleanup
    quotas: QuotaService
    locations: LocationService
    tasks: TaskService
    runner: TaskRunner
    imports: ImportService
    legacy_tasks: LegacyTasks


def services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


def context(request: Request) -> RequestContext:
    return cast(RequestContext, request.scope["state"]["context"])
