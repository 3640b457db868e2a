"""The one way services change a stored image.

Read the image, let the change work on a copy, and hand the registry the difference
(`domain.changes.diff`): a compare-and-swap on the fields the change touched and the ones the
rules read. If another writer changed one of those meanwhile, the change runs again on a fresh
read after a jittered, growing pause, until `timeout` seconds have passed; only then does the
caller get a 409 naming the fields. Writers of disjoint fields never wait for each other.

A change may return locations whose data must go (a deleted image's, a failed upload's); they
are recorded as deletion jobs in the same transaction and run right after it (`Cleanup`), except
data in read-only stores (an HTTP location), which Glimpse never removes. A change may also start
background tasks, recorded in the same transaction and run right after it (`TaskRunner`).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from glimpse.domain.changes import Quotas, diff
from glimpse.domain.errors import Conflict, StaleImage
from glimpse.domain.images import Image, Location
from glimpse.domain.ports import ImageRepository
from glimpse.domain.quotas import ProjectLimits
from glimpse.domain.tasks import Task
from glimpse.domain.uploads import UploadSession
from glimpse.services.cleanup import Cleanup
from glimpse.services.tasks import TaskRunner

log = logging.getLogger(__name__)

#: A change of an image: it may refuse by raising, and return the locations to discard.
Change = Callable[[Image], Iterable[Location] | None]

#: First pause after a lost race, and the longest one.
FIRST_PAUSE = 0.002
LONGEST_PAUSE = 0.25


class Mutator:
    def __init__(
        self,
        repo: ImageRepository,
        cleanup: Cleanup,
        timeout: float = 5.0,
        quotas: Quotas | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        runner: TaskRunner | None = None,
    ) -> None:
        self._repo = repo
        self._cleanup = cleanup
        self._runner = runner
        self._timeout = timeout
        self._quotas = quotas or Quotas()
        self._sleep = sleep

    async def __call__(self, image_id: str, change: Change,
                       project: ProjectLimits | None = None,
                       tasks: Iterable[Task] = (), opened: Iterable[UploadSession] = (),
                       closed: Iterable[str] = ()) -> Image:
        """Apply `change` to the newest stored image; returns the image as stored afterwards.

        `project` holds the limits of the image owner's project that the registry checks if
        the change grows what they count (an upload beginning or finishing). `tasks` are
        recorded with the change and started once it is stored; upload sessions are `opened`
        and `closed` (by id) with it.

        `change` runs again on a fresh read whenever a concurrent writer won the race for a field
        it touched, so it must decide from the image it is given (and may raise to refuse).
        Raises `Conflict` naming the contended fields once `timeout` has passed.
        """
        deadline = time.monotonic() + self._timeout
        attempt = 0
        quotas = (self._quotas if project is None
                  else dataclasses.replace(self._quotas, project=project))
        while True:
            before = await self._repo.get(image_id)
            after = copy.deepcopy(before)
            discard = [loc for loc in change(after) or () if self._cleanup.removes(loc)]
            update = diff(before, after, discard, quotas, tasks, opened, closed)
            try:
                saved = await self._repo.update(update)
            except StaleImage as exc:
                attempt += 1
                pause = random.uniform(0, min(LONGEST_PAUSE, FIRST_PAUSE * 2**attempt))
                if time.monotonic() + pause > deadline:
                    fields = ", ".join(exc.fields) or "the image"
                    raise Conflict(f"Image {image_id} is being changed concurrently ({fields}); "
                                   "try again.") from exc
                await self._sleep(pause)
                continue
            if update.discard:
                await self._cleanup.run(list(update.discard))
            if update.tasks:
                assert self._runner is not None, "a change started tasks without a runner"
                self._runner.start(update.tasks)
            return saved
