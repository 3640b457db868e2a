"""Per-project quotas in the registry, on SQLite, PostgreSQL and MariaDB: what `usage` counts,
and the exact checks inside the transactions that would pass a limit, raced by real sessions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from copy import deepcopy
from datetime import UTC, datetime

import anyio
import pytest
from sqlalchemy import Engine

from glimpse.domain.changes import ImageChange, Quotas, diff
from glimpse.domain.errors import TooLarge
from glimpse.domain.images import Digest, Image, ImageStatus, Location
from glimpse.domain.quotas import ProjectLimits, Usage
from glimpse.registry.images import SqlImageRepository
from glimpse.registry.usage import SqlUsage

pytestmark = pytest.mark.anyio
T0 = datetime(2025, 1, 1, tzinfo=UTC)
S = ImageStatus


def new_image(owner: str = "p1", **fields: object) -> Image:
    image = Image(id=str(uuid.uuid4()), owner=owner, created_at=T0, updated_at=T0,
                  disk_format="raw", container_format="bare")
    for key, value in fields.items():
        setattr(image, key, value)
    return image


def saving(owner: str = "p1") -> Image:
    """An image whose upload is in flight."""
    image = new_image(owner)
    image.begin_upload(str(uuid.uuid4()))
    return image


def finished(image: Image, size: int, limits: ProjectLimits) -> ImageChange:
    """The change that finishes `image`'s upload with `size` bytes, under `limits`."""
    after = deepcopy(image)
    assert image.upload_id is not None
    after.finish_upload(image.upload_id, Digest(size, "0" * 32, "sha512", "0" * 128),
                        Location("file", image.id))
    return diff(image, after, quotas=Quotas(project=limits))


def begun(image: Image, limits: ProjectLimits) -> ImageChange:
    after = deepcopy(image)
    after.begin_upload(str(uuid.uuid4()))
    return diff(image, after, quotas=Quotas(project=limits))


@pytest.fixture
def usage(engine: Engine) -> Iterator[SqlUsage]:
    counter = SqlUsage(engine)
    yield counter
    counter.close()


async def test_usage_counts_each_quota_by_status(repo: SqlImageRepository,
                                                 usage: SqlUsage) -> None:
    assert await usage.usage("p1") == Usage()
    for status, size in [(S.ACTIVE, 10), (S.DEACTIVATED, 5), (S.QUEUED, None), (S.SAVING, None),
                         (S.UPLOADING, 7), (S.IMPORTING, 3), (S.DELETED, 100), (S.KILLED, 50)]:
        await repo.add(new_image(status=status, size=size))
    await repo.add(new_image("p2", status=S.ACTIVE, size=1000))
    await repo.add(new_image(None, status=S.ACTIVE, size=1000))
    # Stored: active + deactivated; staged: uploading + importing; deleted and killed: nothing.
    assert await usage.usage("p1") == Usage(image_size_total=15, image_stage_total=10,
                                             image_count_total=6, image_count_uploading=3)
    assert await usage.usage("p2") == Usage(1000, 0, 1, 0)


async def test_finish_at_the_size_limit_passes_one_over_is_refused_and_kept_out(
        repo: SqlImageRepository, usage: SqlUsage) -> None:
    limits = ProjectLimits(image_size_total=100)
    await repo.add(new_image(status=S.ACTIVE, size=60))
    first, second = saving(), saving()
    await repo.add(first)
    await repo.add(second)
    stored = await repo.update(finished(first, 40, limits))  # 60 + 40 = 100: at the limit
    assert stored.status == S.ACTIVE and stored.size == 40
    with pytest.raises(TooLarge, match=r"image_size_total is over limit of 100 due to current "
                                       r"usage 100 and delta 1\]"):
        await repo.update(finished(second, 1, limits))
    # Refused as a whole: still saving, no size, no location; usage unchanged.
    kept = await repo.get(second.id)
    assert (kept.status, kept.size, kept.locations) == (S.SAVING, None, [])
    assert (await usage.usage("p1")).image_size_total == 100
    # An empty upload fits exactly at the limit.
    assert (await repo.update(finished(second, 0, limits))).status == S.ACTIVE


async def test_other_projects_and_unlimited_quotas_are_not_counted(
        repo: SqlImageRepository) -> None:
    await repo.add(new_image("p2", status=S.ACTIVE, size=500))
    image = saving()
    await repo.add(image)
    limits = ProjectLimits(image_size_total=100)
    assert (await repo.update(finished(image, 100, limits))).size == 100
    other = saving()
    await repo.add(other)
    # Only the size quota counts a finishing upload: other limits at 0 do not refuse it.
    assert (await repo.update(finished(other, 10, ProjectLimits(
        image_count_total=0, image_count_uploading=0, image_stage_total=0)))).size == 10


async def test_changes_that_grow_nothing_pass_over_a_limit(repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(status=S.ACTIVE, size=500))
    tight = Quotas(project=ProjectLimits(image_size_total=1, image_count_total=0,
                                         image_count_uploading=0, image_stage_total=0))
    renamed = deepcopy(image)
    renamed.name = "still fine"
    assert (await repo.update(diff(image, renamed, quotas=tight))).name == "still fine"
    before = await repo.get(image.id)
    off = deepcopy(before)
    off.deactivate()
    off_saved = await repo.update(diff(before, off, quotas=tight))
    on = deepcopy(off_saved)
    on.reactivate()  # deactivated → active: data that was already counted
    assert (await repo.update(diff(off_saved, on, quotas=tight))).status == S.ACTIVE


async def test_uploads_beginning_at_the_limit_pass_one_over_is_refused(
        repo: SqlImageRepository, usage: SqlUsage) -> None:
    limits = ProjectLimits(image_count_uploading=2)
    images = [await repo.add(new_image()) for _ in range(3)]
    await repo.update(begun(images[0], limits))
    await repo.update(begun(images[1], limits))
    with pytest.raises(TooLarge, match="image_count_uploading is over limit of 2 due to "
                                       "current usage 2 and delta 1"):
        await repo.update(begun(images[2], limits))
    assert (await repo.get(images[2].id)).status == S.QUEUED
    assert (await usage.usage("p1")).image_count_uploading == 2


async def test_staged_bytes_at_the_limit_pass_one_over_is_refused(
        repo: SqlImageRepository, usage: SqlUsage) -> None:
    limits = ProjectLimits(image_stage_total=10)

    def staged(image: Image, size: int) -> ImageChange:
        after = deepcopy(image)
        after.status, after.size = S.UPLOADING, size  # what staging will write
        return diff(image, after, quotas=Quotas(project=limits))

    first, second = await repo.add(new_image()), await repo.add(new_image())
    await repo.update(staged(first, 10))
    with pytest.raises(TooLarge, match="image_stage_total is over limit of 10"):
        await repo.update(staged(second, 1))
    assert (await repo.get(second.id)).status == S.QUEUED
    assert (await usage.usage("p1")).image_stage_total == 10


async def test_creates_at_the_count_limit_pass_one_over_is_refused(
        repo: SqlImageRepository, usage: SqlUsage) -> None:
    limits = ProjectLimits(image_count_total=2)
    await repo.add(new_image(status=S.DELETED))  # deleted images do not count
    await repo.add(new_image(), limits)
    await repo.add(new_image(), limits)
    refused = new_image()
    with pytest.raises(TooLarge, match="image_count_total is over limit of 2 due to current "
                                       "usage 2 and delta 1"):
        await repo.add(refused, limits)
    assert (await usage.usage("p1")).image_count_total == 2
    await repo.add(new_image("p2"), limits)  # per project
    await repo.add(refused)  # nothing of the refused insert was kept: its id is still free


# -- races between real sessions ---------------------------------------------------------------


Call = Callable[[SqlImageRepository], Awaitable[object]]


def updating(change: ImageChange) -> Call:
    async def call(repo: SqlImageRepository) -> None:
        await repo.update(change)
    return call


def adding(image: Image, limits: ProjectLimits) -> Call:
    async def call(repo: SqlImageRepository) -> None:
        await repo.add(image, limits)
    return call


def _race(engine: Engine, calls: list[Call]) -> list[str]:
    """Run `calls` at once, each in its own thread and database session."""
    repo = SqlImageRepository(engine, threads=len(calls))
    results: list[str] = []
    barrier = threading.Barrier(len(calls))

    def racer(call: Call) -> None:
        barrier.wait()
        try:
            anyio.run(call, repo)
            results.append("passed")
        except TooLarge:
            results.append("refused")

    threads = [threading.Thread(target=racer, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    repo.close()
    return sorted(results)


def _size_total(engine: Engine, project: str = "p1") -> int:
    counter = SqlUsage(engine)
    try:
        return anyio.run(counter.usage, project).image_size_total
    finally:
        counter.close()


@pytest.mark.parametrize("round_", range(3))
def test_finishing_uploads_that_together_pass_the_limit_one_is_refused(
        engine: Engine, round_: int) -> None:
    """Each finish fits alone (a snapshot would pass them all); together only 3 fit."""
    repo = SqlImageRepository(engine)
    project = f"race-{round_}"
    images = [anyio.run(repo.add, saving(project)) for _ in range(6)]
    repo.close()
    limits = ProjectLimits(image_size_total=300)
    changes = [finished(image, 100, limits) for image in images]
    results = _race(engine, [updating(c) for c in changes])
    assert results == ["passed"] * 3 + ["refused"] * 3
    assert _size_total(engine, project) == 300


def test_uploads_beginning_at_once_pass_the_uploading_count_only_up_to_it(
        engine: Engine) -> None:
    repo = SqlImageRepository(engine)
    images = [anyio.run(repo.add, new_image("racing")) for _ in range(6)]
    repo.close()
    limits = ProjectLimits(image_count_uploading=2)
    changes = [begun(image, limits) for image in images]
    assert _race(engine, [updating(c) for c in changes]) == ["passed"] * 2 + ["refused"] * 4


def test_creates_at_once_pass_the_count_only_up_to_it(engine: Engine) -> None:
    limits = ProjectLimits(image_count_total=3)
    images = [new_image("creating") for _ in range(6)]
    assert _race(engine, [adding(i, limits) for i in images]) == ["passed"] * 3 + ["refused"] * 3
