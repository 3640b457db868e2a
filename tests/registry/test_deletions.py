"""Deletion jobs against a real database: leases, retries, and one claimer at a time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from sqlalchemy import Engine

from glimpse.domain.deletions import Deletion
from glimpse.domain.images import Location
from glimpse.registry.deletions import SqlDeletionJobs

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jobs(engine: Engine, clock: Clock) -> SqlDeletionJobs:
    made = SqlDeletionJobs(engine, lease=30.0, clock=clock)
    yield made  # type: ignore[misc]
    made.close()


async def test_recorded_jobs_are_leased_to_their_recorder(jobs: SqlDeletionJobs,
                                                          clock: Clock) -> None:
    job = Deletion.of(Location("file", "k"), "img")
    await jobs.record([job])
    assert await jobs.claim_due(10) == []  # the recorder runs it first
    clock.advance(31)  # ... and died: anyone may take it now
    claimed = await jobs.claim_due(10)
    assert [(j.id, j.location, j.image_id, j.attempts) for j in claimed] == [
        (job.id, Location("file", "k"), "img", 1)]
    assert await jobs.claim_due(10) == []  # leased again, to the new claimer


async def test_postponed_jobs_come_back_and_finished_ones_do_not(jobs: SqlDeletionJobs,
                                                                 clock: Clock) -> None:
    first, second = Deletion.of(Location("a", "1"), None), Deletion.of(Location("b", "2"), None)
    await jobs.record([first, second])
    await jobs.postpone(first, 5, "store down")
    await jobs.finish(second)
    clock.advance(4)
    assert await jobs.claim_due(10) == []
    clock.advance(2)
    assert [j.id for j in await jobs.claim_due(10)] == [first.id]
    clock.advance(60)
    again = await jobs.claim_due(10)
    assert [(j.id, j.attempts) for j in again] == [(first.id, 2)]
    await jobs.finish(again[0])
    clock.advance(600)
    assert await jobs.claim_due(10) == []


def test_one_claimer_per_job(engine: Engine, clock: Clock) -> None:
    """Four servers sweep at once: every job is claimed exactly once."""
    recorder = SqlDeletionJobs(engine, lease=30.0, clock=clock)
    anyio.run(recorder.record, [Deletion.of(Location("s", f"k{n}"), None) for n in range(20)])
    recorder.close()
    clock.advance(31)
    claimed: list[str] = []
    barrier = threading.Barrier(4)

    def sweeper() -> None:
        mine = SqlDeletionJobs(engine, lease=30.0, clock=clock)
        barrier.wait()
        claimed.extend(j.id for j in anyio.run(mine.claim_due, 100))
        mine.close()

    threads = [threading.Thread(target=sweeper) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 20 and len(set(claimed)) == 20
