"""The SQL image repository against a real database: rows, compare-and-swap, queries."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from sqlalchemy import Engine, inspect

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Conflict, Invalid, NotFound, StaleImage
from glimpse.domain.images import Image, ImageStatus, Location, Visibility
from glimpse.domain.query import Condition, ListQuery, Scope, SortKey
from glimpse.registry.images import SqlImageRepository
from glimpse.registry.migrate import upgrade

pytestmark = pytest.mark.anyio
ADMIN = RequestContext("admin", frozenset({"admin"}))
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def new_image(n: int = 0, **fields: object) -> Image:
    at = T0 + timedelta(seconds=n)
    image = Image(id=str(uuid.uuid4()), owner="p1", created_at=at, updated_at=at)
    for key, value in fields.items():
        setattr(image, key, value)
    return image


def test_migrations_create_every_table_and_index(engine: Engine) -> None:
    upgrade(engine)  # idempotent
    insp = inspect(engine)
    assert {"images", "image_properties", "image_tags", "image_locations"} <= set(
        insp.get_table_names())
    index_names = {ix["name"] for ix in insp.get_indexes("images")}
    assert {"ix_images_created_at_id", "ix_images_status", "ix_images_name"} <= index_names


async def test_add_get_round_trip(repo: SqlImageRepository) -> None:
    image = new_image(name="n", tags={"a", "b"}, properties={"os_distro": "x"},
                      locations=[Location("file", "k1")], size=5)
    await repo.add(image)
    got = await repo.get(image.id)
    assert got.name == "n" and got.tags == {"a", "b"} and got.properties == {"os_distro": "x"}
    assert got.locations == [Location("file", "k1")] and got.size == 5
    assert got.created_at == image.created_at and got.version == 1


async def test_duplicate_id_conflicts(repo: SqlImageRepository) -> None:
    image = await repo.add(new_image())
    with pytest.raises(Conflict):
        await repo.add(new_image(id=image.id))


async def test_deleted_images_are_absent_and_ids_not_reused(repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(status=ImageStatus.ACTIVE))
    image.delete()
    await repo.save(image)
    with pytest.raises(NotFound):
        await repo.get(image.id)
    with pytest.raises(Conflict):
        await repo.add(new_image(id=image.id))


async def test_save_is_compare_and_swap(repo: SqlImageRepository) -> None:
    image = await repo.add(new_image())
    first, second = await repo.get(image.id), await repo.get(image.id)
    first.name = "first"
    await repo.save(first)
    second.name = "second"
    with pytest.raises(StaleImage):
        await repo.save(second)
    assert (await repo.get(image.id)).name == "first"


def test_racing_saves_in_threads_one_winner(engine: Engine) -> None:
    """Eight real sessions save the same version at once: exactly one wins."""
    repo = SqlImageRepository(engine, threads=8)
    image = anyio.run(repo.add, new_image())
    results: list[str] = []
    barrier = threading.Barrier(8)

    def racer(n: int) -> None:
        mine = anyio.run(repo.get, image.id)
        mine.name = f"racer-{n}"
        barrier.wait()
        try:
            anyio.run(repo.save, mine)
            results.append("won")
        except StaleImage:
            results.append("lost")

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost"] * 7 + ["won"]


async def test_touch_and_stale_uploads(repo: SqlImageRepository) -> None:
    image = new_image(disk_format="raw", container_format="bare")
    image.begin_upload("u1", T0)
    await repo.add(image)
    assert await repo.touch_upload(image.id, "u1", T0 + timedelta(seconds=30)) is True
    assert await repo.touch_upload(image.id, "other", T0) is False
    assert [i.id for i in await repo.stale_uploads(T0 + timedelta(seconds=31))] == [image.id]
    assert await repo.stale_uploads(T0 + timedelta(seconds=30)) == []


async def _ids(repo: SqlImageRepository, ctx: RequestContext = ADMIN, **query: object) -> list[str]:
    return [i.id for i in await repo.find(ctx, ListQuery(**query))]  # type: ignore[arg-type]


async def test_filters(repo: SqlImageRepository) -> None:
    a = await repo.add(new_image(1, name="a", size=10, properties={"os": "linux"}, tags={"x"}))
    b = await repo.add(new_image(2, name="b", size=20, properties={"os": "bsd"},
                                 tags={"x", "y"}))
    c = await repo.add(new_image(3, name=None, size=None, os_hidden=True))
    assert await _ids(repo, conditions=(Condition("name", "eq", "a"),)) == [a.id]
    assert await _ids(repo, conditions=(Condition("name", "in", ("a", "b")),)) == [b.id, a.id]
    assert await _ids(repo, conditions=(Condition("os", "eq", "bsd", prop=True),)) == [b.id]
    assert await _ids(repo, conditions=(Condition("size", "gte", 15),)) == [b.id]
    assert await _ids(repo, tags=("x", "y")) == [b.id]
    assert await _ids(repo, conditions=(Condition("os_hidden", "eq", True),)) == [c.id]
    after = T0 + timedelta(seconds=2)
    assert await _ids(repo, conditions=(Condition("created_at", "gte", after),)) == [c.id, b.id]


async def test_scopes_for_non_admins(repo: SqlImageRepository) -> None:
    mine = await repo.add(new_image(1, owner="me", visibility=Visibility.PRIVATE))
    public = await repo.add(new_image(2, owner="other", visibility=Visibility.PUBLIC))
    community = await repo.add(new_image(3, owner="other", visibility=Visibility.COMMUNITY))
    await repo.add(new_image(4, owner="other", visibility=Visibility.PRIVATE))
    me = RequestContext("me", frozenset({"member"}))
    assert set(await _ids(repo, me)) == {mine.id, public.id}
    assert set(await _ids(repo, me, scope=Scope.ALL)) == {mine.id, public.id, community.id}
    assert await _ids(repo, me, scope=Scope.COMMUNITY) == [community.id]
    assert await _ids(repo, me, scope=Scope.PRIVATE) == [mine.id]
    assert len(await _ids(repo)) == 4  # admins see everything


async def test_keyset_paging_with_nulls_covers_everything_once(repo: SqlImageRepository) -> None:
    names = ["b", None, "a", "b", None, "c", "a"]
    for n, name in enumerate(names):
        await repo.add(new_image(n, name=name))
    for direction in ("asc", "desc"):
        sort = (SortKey("name", direction), SortKey("created_at", direction),  # type: ignore[arg-type]
                SortKey("id", direction))  # type: ignore[arg-type]
        seen: list[Image] = []
        marker = None
        while True:
            page = await repo.find(ADMIN, ListQuery(sort=sort, limit=2, marker=marker))
            seen += page
            if len(page) < 2:
                break
            marker = page[-1].id
        assert len(seen) == len(names) and len({i.id for i in seen}) == len(names)
        keys = [(i.name is not None, i.name or "") for i in seen]
        assert keys == sorted(keys, reverse=direction == "desc")


async def test_unknown_marker_is_invalid(repo: SqlImageRepository) -> None:
    with pytest.raises(Invalid):
        await repo.find(ADMIN, ListQuery(marker=str(uuid.uuid4())))
