"""Background tasks in SQL (see `domain/tasks.py`). `due_at` is the lease of the server running
a task: claiming one moves it a lease ahead with a compare-and-swap, so one server runs it at a
time, and a server that dies while running it only delays it. Finished tasks have none."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from glimpse.domain.errors import NotFound
from glimpse.domain.tasks import FINISHED, Task, TaskStatus
from glimpse.registry.engine import SqlComponent
from glimpse.registry.tables import tasks

_COLUMNS = (tasks.c.id, tasks.c.type, tasks.c.status, tasks.c.owner, tasks.c.image_id,
            tasks.c.input, tasks.c.result, tasks.c.message, tasks.c.request_id,
            tasks.c.user_id, tasks.c.created_at, tasks.c.updated_at, tasks.c.expires_at,
            tasks.c.attempts, tasks.c.due_at)
_OPEN = [s.value for s in TaskStatus if s not in FINISHED]


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _lease_end(now: datetime, lease: timedelta) -> datetime:
    """When a lease taken at `now` ends, naive UTC, rounded up to a whole second: MariaDB keeps
    DATETIME to the second (truncating), which would end a short lease up to a second early,
    before its next heartbeat, and let a sweep claim a task that is still running."""
    end = now + lease if now.tzinfo is None else _naive(now + lease)
    return end if end.microsecond == 0 else end.replace(microsecond=0) + timedelta(seconds=1)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _task(row: Any) -> Task:
    (task_id, type_, status, owner, image_id, input_, result, message, request_id, user_id,
     created_at, updated_at, expires_at, attempts, _due_at) = row
    return Task(task_id, type_, owner, created_at.replace(tzinfo=UTC),
                updated_at.replace(tzinfo=UTC), image_id=image_id, input=json.loads(input_),
                status=TaskStatus(status),
                result=None if result is None else json.loads(result), message=message,
                request_id=request_id, user_id=user_id, expires_at=_aware(expires_at),
                attempts=attempts)


def insert_tasks(conn: Connection, new: Iterable[Task], now: datetime, lease: timedelta) -> None:
    """Record `new` tasks in the caller's transaction, leased to the caller for `lease`."""
    rows = [
        {"id": t.id, "type": t.type, "status": t.status.value, "owner": t.owner,
         "image_id": t.image_id, "input": json.dumps(t.input), "message": t.message,
         "result": None if t.result is None else json.dumps(t.result),
         "request_id": t.request_id, "user_id": t.user_id, "created_at": _naive(now),
         "updated_at": _naive(now), "attempts": t.attempts,
         "due_at": None if t.finished else _lease_end(now, lease)}
        for t in new
    ]
    if rows:
        conn.execute(insert(tasks), rows)


class SqlTaskRepository(SqlComponent):
    """`TaskRepository` over SQLAlchemy Core, on its own worker thread. A claimed task is left
    to its server for `lease` seconds (renewed by its heartbeats) before another may take it.
    Finished tasks expire (`expires_at`) after `keep` seconds, as Glance's `task_time_to_live`."""

    def __init__(self, engine: Engine, lease: float = 60.0, keep: float = 48 * 3600.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(engine, 1, "tasks", clock)
        self.lease = timedelta(seconds=lease)
        self.keep = timedelta(seconds=keep)

    async def get(self, task_id: str) -> Task:
        return await self._run(self._get, task_id)

    async def of_image(self, image_id: str) -> list[Task]:
        return await self._run(self._of_image, image_id)

    async def find(self, owner: str | None, limit: int, marker: str | None) -> list[Task]:
        return await self._run(self._find, owner, limit, marker)

    async def claim_due(self, limit: int) -> list[Task]:
        return await self._run(self._claim_due, limit)

    async def heartbeat(self, task: Task) -> bool:
        return await self._run(self._heartbeat, task)

    async def finish(self, task: Task, status: TaskStatus, result: dict[str, object] | None,
                     message: str) -> None:
        await self._run(self._finish, task, status, result, message)

    def _get(self, task_id: str) -> Task:
        with self._engine.connect() as conn:
            row = conn.execute(select(*_COLUMNS).where(tasks.c.id == task_id)).one_or_none()
        if row is None:
            raise NotFound(f"Task with identifier {task_id} not found")
        return _task(row)

    def _of_image(self, image_id: str) -> list[Task]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).where(tasks.c.image_id == image_id)
                                .order_by(tasks.c.created_at, tasks.c.id)).all()
        return [_task(row) for row in rows]

    def _find(self, owner: str | None, limit: int, marker: str | None) -> list[Task]:
        query = select(*_COLUMNS)
        if owner is not None:
            query = query.where(tasks.c.owner == owner)
        with self._engine.connect() as conn:
            if marker is not None:
                after = conn.execute(select(tasks.c.created_at, tasks.c.id)
                                     .where(tasks.c.id == marker)).one_or_none()
                if after is None:
                    raise NotFound(f"Task with identifier {marker} not found")
                query = query.where((tasks.c.created_at < after[0])
                                    | ((tasks.c.created_at == after[0]) & (tasks.c.id < after[1])))
            rows = conn.execute(query.order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
                                .limit(limit)).all()
        return [_task(row) for row in rows]

    def _claim_due(self, limit: int) -> list[Task]:
        now = _naive(self._clock())
        with self._engine.connect() as conn:
            due = conn.execute(
                select(*_COLUMNS).where(tasks.c.status.in_(_OPEN), tasks.c.due_at <= now)
                .order_by(tasks.c.due_at).limit(limit)
            ).all()
        claimed = []
        for row in due:
            task = _task(row)
            with self._write() as conn:
                taken = conn.execute(
                    update(tasks).where(tasks.c.id == task.id, tasks.c.due_at == row.due_at)
                    .values(due_at=_lease_end(now, self.lease), attempts=task.attempts + 1,
                            status=TaskStatus.PROCESSING.value, updated_at=now)
                ).rowcount
            if taken == 1:
                task.attempts += 1
                task.status = TaskStatus.PROCESSING
                claimed.append(task)
        return claimed

    def _heartbeat(self, task: Task) -> bool:
        now = _naive(self._clock())
        with self._write() as conn:
            return bool(conn.execute(
                update(tasks).where(tasks.c.id == task.id, tasks.c.status.in_(_OPEN),
                                    tasks.c.attempts == task.attempts)
                .values(due_at=_lease_end(now, self.lease), status=TaskStatus.PROCESSING.value,
                        updated_at=now)
            ).rowcount)

    def _finish(self, task: Task, status: TaskStatus, result: dict[str, object] | None,
                message: str) -> None:
        now = self._clock()
        with self._write() as conn:
            conn.execute(
                update(tasks).where(tasks.c.id == task.id)
                .values(status=status.value, message=message[:2000], due_at=None,
                        result=None if result is None else json.dumps(result),
                        updated_at=_naive(now), expires_at=_naive(now + self.keep))
            )
