"""Schema migrations on every SQL backend: servers that start together migrate once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, inspect, text

from glimpse.registry.engine import make_engine
from glimpse.registry.migrate import upgrade
from tests.registry.conftest import TABLES


@pytest.mark.parametrize("round", range(5))
def test_servers_starting_together_migrate_a_fresh_database_once(engine: Engine,
                                                                 round: int) -> None:
    """Six servers at once, five times over: the lock held until an upgrade had committed
    (released before, the next one read the old schema: once "database is locked" on SQLite
    in a loaded run)."""
    with engine.begin() as conn:  # back to an empty database
        for table in TABLES:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    # Each "server" has an engine of its own, as separate processes would.
    engines = [make_engine(engine.url.render_as_string(hide_password=False)) for _ in range(6)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def start(eng: Engine) -> None:
        barrier.wait()
        try:
            upgrade(eng)
        except BaseException as exc:  # the test reports every failure
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(eng,)) for eng in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for eng in engines:
        eng.dispose()
    assert errors == []
    tables = set(inspect(engine).get_table_names())
    assert set(TABLES) <= tables
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() \
            == ["0006"]
