"""Engines for the registry: SQLite tuned for concurrent readers, or any SQLAlchemy URL."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event

T = TypeVar("T")

#: Execution option that asks SQLite for a write lock when the transaction begins, so two writers
#: queue on busy_timeout instead of failing on a read-to-write lock upgrade.
WRITE = {"glimpse_write": True}


class WriteLock:
    """Queues the writers of one SQLite file, across threads and processes, in the kernel.

    Without it, writers that find the file locked sleep in SQLite's busy handler with growing
    back-off (up to 100 ms a nap), which puts seconds into the tail latency of creates when
    several server processes share a database. `flock` wakes the next writer at once.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None
        self._threads = threading.Lock()

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def write_lock(engine: Engine) -> contextlib.AbstractContextManager[None]:
    """The lock write transactions take first: a `WriteLock` for a SQLite file, else none."""
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return WriteLock(database + ".writelock")
    return contextlib.nullcontext()


@contextlib.contextmanager
def write_transaction(engine: Engine, lock: contextlib.AbstractContextManager[None]
                      ) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's write lock from its start."""
    with lock, engine.connect().execution_options(**WRITE) as conn, conn.begin():
        yield conn


class SqlComponent:
    """Base of the registry's components: blocking SQL calls run on worker threads of its own
    (`threads` at most at once), write transactions take the database's write lock first."""

    def __init__(self, engine: Engine, threads: int = 1, name: str = "registry",
                 clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._write_lock = write_lock(engine)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._clock = clock or (lambda: datetime.now(UTC))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _write(self) -> contextlib.AbstractContextManager[Connection]:
        return write_transaction(self._engine, self._write_lock)

    def close(self) -> None:
        """Wait for running calls; the engine stays open (its owner disposes of it)."""
        self._executor.shutdown(wait=True)


def concurrency(url: str) -> int:
    """How many registry calls may run at once in one process.

    SQLite serializes writers anyway; one registry thread spares the threads from queueing on
    its file lock (and from passing the GIL around). Server databases get a thread per
    connection of the pool.
    """
    return 1 if url.startswith("sqlite") else 16


def make_engine(url: str) -> Engine:
    # One connection per registry thread, kept open so that bursts never pay for reconnecting.
    size = concurrency(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=size + 1, max_overflow=0, pool_timeout=60)
        _tune_sqlite(engine)
        return engine
    options: dict[str, Any] = {}
    if url.startswith(("mysql", "mariadb")):
        # As PostgreSQL's default: each statement sees what committed before it, and no gap
        # locks between writers of different images (InnoDB's REPEATABLE READ takes them).
        options["isolation_level"] = "READ COMMITTED"
    return create_engine(url, pool_size=size, max_overflow=4, pool_pre_ping=True, **options)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("glimpse_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
