"""Deletion jobs in SQL: one row per piece of image data still to be removed from a store.

`due_at` is both the schedule and the lease: a job runs once it is due, and claiming it moves
`due_at` a lease ahead with a compare-and-swap, so one server runs it at a time and a server
that dies while running it only delays it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update

from glimpse.domain.deletions import Deletion
from glimpse.domain.images import Location
from glimpse.registry.engine import SqlComponent
from glimpse.registry.tables import deletions


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def insert_deletions(conn: Connection, jobs: Iterable[Deletion], now: datetime,
                     lease: timedelta) -> None:
    """Record `jobs` in the caller's transaction, leased to the caller for `lease`."""
    rows = [
        {"id": job.id, "store": job.location.store, "key": job.location.key,
         "image_id": job.image_id, "due_at": _naive(now + lease), "attempts": job.attempts,
         "created_at": _naive(now)}
        for job in jobs
    ]
    if rows:
        conn.execute(insert(deletions), rows)


class SqlDeletionJobs(SqlComponent):
    """`DeletionJobs` over SQLAlchemy Core, on its own worker thread. A claimed job is left to
    its claimer for `lease` seconds before another server may take it."""

    def __init__(self, engine: Engine, lease: float = 60.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(engine, 1, "deletions", clock)
        self.lease = timedelta(seconds=lease)

    async def record(self, jobs: list[Deletion]) -> None:
        await self._run(self._record, jobs)

    async def claim_due(self, limit: int) -> list[Deletion]:
        return await self._run(self._claim_due, limit)

    async def finish(self, job: Deletion) -> None:
        await self._run(self._finish, job)

    async def postpone(self, job: Deletion, delay: float, error: str) -> None:
        await self._run(self._postpone, job, delay, error)

    def _record(self, jobs: list[Deletion]) -> None:
        with self._write() as conn:
            insert_deletions(conn, jobs, self._clock(), self.lease)

    def _claim_due(self, limit: int) -> list[Deletion]:
        now = _naive(self._clock())
        with self._engine.connect() as conn:
            due = conn.execute(
                select(deletions.c.id, deletions.c.store, deletions.c.key,
                       deletions.c.image_id, deletions.c.attempts, deletions.c.due_at)
                .where(deletions.c.due_at <= now)
                .order_by(deletions.c.due_at)
                .limit(limit)
            ).all()
        claimed = []
        for job_id, store, key, image_id, attempts, due_at in due:
            with self._write() as conn:
                taken = conn.execute(
                    update(deletions)
                    .where(deletions.c.id == job_id, deletions.c.due_at == due_at)
                    .values(due_at=now + self.lease, attempts=attempts + 1)
                ).rowcount
            if taken == 1:
                claimed.append(Deletion(job_id, Location(store, key), image_id, attempts + 1))
        return claimed

    def _finish(self, job: Deletion) -> None:
        with self._write() as conn:
            conn.execute(delete(deletions).where(deletions.c.id == job.id))

    def _postpone(self, job: Deletion, delay: float, error: str) -> None:
        due = _naive(self._clock() + timedelta(seconds=delay))
        with self._write() as conn:
            conn.execute(
                update(deletions).where(deletions.c.id == job.id)
                .values(due_at=due, last_error=error[:2000])
            )
