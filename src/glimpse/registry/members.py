"""Image members in SQL: one row per (image, project)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from glimpse.domain.errors import Conflict, NotFound, TooLarge
from glimpse.domain.members import Member, MemberStatus
from glimpse.registry.engine import SqlComponent
from glimpse.registry.tables import image_members, images


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _member(row: Any) -> Member:
    image_id, member, status, created_at, updated_at = row
    return Member(image_id, member, MemberStatus(status), created_at.replace(tzinfo=UTC),
                  updated_at.replace(tzinfo=UTC))


_COLUMNS = (image_members.c.image_id, image_members.c.member, image_members.c.status,
            image_members.c.created_at, image_members.c.updated_at)


class SqlMemberRepository(SqlComponent):
    """`MemberRepository` over SQLAlchemy Core, on its own worker thread."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(engine, 1, "members", clock)

    async def add(self, image_id: str, member_id: str, quota: int | None = None) -> Member:
        return await self._run(self._add, image_id, member_id, quota)

    async def get(self, image_id: str, member_id: str) -> Member:
        return await self._run(self._get, image_id, member_id)

    async def find(self, image_id: str, member_id: str) -> Member | None:
        return await self._run(self._find, image_id, member_id)

    async def of_image(self, image_id: str) -> list[Member]:
        return await self._run(self._of_image, image_id)

    async def set_status(self, image_id: str, member_id: str, status: MemberStatus) -> Member:
        return await self._run(self._set_status, image_id, member_id, status)

    async def remove(self, image_id: str, member_id: str) -> None:
        await self._run(self._remove, image_id, member_id)

    def _add(self, image_id: str, member_id: str, quota: int | None) -> Member:
        now = _naive(self._clock().replace(microsecond=0))
        try:
            with self._write() as conn:
                # Taking the image row's lock first serializes the adders of one image, so the
                # quota below counts every membership that committed before this one.
                conn.execute(update(images).where(images.c.id == image_id)
                             .values(version=images.c.version))
                conn.execute(insert(image_members).values(
                    image_id=image_id, member=member_id, status=MemberStatus.PENDING.value,
                    created_at=now, updated_at=now))
                if quota is not None:
                    count = conn.execute(select(func.count()).where(
                        image_members.c.image_id == image_id)).scalar_one()
                    if count > quota:
                        raise TooLarge(f"Maximum number of image members exceeded: {quota}")
        except IntegrityError as exc:
            raise Conflict(f"Member {member_id} already exists on image {image_id}.") from exc
        return Member(image_id, member_id, MemberStatus.PENDING, now.replace(tzinfo=UTC),
                      now.replace(tzinfo=UTC))

    def _find(self, image_id: str, member_id: str) -> Member | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(*_COLUMNS).where(
                image_members.c.image_id == image_id,
                image_members.c.member == member_id)).one_or_none()
        return None if row is None else _member(row)

    def _get(self, image_id: str, member_id: str) -> Member:
        found = self._find(image_id, member_id)
        if found is None:
            raise NotFound(f"Member {member_id} not found on image {image_id}.")
        return found

    def _of_image(self, image_id: str) -> list[Member]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).where(image_members.c.image_id == image_id)
                                .order_by(image_members.c.created_at,
                                          image_members.c.member)).all()
        return [_member(row) for row in rows]

    def _set_status(self, image_id: str, member_id: str, status: MemberStatus) -> Member:
        now = _naive(self._clock().replace(microsecond=0))
        with self._write() as conn:
            changed = conn.execute(
                update(image_members)
                .where(image_members.c.image_id == image_id, image_members.c.member == member_id)
                .values(status=status.value, updated_at=now)
            ).rowcount
            if changed != 1:
                raise NotFound(f"Member {member_id} not found on image {image_id}.")
            row = conn.execute(select(*_COLUMNS).where(
                image_members.c.image_id == image_id,
                image_members.c.member == member_id)).one()
        return _member(row)

    def _remove(self, image_id: str, member_id: str) -> None:
        with self._write() as conn:
            removed = conn.execute(delete(image_members).where(
                image_members.c.image_id == image_id,
                image_members.c.member == member_id)).rowcount
        if removed != 1:
            raise NotFound(f"Member {member_id} not found on image {image_id}.")
