"""The SQL image repository against a real database: rows, compare-and-swap, queries."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from sqlalchemy import Engine, inspect

from glimpse.domain.access import holds
from glimpse.domain.changes import Quotas, diff
from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Conflict, Invalid, NotFound, StaleImage, TooLarge
from glimpse.domain.images import Image, ImageStatus, Location, Visibility
from glimpse.domain.members import MemberStatus
from glimpse.domain.query import Condition, ListQuery, SortKey
from glimpse.domain.uploads import Purpose, UploadSession
from glimpse.registry.deletions import SqlDeletionJobs
from glimpse.registry.images import SqlImageRepository
from glimpse.registry.members import SqlMemberRepository
from glimpse.registry.migrate import upgrade
from glimpse.registry.uploads import SqlUploadSessions
from glimpse.services.visibility import listed, readable

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


async def save(repo: SqlImageRepository, before: Image, after: Image) -> Image:
    return await repo.update(diff(before, after))


def changed(image: Image, **fields: object) -> Image:
    copy = deepcopy(image)
    for key, value in fields.items():
        setattr(copy, key, value)
    return copy


async def test_deleted_images_are_absent_and_ids_not_reused(repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(status=ImageStatus.ACTIVE))
    gone = deepcopy(image)
    gone.delete()
    await save(repo, image, gone)
    with pytest.raises(NotFound):
        await repo.get(image.id)
    with pytest.raises(Conflict):
        await repo.add(new_image(id=image.id))


async def test_update_returns_the_stored_image(repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(properties={"a": "1"}, tags={"t"}))
    saved = await save(repo, image, changed(image, name="n", properties={"b": "2"},
                                            tags={"u"}, locations=[Location("file", "k")]))
    assert saved.name == "n" and saved.properties == {"b": "2"} and saved.tags == {"u"}
    assert saved.locations == [Location("file", "k")] and saved.version == 2
    assert await repo.get(image.id) == saved


async def test_disjoint_changes_from_one_read_both_land(repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(properties={"keep": "x"}, tags={"old"}))
    await save(repo, image, changed(image, name="first", properties={"keep": "x", "a": "1"},
                                    tags={"old", "t1"}))
    await save(repo, image, changed(image, min_ram=5, properties={"keep": "x", "b": "2"},
                                    tags={"t2"}))
    got = await repo.get(image.id)
    assert (got.name, got.min_ram) == ("first", 5)
    assert got.properties == {"keep": "x", "a": "1", "b": "2"}
    assert got.tags == {"t1", "t2"}  # the second change removed "old", the first added "t1"


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [
        ({"name": "a"}, {"name": "b"}, "name"),
        ({"properties": {"p": "1"}}, {"properties": {"p": "2"}}, "p"),
        ({"status": ImageStatus.ACTIVE}, {"name": "x"}, "status"),  # guarded: rules read it
        ({"visibility": Visibility.PRIVATE}, {"tags": {"t"}}, "visibility"),
    ],
)
async def test_overlapping_changes_are_stale_and_name_the_field(
        repo: SqlImageRepository, first: dict[str, object], second: dict[str, object],
        field: str) -> None:
    image = await repo.add(new_image(disk_format="raw", container_format="bare"))
    await save(repo, image, changed(image, **first))
    with pytest.raises(StaleImage) as caught:
        await save(repo, image, changed(image, **second))
    assert field in caught.value.fields and field in caught.value.message
    assert (await repo.get(image.id)).version == 2


async def test_removing_a_tag_someone_else_removed_is_stale(repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(tags={"t", "u"}))
    await save(repo, image, changed(image, tags={"u"}))
    with pytest.raises(StaleImage) as caught:
        await save(repo, image, changed(image, tags=set()))
    assert caught.value.fields == ("tags",)
    assert (await repo.get(image.id)).tags == {"u"}


async def test_quotas_count_the_merged_result(repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(properties={"a": "1"}))
    quotas = Quotas(properties=2, tags=1)
    await repo.update(diff(image, changed(image, properties={"a": "1", "b": "2"},
                                          tags={"x"}), quotas=quotas))
    with pytest.raises(TooLarge):  # within the quota as read, over it merged
        await repo.update(diff(image, changed(image, properties={"a": "1", "c": "3"}),
                               quotas=quotas))
    with pytest.raises(TooLarge):
        await repo.update(diff(image, changed(image, tags={"y"}), quotas=quotas))
    got = await repo.get(image.id)
    assert got.properties == {"a": "1", "b": "2"} and got.tags == {"x"}


async def test_update_records_deletion_jobs_in_the_same_transaction(
        engine: Engine, repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(status=ImageStatus.ACTIVE,
                                     locations=[Location("file", "k1")]))
    gone = deepcopy(image)
    change = diff(image, gone, gone.delete())
    await repo.update(change)
    jobs = SqlDeletionJobs(engine, clock=after_the_lease)
    try:
        claimed = await jobs.claim_due(10)
        assert [(j.id, j.location, j.image_id) for j in claimed] == [
            (change.discard[0].id, Location("file", "k1"), image.id)]
    finally:
        jobs.close()


async def test_a_refused_update_records_no_job(engine: Engine,
                                               repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(status=ImageStatus.ACTIVE))
    await save(repo, image, changed(image, name="other"))
    with pytest.raises(StaleImage):
        await repo.update(diff(image, changed(image, name="mine"), [Location("file", "x")]))
    jobs = SqlDeletionJobs(engine, clock=after_the_lease)
    try:
        assert await jobs.claim_due(10) == []
    finally:
        jobs.close()


def after_the_lease() -> datetime:
    """A clock past the lease the repository gives new jobs (60 s by default)."""
    return datetime.now(UTC) + timedelta(seconds=120)


def _race(engine: Engine, writers: int, change: Callable[[Image, int], Image]) -> list[str]:
    """`writers` real sessions update one image from the same read at once."""
    repo = SqlImageRepository(engine, threads=writers)
    image = anyio.run(repo.add, new_image())
    results: list[str] = []
    barrier = threading.Barrier(writers)

    def racer(n: int) -> None:
        mine = anyio.run(repo.get, image.id)
        update = diff(mine, change(mine, n))
        barrier.wait()
        try:
            anyio.run(repo.update, update)
            results.append("won")
        except StaleImage:
            results.append("lost")

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results)


def test_racing_writers_of_one_field_one_winner(engine: Engine) -> None:
    assert _race(engine, 8, lambda img, n: changed(img, name=f"racer-{n}")) == (
        ["lost"] * 7 + ["won"])


def test_racing_writers_of_disjoint_fields_all_win(engine: Engine) -> None:
    def change(img: Image, n: int) -> Image:
        return changed(img, properties={f"p{n}": str(n)}, tags={f"t{n}"})

    assert _race(engine, 8, change) == ["won"] * 8


async def test_sessions_open_and_close_with_image_changes(repo: SqlImageRepository,
                                                          engine: Engine) -> None:
    sessions = SqlUploadSessions(engine)
    image = new_image(disk_format="raw", container_format="bare")
    await repo.add(image)
    session = UploadSession.open(image.id, "fast", Purpose.UPLOAD, T0)
    claimed = deepcopy(image)
    claimed.begin_upload(session.id)
    saved = await repo.update(diff(image, claimed, opened=[session]))
    assert saved.upload_id == session.id
    assert await sessions.of_image(image.id) == [session]
    assert session.location == Location("fast", f"{image.id}.{session.id}")
    assert await sessions.touch(session.id, T0 + timedelta(seconds=30)) is True
    assert await sessions.touch("other", T0) is False
    assert [s.id for s in await sessions.stale(T0 + timedelta(seconds=31))] == [session.id]
    assert await sessions.stale(T0 + timedelta(seconds=30)) == []
    done = deepcopy(saved)
    done.fail_upload(session.id)
    saved = await repo.update(diff(saved, done, closed=[session.id]))
    assert saved.upload_id is None and await sessions.of_image(image.id) == []
    assert await sessions.touch(session.id, T0) is False
    sessions.close()


async def _ids(repo: SqlImageRepository, ctx: RequestContext = ADMIN,
               visibility: str | None = None, member_status: str = "accepted",
               **query: object) -> list[str]:
    access = listed(ctx, visibility, member_status)
    return [i.id for i in await repo.find(ListQuery(access=access, **query))]  # type: ignore[arg-type]


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
    assert set(await _ids(repo, me, "all")) == {mine.id, public.id, community.id}
    assert await _ids(repo, me, "community") == [community.id]
    assert await _ids(repo, me, "private") == [mine.id]
    assert len(await _ids(repo)) == 4  # admins see everything


PROJECTS = ("p1", "p2", "p3")
CALLERS = [RequestContext(p, frozenset({"member", "reader"})) for p in PROJECTS] + [
    RequestContext("p1", frozenset({"admin"})), RequestContext(None, frozenset({"reader"}))]
LISTINGS = [(v, s) for v in (None, "all", "public", "private", "shared", "community")
            for s in ("accepted", "pending", "rejected", "all")]


async def test_sql_and_python_access_rules_agree(engine: Engine,
                                                 repo: SqlImageRepository) -> None:
    """The listing SQL and the Python rule are one definition: for random images and
    memberships, every caller and every listing, both admit exactly the same images, and a
    listing never holds an image that showing it by id would hide."""
    rng = random.Random(6)
    members = SqlMemberRepository(engine)
    memberships: dict[str, dict[str, MemberStatus]] = {}
    stored: list[Image] = []
    for n in range(40):
        image = await repo.add(new_image(n, owner=rng.choice(PROJECTS),
                                         visibility=rng.choice(list(Visibility))))
        memberships[image.id] = {}
        for project in PROJECTS:
            if rng.random() < 0.4:
                await members.add(image.id, project)
                status = rng.choice(list(MemberStatus))
                await members.set_status(image.id, project, status)
                memberships[image.id][project] = status
        stored.append(image)
    try:
        for ctx in CALLERS:
            shown = {i.id for i in stored if holds(readable(ctx), i, memberships[i.id])}
            for visibility, status in LISTINGS:
                term = listed(ctx, visibility, status)
                expected = {i.id for i in stored if holds(term, i, memberships[i.id])}
                got = set(await _ids(repo, ctx, visibility, status, limit=100))
                assert got == expected, (ctx, visibility, status)
                assert got <= shown, (ctx, visibility, status)
    finally:
        members.close()


async def test_members_are_kept_per_image_and_project(engine: Engine,
                                                      repo: SqlImageRepository) -> None:
    image = await repo.add(new_image(visibility=Visibility.SHARED))
    members = SqlMemberRepository(engine)
    try:
        first = await members.add(image.id, "p1")
        assert first.status == MemberStatus.PENDING
        with pytest.raises(Conflict):
            await members.add(image.id, "p1")
        await members.add(image.id, "P1")  # another project: ids compare exactly
        with pytest.raises(TooLarge):
            await members.add(image.id, "p2", quota=2)
        assert {m.member_id for m in await members.of_image(image.id)} == {"P1", "p1"}
        accepted = await members.set_status(image.id, "p1", MemberStatus.ACCEPTED)
        assert (await members.get(image.id, "p1")) == accepted
        await members.remove(image.id, "p1")
        assert await members.find(image.id, "p1") is None
        with pytest.raises(NotFound):
            await members.remove(image.id, "p1")
        with pytest.raises(NotFound):
            await members.set_status(image.id, "p1", MemberStatus.REJECTED)
    finally:
        members.close()


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
            page = await repo.find(ListQuery(sort=sort, limit=2, marker=marker))
            seen += page
            if len(page) < 2:
                break
            marker = page[-1].id
        assert len(seen) == len(names) and len({i.id for i in seen}) == len(names)
        keys = [(i.name is not None, i.name or "") for i in seen]
        assert keys == sorted(keys, reverse=direction == "desc")


async def test_unknown_marker_is_invalid(repo: SqlImageRepository) -> None:
    with pytest.raises(Invalid):
        await repo.find(ListQuery(marker=str(uuid.uuid4())))


async def test_a_failed_change_opens_no_session(repo: SqlImageRepository,
                                                engine: Engine) -> None:
    sessions = SqlUploadSessions(engine)
    image = new_image(disk_format="raw", container_format="bare")
    await repo.add(image)
    session = UploadSession.open(image.id, "fast", Purpose.UPLOAD, T0)
    claimed = deepcopy(image)
    claimed.begin_upload(session.id)
    change = diff(image, claimed, opened=[session])
    renamed = deepcopy(image)
    renamed.status = ImageStatus.ACTIVE  # a rival moved the status first
    await repo.update(diff(image, renamed))
    with pytest.raises(StaleImage):
        await repo.update(change)
    assert await sessions.of_image(image.id) == []
    sessions.close()
