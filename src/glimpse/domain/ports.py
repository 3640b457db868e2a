"""The ports the services need from the outside: where image metadata is kept, and the recorded
jobs that remove image data from the stores.

The byte stores' port is `glimpse.stores.base.Store`: stores know nothing of images.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from glimpse.domain.changes import ImageChange
from glimpse.domain.deletions import Deletion
from glimpse.domain.images import Image
from glimpse.domain.members import Member, MemberStatus
from glimpse.domain.query import ListQuery
from glimpse.domain.quotas import ProjectLimits, Usage
from glimpse.domain.tasks import Task, TaskStatus
from glimpse.domain.uploads import UploadSession


class ImageRepository(Protocol):
    """Image metadata, kept with compare-and-swap saves of the fields each change touches.

    Every method is a coroutine so that an in-process SQL registry and a remote registry client
    fit the same port. Deleted images are kept as rows in status `deleted` (ids are never reused)
    but `get` and `list` treat them as absent.
    """

    async def add(self, image: Image, limits: ProjectLimits | None = None) -> Image:
        """Insert a new image. Raises `Conflict` if the id was ever used, `TooLarge` if its
        owner would then hold more images than `limits.image_count_total` (counted inside the
        insert's transaction, serialized per project)."""
        ...

    async def get(self, image_id: str) -> Image:
        """The image, whoever owns it. Raises `NotFound` if absent or deleted."""
        ...

    async def update(self, change: ImageChange) -> Image:
        """Apply `change` in one transaction if everything it expects still holds.

        Checks `change.expected` against the stored attributes and the read values of the touched
        properties, tags and locations; then writes them, sets `updated_at`, enforces
        `change.quotas` against the merged result (`TooLarge`; the project limits of
        `change.quotas.project` serialized per project, so that two changes that each fit cannot
        pass one together), and records `change.discard` as
        deletion jobs and `change.tasks` as tasks (both leased to the caller for their lease
        time, so that it runs them first), and opens and closes the upload sessions it names.
        Returns the image as stored afterwards, other writers' merged changes included.
        Raises `StaleImage` naming the fields that changed meanwhile (a deleted image has changed
        status unless the change expects `deleted`), `NotFound` if no such image was ever stored.
        """
        ...

    async def find(self, query: ListQuery) -> list[Image]:
        """One page of the images `query.access` admits, filtered and sorted as `query` says.

        Raises `Invalid` if `query.marker` names no image the query can list.
        """
        ...


class UploadSessions(Protocol):
    """Upload sessions (`domain.uploads`): opened and closed with image changes
    (`ImageChange.opened`, `ImageChange.closed`), proved alive here."""

    async def touch(self, session_id: str, now: datetime) -> bool:
        """Record that the session is alive. False if it was closed (reaped, or settled)."""
        ...

    async def stale(self, before: datetime) -> list[UploadSession]:
        """Sessions that last proved alive before `before`."""
        ...

    async def end(self, session_id: str) -> None:
        """Forget a session whose data has been dealt with (outside an image change)."""
        ...

    async def of_image(self, image_id: str) -> list[UploadSession]:
        """The open sessions of an image."""
        ...


class DeletionJobs(Protocol):
    """Recorded removals of image data, retried until they succeed, by any server.

    A job is due when its `due_at` has passed. Claiming one pushes `due_at` a lease ahead, so a
    server that dies while running it only delays it; the job itself is never lost. Jobs are
    idempotent: removing data that is already gone succeeds.
    """

    async def record(self, deletions: list[Deletion]) -> None:
        """Record jobs outside an image change, leased to the caller."""
        ...

    async def claim_due(self, limit: int) -> list[Deletion]:
        """Up to `limit` due jobs, each now leased to the caller."""
        ...

    async def finish(self, deletion: Deletion) -> None:
        """The data is gone: forget the job."""
        ...

    async def postpone(self, deletion: Deletion, delay: float, error: str) -> None:
        """The removal failed: try again after `delay` seconds."""
        ...


class TaskRepository(Protocol):
    """Background tasks, run by whichever server holds their lease (see `domain.tasks`).

    Tasks are recorded with the image change that starts them (`ImageChange.tasks`).
    """

    async def get(self, task_id: str) -> Task:
        """Raises `NotFound`."""
        ...

    async def of_image(self, image_id: str) -> list[Task]:
        """The tasks of an image, oldest first."""
        ...

    async def find(self, owner: str | None, limit: int, marker: str | None) -> list[Task]:
        """A page of tasks, newest first; every owner's if `owner` is None."""
        ...

    async def claim_due(self, limit: int) -> list[Task]:
        """Up to `limit` unfinished tasks whose lease has run out (their server died), each now
        leased to the caller, in status processing, with `attempts` counted."""
        ...

    async def heartbeat(self, task: Task) -> bool:
        """Extend the caller's lease; False if the task is finished or another server took it."""
        ...

    async def finish(self, task: Task, status: TaskStatus, result: dict[str, object] | None,
                     message: str) -> None:
        """Record the end of the task."""
        ...


class MemberRepository(Protocol):
    """The members of shared images: one per (image, project), created pending."""

    async def add(self, image_id: str, member_id: str, quota: int | None = None) -> Member:
        """A new pending member. `Conflict` if it exists; `TooLarge` past `quota` members."""
        ...

    async def get(self, image_id: str, member_id: str) -> Member:
        """Raises `NotFound` if `member_id` is no member of the image."""
        ...

    async def find(self, image_id: str, member_id: str) -> Member | None:
        """The membership, or None."""
        ...

    async def of_image(self, image_id: str) -> list[Member]:
        """Every member of the image, oldest first."""
        ...

    async def set_status(self, image_id: str, member_id: str, status: MemberStatus) -> Member:
        """Raises `NotFound` if `member_id` is no member of the image."""
        ...

    async def remove(self, image_id: str, member_id: str) -> None:
        """Raises `NotFound` if `member_id` is no member of the image."""
        ...


class UsageRepository(Protocol):
    """What each project holds, for the quotas of `glimpse.domain.quotas`."""

    async def usage(self, project: str) -> Usage:
        """What `project` holds now (a snapshot: the exact checks are the registry's, inside
        the transactions that would pass a limit, see `ImageRepository.update`)."""
        ...
