"""Removing image data: recorded deletion jobs, run at once and retried by any server until done.

The change that makes data unreachable (a delete, a failed or dead upload) records its removal in
the same registry transaction, so a crash at any point leaves a job behind rather than orphaned
bytes. The server that made the change runs the job right away; if the store fails, or the server
dies first, the job waits for every server's periodic sweep (`run_forever`), with growing pauses
between attempts. Removals are idempotent (`Store.discard`), so running one twice is harmless.
The same jobs will serve delayed delete (a job due later) and several stores (one per location).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from glimpse.domain.deletions import Deletion
from glimpse.domain.images import Location
from glimpse.domain.ports import DeletionJobs
from glimpse.stores.base import Store
from glimpse.stores.errors import StoreError

log = logging.getLogger(__name__)

#: Jobs one sweep claims at most; the longest pause between two attempts of a job.
BATCH = 100
LONGEST_PAUSE = 3600.0


class Cleanup:
    def __init__(self, jobs: DeletionJobs, stores: dict[str, Store], interval: float = 10.0
                 ) -> None:
        self._jobs = jobs
        self._stores = stores
        self._interval = interval

    def removes(self, location: Location) -> bool:
        """Whether the data of `location` is Glimpse's to remove: not in a read-only store (an
        HTTP location points at data someone else keeps). Data in a store no longer configured
        still gets a job, which waits for the store to come back."""
        store = self._stores.get(location.store)
        return store is None or store.capabilities.write

    async def run(self, deletions: list[Deletion]) -> None:
        """Run jobs the caller holds (just recorded). A failure leaves the job for a sweep."""
        for job in deletions:
            try:
                await self._remove(job)
            except Exception:  # the job stays recorded; a sweep retries it
                log.exception("image %s: deleting data %s/%s failed; it will be retried",
                              job.image_id, job.location.store, job.location.key)

    async def discard(self, locations: Iterable[Location], image_id: str | None) -> None:
        """Record and run jobs for data no image change accounts for."""
        jobs = [Deletion.of(location, image_id) for location in locations]
        if jobs:
            await self._jobs.record(jobs)
            await self.run(jobs)

    async def sweep(self) -> int:
        """Run the jobs that are due; returns how many removed their data."""
        done = 0
        while True:
            jobs = await self._jobs.claim_due(BATCH)
            for job in jobs:
                done += await self._remove(job)
            if len(jobs) < BATCH:
                return done

    async def run_forever(self) -> None:
        """Sweep every `interval` seconds; meant to run as a background task."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("deletion sweep failed; retrying")
            await asyncio.sleep(self._interval)

    async def _remove(self, job: Deletion) -> bool:
        store = self._stores.get(job.location.store)
        try:
            if store is None:
                raise StoreError(f"store {job.location.store!r} is not configured")
            await store.discard(job.location.key)
        except StoreError as exc:
            pause = min(LONGEST_PAUSE, self._interval * 2 ** job.attempts)
            log.warning("image %s: could not delete data %s/%s (%s); retrying in %.0f s",
                        job.image_id, job.location.store, job.location.key, exc.message, pause)
            await self._jobs.postpone(job, pause, exc.message)
            return False
        await self._jobs.finish(job)
        return True
