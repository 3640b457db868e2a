"""What each project holds, counted in SQL, and the exact quota checks of image saves.

`usage_of` counts one project's images in one query (the `owner` index). A change that grows a
counted amount (an upload finishing, one beginning, an image created) is checked inside its own
transaction, after its writes, so the count includes it; and that transaction first takes a lock
of the owner's project, so two changes of one project that each fit cannot pass the limit
together: the second one counts after the first has committed.

The project lock, per database:

- SQLite: none needed; write transactions already run one at a time (`BEGIN IMMEDIATE`, after
  the `flock` of `engine.write_lock`).
- PostgreSQL: `pg_advisory_xact_lock` on a 64-bit hash of the project, released at commit.
- MariaDB/MySQL: the named lock `GET_LOCK` (held by the connection, so taken before the
  transaction begins and released right after it ends).

A transaction takes at most this one lock, as its first step, before any row lock: no deadlock.
Changes that grow nothing take no lock, and unlimited quotas (the default) take none either.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, case, func, select, text

from glimpse.domain.changes import ImageChange
from glimpse.domain.errors import Conflict
from glimpse.domain.images import ImageStatus
from glimpse.domain.quotas import GONE, STAGING, STORED, UPLOADING, ProjectLimits, Usage
from glimpse.registry.engine import WRITE, SqlComponent, write_transaction
from glimpse.registry.tables import images

log = logging.getLogger(__name__)

#: Seconds a MariaDB transaction waits for its project's lock before answering 409.
LOCK_TIMEOUT = 30


def _values(statuses: frozenset[ImageStatus]) -> list[str]:
    return sorted(s.value for s in statuses)


def _sum_where(statuses: frozenset[ImageStatus], amount: Any) -> Any:
    return func.coalesce(func.sum(case((images.c.status.in_(_values(statuses)), amount),
                                       else_=0)), 0)


#: One row: image_size_total, image_stage_total, image_count_total, image_count_uploading.
_USAGE = select(
    _sum_where(STORED, func.coalesce(images.c.size, 0)),
    _sum_where(STAGING, func.coalesce(images.c.size, 0)),
    func.count(),
    _sum_where(UPLOADING, 1),
)


def usage_of(conn: Connection, project: str) -> Usage:
    """What `project` holds, as this connection sees it."""
    size, staged, count, uploading = conn.execute(
        _USAGE.where(images.c.owner == project, images.c.status.not_in(_values(GONE)))
    ).one()
    # SUM is a DECIMAL on PostgreSQL and MariaDB.
    return Usage(int(size), int(staged), int(count), int(uploading))


# -- what a change grows ---------------------------------------------------------------------------


def growth(change: ImageChange) -> dict[str, int]:
    """The quotas `change` may push up, each with the amount it adds as far as the change
    knows it (a size it writes; 1 for an image starting to upload)."""
    before = change.expected.get("status")
    after = change.values.get("status", before)
    written = "size" in change.values
    size = change.values.get("size")
    added = size if isinstance(size, int) else 0
    grown: dict[str, int] = {}
    if after in STORED and (before not in STORED or written):
        grown["image_size_total"] = added
    if after in STAGING and (before not in STAGING or written):
        grown["image_stage_total"] = added
    if after in UPLOADING and before not in UPLOADING:
        grown["image_count_uploading"] = 1
    return grown


def owner_of(change: ImageChange) -> str | None:
    owner = change.values.get("owner", change.expected.get("owner"))
    return owner if isinstance(owner, str) else None


def locked_project(change: ImageChange) -> str | None:
    """The project whose lock `change` must hold: its owner, if it grows a limited quota."""
    limits = change.quotas.project
    if limits.unlimited:
        return None
    if any(getattr(limits, name) is not None for name in growth(change)):
        return owner_of(change)
    return None


def check_change(conn: Connection, change: ImageChange) -> None:
    """After `change`'s writes (under its project's lock): `TooLarge` naming the first quota
    of the owner's project it takes past its limit."""
    project = locked_project(change)
    if project is None:
        return
    usage = usage_of(conn, project)
    for name, delta in growth(change).items():
        change.quotas.project.check(name, project, getattr(usage, name), delta)


def check_new_image(conn: Connection, project: str | None, limits: ProjectLimits) -> None:
    """After inserting an image of `project` (under its lock): `TooLarge` past
    `image_count_total`."""
    if project is not None and limits.image_count_total is not None:
        limits.check("image_count_total", project, usage_of(conn, project).image_count_total, 1)


# -- the project lock ------------------------------------------------------------------------------


def _digest(project: str) -> bytes:
    return hashlib.blake2b(project.encode(), digest_size=20, person=b"glimpse-quota").digest()


@contextlib.contextmanager
def project_transaction(engine: Engine, lock: contextlib.AbstractContextManager[None],
                        project: str | None) -> Iterator[Connection]:
    """A write transaction (as `engine.write_transaction`) that holds the lock of `project`
    from its start; with `project` None, a plain write transaction."""
    backend = engine.url.get_backend_name()
    if project is None or backend not in ("mysql", "mariadb"):
        with write_transaction(engine, lock) as conn:
            if project is not None and backend == "postgresql":
                key = int.from_bytes(_digest(project)[:8], "big", signed=True)
                conn.execute(select(func.pg_advisory_xact_lock(key)))
            yield conn
        return
    name = "glimpse-quota-" + _digest(project).hex()  # at most 64 characters
    with lock, engine.connect().execution_options(**WRITE) as conn:
        got = conn.execute(text("SELECT GET_LOCK(:name, :timeout)"),
                           {"name": name, "timeout": LOCK_TIMEOUT}).scalar()
        conn.commit()
        if got != 1:
            raise Conflict(f"Project {project} is busy with other changes counted against its "
                           "quotas; try again.")
        try:
            with conn.begin():
                yield conn
        finally:
            try:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                conn.commit()
            except Exception:
                # A connection that may still hold the lock must not go back to the pool;
                # closing it releases the lock.
                log.warning("could not release quota lock of project %s; dropping the "
                            "connection", project, exc_info=True)
                conn.invalidate()


# -- the port ----------------------------------------------------------------------------------


class SqlUsage(SqlComponent):
    """`UsageRepository` over SQLAlchemy Core, on its own worker thread."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, 1, "usage")

    async def usage(self, project: str) -> Usage:
        return await self._run(self._usage, project)

    def _usage(self, project: str) -> Usage:
        with self._engine.connect() as conn:
            return usage_of(conn, project)
