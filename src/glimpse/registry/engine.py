"""Engines for the registry: SQLite tuned for concurrent readers, or any SQLAlchemy URL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event

#: Execution option that asks SQLite for a write lock when the transaction begins, so two writers
#: queue on busy_timeout instead of failing on a read-to-write lock upgrade.
WRITE = {"glimpse_write": True}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=False)
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=True)


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
