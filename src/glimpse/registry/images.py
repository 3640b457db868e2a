"""The SQL image repository: rows ↔ `Image` entities, compare-and-swap saves, list queries."""

from __future__ import annotations

import enum
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from glimpse.domain.changes import ImageChange
from glimpse.domain.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    StaleImage,
    TooLarge,
)
from glimpse.domain.images import Image, ImageStatus, Location, LocationStatus, Visibility
from glimpse.domain.query import Condition, ListQuery, SortKey
from glimpse.domain.quotas import ProjectLimits
from glimpse.registry.access import access_clause
from glimpse.registry.deletions import insert_deletions
from glimpse.registry.engine import SqlComponent
from glimpse.registry.tables import image_locations, image_properties, image_tags, images
from glimpse.registry.tasks import insert_tasks
from glimpse.registry.uploads import close_sessions, open_sessions
from glimpse.registry.usage import (
    check_change,
    check_new_image,
    locked_project,
    project_transaction,
)

_COLUMNS = (
    "name", "status", "visibility", "protected", "os_hidden", "disk_format", "container_format",
    "min_disk", "min_ram", "size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value",
    "owner", "created_at", "updated_at", "upload_id",
)
_HIDDEN_STATUSES = (ImageStatus.DELETED.value, ImageStatus.KILLED.value)
_STATUSES = {s.value: s for s in ImageStatus}
_VISIBILITIES = {v.value: v for v in Visibility}

#: The image columns `_load` reads, in this order.
_ROW = [images.c[name] for name in (
    "id", "name", "status", "visibility", "protected", "os_hidden", "disk_format",
    "container_format", "min_disk", "min_ram", "size", "virtual_size", "checksum",
    "os_hash_algo", "os_hash_value", "owner", "created_at", "updated_at", "upload_id",
    "version",
)]

#: Properties, tags and locations of a set of images, in one round trip.
_CHILDREN = union_all(
    select(image_properties.c.image_id, literal("p").label("kind"),
           image_properties.c.name.label("a"), image_properties.c.value.label("b"),
           literal(0).label("n"), literal("").label("c"), literal("").label("d"))
    .where(image_properties.c.image_id.in_(bindparam("ids", expanding=True))),
    select(image_tags.c.image_id, literal("t"), image_tags.c.value, literal(""), literal(0),
           literal(""), literal(""))
    .where(image_tags.c.image_id.in_(bindparam("ids", expanding=True))),
    select(image_locations.c.image_id, literal("l"), image_locations.c.store,
           image_locations.c.key, image_locations.c.position, image_locations.c.status,
           image_locations.c.meta)
    .where(image_locations.c.image_id.in_(bindparam("ids", expanding=True))),
)


def _naive(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _column_value(name: str, value: object) -> Any:
    """An entity attribute as its column stores it."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return _naive(value)
    return value


def _from_column(name: str, stored: Any) -> Any:
    """A stored column value comparable with `_column_value` of an attribute."""
    if name in ("protected", "os_hidden") and stored is not None:
        return bool(stored)
    return stored


def _matches(col: Column[Any], value: Any) -> ColumnElement[bool]:
    return col.is_(None) if value is None else col == value


def _location(store: str, key: str, status: str, meta: str) -> Location:
    return Location(store, key, LocationStatus(status), json.loads(meta) if meta else {})


def _location_rows(image_id: str, locations: Iterable[Location]) -> list[dict[str, Any]]:
    return [
        {"image_id": image_id, "position": i, "store": loc.store, "key": loc.key,
         "status": loc.status.value, "meta": json.dumps(dict(loc.metadata), sort_keys=True)}
        for i, loc in enumerate(locations)
    ]


def _stale(image_id: str, fields: tuple[str, ...]) -> StaleImage:
    named = ", ".join(fields) or "the image"
    return StaleImage(f"Image {image_id}: {named} changed concurrently", fields)


def _row_values(image: Image) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(image, name) for name in _COLUMNS}
    values["status"] = image.status.value
    values["visibility"] = image.visibility.value
    for name in ("created_at", "updated_at"):
        values[name] = _naive(values[name])
    return values


class SqlImageRepository(SqlComponent):
    """`ImageRepository` over SQLAlchemy Core. Blocking calls run in at most `threads` worker
    threads at a time (see `engine.concurrency`)."""

    def __init__(self, engine: Engine, threads: int = 1,
                 clock: Callable[[], datetime] | None = None,
                 deletion_lease: float = 60.0) -> None:
        super().__init__(engine, threads, "registry", clock)
        self._deletion_lease = timedelta(seconds=deletion_lease)

    def close(self) -> None:
        super().close()
        self._engine.dispose()

    # -- port ---------------------------------------------------------------------------------

    async def add(self, image: Image, limits: ProjectLimits | None = None) -> Image:
        return await self._run(self._add, image, limits or ProjectLimits())

    async def get(self, image_id: str) -> Image:
        return await self._run(self._get, image_id)

    async def update(self, change: ImageChange) -> Image:
        return await self._run(self._update, change)

    async def find(self, query: ListQuery) -> list[Image]:
        return await self._run(self._find, query)


    # -- implementation -----------------------------------------------------------------------

    def _add(self, image: Image, limits: ProjectLimits) -> Image:
        image.version = 1
        counted = image.owner if limits.image_count_total is not None else None
        try:
            with project_transaction(self._engine, self._write_lock, counted) as conn:
                conn.execute(insert(images).values(id=image.id, version=1, **_row_values(image)))
                self._write_children(conn, image)
                check_new_image(conn, counted, limits)
        except IntegrityError as exc:
            raise Conflict(f"Image with identifier {image.id} already exists!") from exc
        return image

    def _get(self, image_id: str) -> Image:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(*_ROW).where(
                    images.c.id == image_id, images.c.status.not_in(_HIDDEN_STATUSES)
                )
            ).one_or_none()
            if row is None:
                raise NotFound(f"No image found with ID {image_id}")
            return self._load(conn, [row])[0]

    def _update(self, change: ImageChange) -> Image:
        now = self._clock().replace(microsecond=0)  # timestamps are whole seconds
        values: dict[str, Any] = {name: _column_value(name, value)
                                  for name, value in change.values.items()}
        values["updated_at"] = _naive(now)
        values["version"] = images.c.version + 1
        if change.values.get("status") == ImageStatus.DELETED:
            values["deleted_at"] = _naive(now)
        guards = [_matches(images.c[name], _column_value(name, value))
                  for name, value in change.expected.items()]
        # A change that grows a limited quota of its project holds the project's lock first.
        project = locked_project(change)
        with project_transaction(self._engine, self._write_lock, project) as conn:
            # Updating the image row first takes its lock (PostgreSQL, MariaDB; SQLite holds the
            # database's), so the child rows below cannot change under this transaction.
            result = conn.execute(
                update(images).where(images.c.id == change.image_id, *guards).values(**values)
            )
            if result.rowcount != 1:
                raise self._why_stale(conn, change)
            if change.properties:
                self._write_properties(conn, change)
            if change.added_tags or change.removed_tags:
                self._write_tags(conn, change)
            if change.locations is not None:
                self._write_locations(conn, change)
            self._check_quotas(conn, change)
            insert_deletions(conn, change.discard, now, self._deletion_lease)
            insert_tasks(conn, change.tasks, now, self._deletion_lease)
            open_sessions(conn, change.opened)
            close_sessions(conn, change.closed)
            row = conn.execute(select(*_ROW).where(images.c.id == change.image_id)).one()
            return self._load(conn, [row])[0]

    @staticmethod
    def _why_stale(conn: Connection, change: ImageChange) -> DomainError:
        names = list(change.expected)
        row = conn.execute(
            select(*(images.c[n] for n in names)).where(images.c.id == change.image_id)
        ).one_or_none()
        if row is None:
            return NotFound(f"No image found with ID {change.image_id}")
        changed = tuple(
            name for name, stored in zip(names, row, strict=True)
            if _from_column(name, stored) != _column_value(name, change.expected[name])
        )
        return _stale(change.image_id, changed)

    @staticmethod
    def _write_properties(conn: Connection, change: ImageChange) -> None:
        table = image_properties
        mine = table.c.image_id == change.image_id
        stored = dict(conn.execute(
            select(table.c.name, table.c.value).where(mine, table.c.name.in_(change.properties))
        ).all())
        changed = tuple(name for name, (read, _) in change.properties.items()
                        if stored.get(name) != read)
        if changed:
            raise _stale(change.image_id, changed)
        gone = [name for name, (_, new) in change.properties.items() if new is None]
        if gone:
            conn.execute(delete(table).where(mine, table.c.name.in_(gone)))
        for name, (read, new) in change.properties.items():
            if new is not None and read is not None:
                conn.execute(update(table).where(mine, table.c.name == name).values(value=new))
        added = [{"image_id": change.image_id, "name": name, "value": new}
                 for name, (read, new) in change.properties.items()
                 if new is not None and read is None]
        if added:
            conn.execute(insert(table), added)

    @staticmethod
    def _write_tags(conn: Connection, change: ImageChange) -> None:
        mine = image_tags.c.image_id == change.image_id
        if change.removed_tags:
            removed = conn.execute(
                delete(image_tags).where(mine, image_tags.c.value.in_(change.removed_tags))
            ).rowcount
            if removed != len(change.removed_tags):
                raise _stale(change.image_id, ("tags",))
        if change.added_tags:
            present = set(conn.execute(
                select(image_tags.c.value).where(mine, image_tags.c.value.in_(change.added_tags))
            ).scalars())
            new = [{"image_id": change.image_id, "value": tag}
                   for tag in sorted(change.added_tags - present)]
            if new:
                conn.execute(insert(image_tags), new)

    @staticmethod
    def _write_locations(conn: Connection, change: ImageChange) -> None:
        assert change.locations is not None
        read, new = change.locations
        mine = image_locations.c.image_id == change.image_id
        stored = tuple(
            _location(*row) for row in conn.execute(
                select(image_locations.c.store, image_locations.c.key, image_locations.c.status,
                       image_locations.c.meta)
                .where(mine).order_by(image_locations.c.position)
            ).all()
        )
        if stored != read:
            raise _stale(change.image_id, ("locations",))
        conn.execute(delete(image_locations).where(mine))
        if new:
            conn.execute(insert(image_locations), _location_rows(change.image_id, new))

    @staticmethod
    def _check_quotas(conn: Connection, change: ImageChange) -> None:
        """Count the merged result: two writers each within a quota may not pass it together."""
        grows = any(read is None and new is not None for read, new in change.properties.values())
        limit = change.quotas.properties
        if grows and limit is not None:
            count = conn.execute(select(func.count()).where(
                image_properties.c.image_id == change.image_id)).scalar_one()
            if count > limit:
                raise TooLarge(f"Maximum number of properties exceeded: {limit}")
        limit = change.quotas.tags
        if change.added_tags and limit is not None:
            count = conn.execute(select(func.count()).where(
                image_tags.c.image_id == change.image_id)).scalar_one()
            if count > limit:
                raise TooLarge(f"Maximum number of tags exceeded: {limit}")
        check_change(conn, change)

    @staticmethod
    def _write_children(conn: Connection, image: Image) -> None:
        if image.properties:
            conn.execute(
                insert(image_properties),
                [
                    {"image_id": image.id, "name": k, "value": v}
                    for k, v in image.properties.items()
                ],
            )
        if image.tags:
            conn.execute(
                insert(image_tags), [{"image_id": image.id, "value": t} for t in image.tags]
            )
        if image.locations:
            conn.execute(insert(image_locations), _location_rows(image.id, image.locations))

    @staticmethod
    def _load(conn: Connection, rows: Sequence[Any]) -> list[Image]:
        """Entities from rows of `_ROW` columns, with their children in one more query."""
        if not rows:
            return []
        props: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, set[str]] = defaultdict(set)
        placed: dict[str, list[tuple[int, Location]]] = defaultdict(list)
        for image_id, kind, a, b, n, c, d in conn.execute(
            _CHILDREN, {"ids": [row[0] for row in rows]}
        ).all():
            if kind == "p":
                props[image_id][a] = b
            elif kind == "t":
                tags[image_id].add(a)
            else:
                placed[image_id].append((n, _location(a, b, c, d)))
        loaded = []
        for (image_id, name, status, visibility, protected, os_hidden, disk_format,
             container_format, min_disk, min_ram, size, virtual_size, checksum, os_hash_algo,
             os_hash_value, owner, created_at, updated_at, upload_id,
             version) in rows:
            loaded.append(Image(
                id=image_id,
                owner=owner,
                created_at=created_at.replace(tzinfo=UTC),
                updated_at=updated_at.replace(tzinfo=UTC),
                name=name,
                status=_STATUSES[status],
                visibility=_VISIBILITIES[visibility],
                protected=bool(protected),
                os_hidden=bool(os_hidden),
                disk_format=disk_format,
                container_format=container_format,
                min_disk=min_disk,
                min_ram=min_ram,
                size=size,
                virtual_size=virtual_size,
                checksum=checksum,
                os_hash_algo=os_hash_algo,
                os_hash_value=os_hash_value,
                tags=tags[image_id],
                properties=props[image_id],
                locations=[loc for _, loc in sorted(placed[image_id])] if image_id in placed
                else [],
                upload_id=upload_id,
                version=version,
            ))
        return loaded

    # -- listing ------------------------------------------------------------------------------

    def _find(self, query: ListQuery) -> list[Image]:
        where: list[ColumnElement[bool]] = [
            images.c.status.not_in(_HIDDEN_STATUSES),
            access_clause(query.access),
        ]
        where.extend(_condition_clause(c) for c in query.conditions)
        where.extend(
            exists().where(image_tags.c.image_id == images.c.id, image_tags.c.value == tag)
            for tag in query.tags
        )
        order = []
        for key in query.sort:
            col = images.c[key.field]
            if col.nullable:  # NULLs sort as the smallest value on every database
                order.append(col.is_(None).desc() if key.direction == "asc"
                             else col.is_(None).asc())
            order.append(col.asc() if key.direction == "asc" else col.desc())
        with self._engine.connect() as conn:
            if query.marker is not None:
                marker = conn.execute(
                    select(*_ROW).where(images.c.id == query.marker, *where)
                ).one_or_none()
                if marker is None:
                    raise Invalid(f"Invalid marker. Image {query.marker} could not be found.")
                where.append(_after_marker(query.sort, marker))
            rows = conn.execute(
                select(*_ROW).where(*where).order_by(*order).limit(query.limit)
            ).all()
            return self._load(conn, rows)


def _condition_clause(cond: Condition) -> ColumnElement[bool]:
    if cond.prop:
        return exists().where(
            image_properties.c.image_id == images.c.id,
            image_properties.c.name == cond.field,
            image_properties.c.value == cond.value,
        )
    col = images.c[cond.field]
    value: Any = _naive(cond.value) if isinstance(cond.value, datetime) else cond.value
    if cond.op == "in":
        assert isinstance(value, Iterable)
        return col.in_(list(value))
    ops: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
        "eq": lambda c, v: c.is_(None) if v is None else c == v,
        "neq": lambda c, v: c.is_not(None) if v is None else or_(c != v, c.is_(None)),
        "gt": lambda c, v: c > v,
        "gte": lambda c, v: c >= v,
        "lt": lambda c, v: c < v,
        "lte": lambda c, v: c <= v,
    }
    return ops[cond.op](col, value)


def _after_marker(sort: Sequence[SortKey], marker: Any) -> ColumnElement[bool]:
    """Rows strictly after `marker` in the order `sort` gives, NULLs counted as smallest."""
    alternatives: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for key in sort:
        col = images.c[key.field]
        value = getattr(marker, key.field)
        after: ColumnElement[bool]
        if value is None:
            after = col.is_not(None) if key.direction == "asc" else false()
            same = col.is_(None)
        else:
            after = col > value if key.direction == "asc" else or_(col < value, col.is_(None))
            same = col == value
        alternatives.append(and_(*equal_so_far, after))
        equal_so_far.append(same)
    return or_(*alternatives)
