"""Engines for the registry: SQLite tuned for concurrent readers, or any SQLAlchemy URL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event

#: Execution option that asks SQLite for a write lock when the transaction begins, so two writers
#: queue on busy_timeout instead of failing on a read-to-write lock upgrade.
WRITE = {"glimpse_write": True}


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
    return create_engine(url, pool_size=size, max_overflow=4, pool_pre_ping=True)


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
