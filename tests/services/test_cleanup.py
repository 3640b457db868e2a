"""Deletion jobs through the real services, SQLite registry and filesystem store, with store
faults injected in-process: a failing store never fails the delete and never orphans data."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from glimpse.domain.changes import ImageChange
from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Conflict, NotFound, StaleImage
from glimpse.domain.images import Image, ImageStatus, Location
from glimpse.registry.deletions import SqlDeletionJobs
from glimpse.registry.engine import make_engine
from glimpse.registry.images import SqlImageRepository
from glimpse.registry.members import SqlMemberRepository
from glimpse.registry.migrate import upgrade
from glimpse.services.cleanup import Cleanup
from glimpse.services.images import ImageService, Limits
from glimpse.services.mutations import Mutator
from glimpse.services.policy import Policy
from glimpse.services.schemas import Schemas
from glimpse.stores.base import Store
from glimpse.stores.errors import StoreUnavailable
from glimpse.stores.filesystem import FilesystemDriver

pytestmark = pytest.mark.anyio
ADMIN = RequestContext("admin", frozenset({"admin"}))
INTERVAL = 0.02


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FlakyDriver(FilesystemDriver):
    """The real filesystem driver, whose removals fail while `down` is set."""

    down = True

    async def discard(self, key: str) -> None:
        if self.down:
            raise StoreUnavailable("injected: the store is down")
        await super().discard(key)


class Parts:
    def __init__(self, tmp: Path) -> None:
        engine = make_engine(f"sqlite:///{tmp / 'registry.db'}")
        upgrade(engine)
        self.repo = SqlImageRepository(engine, deletion_lease=INTERVAL * 6)
        self.jobs = SqlDeletionJobs(engine, lease=INTERVAL * 6)
        self.driver = FlakyDriver(tmp / "images")
        self.store = Store("file", self.driver)
        self.cleanup = Cleanup(self.jobs, {"file": self.store}, interval=INTERVAL)
        self.members = SqlMemberRepository(engine)
        self.mutate = Mutator(self.repo, self.cleanup, timeout=0.3)
        self.images = ImageService(self.repo, self.members, self.mutate, Policy(),
                                   Schemas(["raw"], ["bare"]), Limits())

    def close(self) -> None:
        self.members.close()
        self.jobs.close()
        self.repo.close()


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    made = Parts(tmp_path)
    yield made
    made.close()


async def active_image(parts: Parts) -> tuple[Image, Path]:
    image_id = str(uuid.uuid4())
    key = f"{image_id}.data"
    writer = await parts.store.open_writer(key)
    await writer.write([b"bytes"])
    await writer.commit()
    now = datetime.now(UTC)
    image = Image(id=image_id, owner="admin", created_at=now, updated_at=now,
                  status=ImageStatus.ACTIVE, disk_format="raw", container_format="bare",
                  size=5, locations=[Location("file", key)])
    return await parts.repo.add(image), parts.driver.root / key


async def test_a_store_failure_after_the_delete_is_retried_until_the_data_is_gone(
        parts: Parts) -> None:
    image, path = await active_image(parts)
    await parts.images.delete(ADMIN, image.id)  # no error: the image is deleted
    with pytest.raises(NotFound):
        await parts.images.get(ADMIN, image.id)
    assert path.exists()  # the store refused; the job stays recorded
    await asyncio.sleep(INTERVAL * 3)
    assert await parts.cleanup.sweep() == 0 and path.exists()  # still down: postponed again
    parts.driver.down = False
    for _ in range(100):
        if await parts.cleanup.sweep() or not path.exists():
            break
        await asyncio.sleep(INTERVAL)
    assert not path.exists()
    await asyncio.sleep(INTERVAL * 50)
    assert await parts.jobs.claim_due(10) == []  # finished, not left behind


async def test_the_deleting_server_removes_the_data_at_once(parts: Parts) -> None:
    parts.driver.down = False
    image, path = await active_image(parts)
    await parts.images.delete(ADMIN, image.id)
    assert not path.exists()


class AlwaysRacing:
    """The real repository, with another writer changing `name` just before every update."""

    def __init__(self, repo: SqlImageRepository) -> None:
        self._repo = repo
        self.updates = 0

    async def get(self, image_id: str) -> Image:
        return await self._repo.get(image_id)

    async def update(self, change: ImageChange) -> Image:
        self.updates += 1
        current = await self._repo.get(change.image_id)
        rival = ImageChange(change.image_id, {"name": current.name},
                            {"name": f"rival-{self.updates}"})
        await self._repo.update(rival)
        return await self._repo.update(change)


async def test_a_lost_race_is_retried_then_refused_naming_the_field(parts: Parts) -> None:
    image, _ = await active_image(parts)
    racing = AlwaysRacing(parts.repo)
    mutate = Mutator(racing, parts.cleanup, timeout=1.0)  # type: ignore[arg-type]

    def rename(img: Image) -> None:
        img.name = "mine"

    with pytest.raises(Conflict) as caught:
        await mutate(image.id, rename)
    assert not isinstance(caught.value, StaleImage)
    assert "name" in caught.value.message and racing.updates > 3

    def tag(img: Image) -> None:  # a disjoint field: the rival's writes do not matter
        img.tags.add("t")

    assert (await mutate(image.id, tag)).tags == {"t"}
