"""Upload sessions in SQL (see `domain/uploads.py`): one row per write of image data in flight.

Rows are inserted and deleted inside the image changes that open and settle them
(`open_sessions`, `close_sessions`); heartbeats touch only their own row, so a running upload
never contends with other changes of its image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, delete, insert, select, update

from glimpse.domain.images import Location
from glimpse.domain.uploads import Purpose, UploadSession
from glimpse.registry.engine import SqlComponent
from glimpse.registry.tables import uploads

_COLUMNS = (uploads.c.id, uploads.c.image_id, uploads.c.store, uploads.c.key,
            uploads.c.purpose, uploads.c.heartbeat_at)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _session(row: tuple[str, str, str, str, str, datetime]) -> UploadSession:
    session_id, image_id, store, key, purpose, heartbeat = row
    return UploadSession(session_id, image_id, Location(store, key), Purpose(purpose),
                         heartbeat.replace(tzinfo=UTC))


def open_sessions(conn: Connection, sessions: Iterable[UploadSession]) -> None:
    rows = [{"id": s.id, "image_id": s.image_id, "store": s.location.store,
             "key": s.location.key, "purpose": s.purpose.value,
             "heartbeat_at": _naive(s.heartbeat)} for s in sessions]
    if rows:
        conn.execute(insert(uploads), rows)


def close_sessions(conn: Connection, session_ids: Iterable[str]) -> None:
    ids = list(session_ids)
    if ids:
        conn.execute(delete(uploads).where(uploads.c.id.in_(ids)))


class SqlUploadSessions(SqlComponent):
    """`UploadSessions` over SQLAlchemy Core, on its own worker thread."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(engine, 1, "uploads", clock)

    async def touch(self, session_id: str, now: datetime) -> bool:
        return await self._run(self._touch, session_id, now)

    async def stale(self, before: datetime) -> list[UploadSession]:
        return await self._run(self._stale, before)

    async def end(self, session_id: str) -> None:
        await self._run(self._end, session_id)

    async def of_image(self, image_id: str) -> list[UploadSession]:
        return await self._run(self._of_image, image_id)

    def _touch(self, session_id: str, now: datetime) -> bool:
        with self._write() as conn:
            return bool(conn.execute(
                update(uploads).where(uploads.c.id == session_id)
                .values(heartbeat_at=_naive(now))
            ).rowcount)

    def _stale(self, before: datetime) -> list[UploadSession]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).where(uploads.c.heartbeat_at < _naive(before))
                                .order_by(uploads.c.heartbeat_at)).all()
        return [_session(tuple(row)) for row in rows]

    def _end(self, session_id: str) -> None:
        with self._write() as conn:
            close_sessions(conn, [session_id])

    def _of_image(self, image_id: str) -> list[UploadSession]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).where(uploads.c.image_id == image_id)).all()
        return [_session(tuple(row)) for row in rows]
