"""Schema migrations: bring a database up to the newest revision (Alembic, from this package).

Servers of one deployment may start at the same moment against one database; the upgrade runs
under a lock every one of them takes first (a `flock` beside a SQLite file, an advisory lock on
PostgreSQL, a named lock on MySQL/MariaDB), so one migrates and the others then find the
schema up to date instead of failing halfway through the same DDL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from glimpse.registry.engine import write_lock

_HERE = Path(__file__).parent / "migrations"
#: The advisory lock key of migrations on PostgreSQL ("glimpse" in ASCII, as a number).
_PG_LOCK = 0x676C696D707365
_MYSQL_LOCK = "glimpse_migrations"


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """The lock around an upgrade, held until its transaction has committed: released before,
    the next server would read the schema as it was and fail on the same DDL (SQLite: a stale
    snapshot, "database is locked"). PostgreSQL's is a transaction lock, taken in `upgrade`."""
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        yield
    elif backend in ("mysql", "mariadb"):
        with engine.connect() as conn:  # a named lock belongs to its session
            got = conn.execute(text("SELECT GET_LOCK(:name, 120)"),
                               {"name": _MYSQL_LOCK}).scalar()
            if got != 1:
                raise RuntimeError("timed out waiting for another server's schema migration")
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MYSQL_LOCK})
    else:
        with write_lock(engine):
            yield


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision`; safe to call on an up-to-date database, and from
    several servers at once."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    with _migration_lock(engine), engine.begin() as conn:
        if engine.url.get_backend_name() == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
