"""Downloads across several stores: the first location that answers serves; a store that is down
is skipped (and logged), and when every store holding the data is down the answer is 503-worthy
`StoreUnavailable`, never 404. Real SQLite, a real filesystem store, and a Swift driver aimed at
a closed port (a store that is down)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import NotFound
from glimpse.domain.images import Image, ImageStatus, Location
from glimpse.registry.engine import make_engine
from glimpse.registry.images import SqlImageRepository
from glimpse.registry.members import SqlMemberRepository
from glimpse.registry.migrate import upgrade
from glimpse.services.downloads import DownloadService
from glimpse.services.policy import Policy
from glimpse.stores.base import Store
from glimpse.stores.errors import StoreUnavailable
from glimpse.stores.filesystem import FilesystemDriver
from glimpse.stores.swift import SwiftDriver
from tests.servers import free_port

pytestmark = pytest.mark.anyio
ADMIN = RequestContext("admin", frozenset({"admin"}))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[SqlImageRepository, DownloadService,
                                                        Store]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(engine)
    repo, members = SqlImageRepository(engine), SqlMemberRepository(engine)
    disk = Store("file", FilesystemDriver(tmp_path / "images"))
    down = Store("swift", SwiftDriver(auth_url=f"http://127.0.0.1:{free_port()}/auth/v1.0",
                                      user="a:b", key="k", timeout=2.0))
    service = DownloadService(repo, members, Policy(), {"file": disk, "swift": down})
    yield repo, service, disk
    await down.aclose()
    members.close()
    repo.close()


async def _image(repo: SqlImageRepository, disk: Store, *stores: str) -> str:
    image_id = str(uuid.uuid4())
    writer = await disk.open_writer(image_id)
    await writer.write([b"payload"])
    await writer.commit()
    now = datetime.now(UTC)
    await repo.add(Image(id=image_id, owner="admin", created_at=now, updated_at=now,
                         status=ImageStatus.ACTIVE, disk_format="raw", container_format="bare",
                         size=7, locations=[Location(s, image_id) for s in stores]))
    return image_id


async def test_a_store_that_is_down_is_skipped(parts: tuple[SqlImageRepository,
                                                             DownloadService, Store],
                                               caplog: pytest.LogCaptureFixture) -> None:
    repo, service, disk = parts
    image_id = await _image(repo, disk, "swift", "file")
    with caplog.at_level(logging.WARNING):
        opened = await service.open(ADMIN, image_id)
    assert opened.reader is not None
    assert b"".join([c async for c in opened.reader.chunks()]) == b"payload"
    assert any("swift" in r.getMessage() and image_id in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


async def test_every_store_down_is_unavailable_not_missing(
        parts: tuple[SqlImageRepository, DownloadService, Store]) -> None:
    repo, service, disk = parts
    image_id = await _image(repo, disk, "swift")
    with pytest.raises(StoreUnavailable) as caught:
        await service.open(ADMIN, image_id)
    assert caught.value.store_id == "swift"


async def test_data_missing_everywhere_is_not_found(
        parts: tuple[SqlImageRepository, DownloadService, Store]) -> None:
    repo, service, disk = parts
    image_id = await _image(repo, disk, "file")
    await disk.delete(image_id)
    with pytest.raises(NotFound):
        await service.open(ADMIN, image_id)
