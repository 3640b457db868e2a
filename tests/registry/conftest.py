"""A migrated registry database per test, on every SQL backend Glimpse supports.

SQLite runs in a file per test. PostgreSQL and MariaDB are the real servers on this machine
(127.0.0.1:5432 with trust auth, 127.0.0.1:3306 as root), each with a database made for the test
session; every test starts from empty tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from glimpse.registry.engine import make_engine
from glimpse.registry.images import SqlImageRepository
from glimpse.registry.migrate import upgrade

#: A database of this run's own (runs side by side never share one), dropped at its end.
TEST_DATABASE = f"glimpse_registry_test_{uuid.uuid4().hex[:8]}"
SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306",
}
TABLES = ("uploads", "tasks", "deletions", "image_members", "image_locations", "image_tags",
          "image_properties", "images", "alembic_version")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _admin(name: str) -> Engine:
    admin_db = "/postgres" if name == "postgresql" else "/"
    return create_engine(SERVERS[name] + admin_db, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def server_databases() -> Iterator[dict[str, str]]:
    """A fresh database on each SQL server, for the whole session."""
    urls = {}
    for name, root in SERVERS.items():
        admin = _admin(name)
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {TEST_DATABASE}"))
        admin.dispose()
        urls[name] = f"{root}/{TEST_DATABASE}"
    yield urls
    for name in urls:
        admin = _admin(name)
        with admin.connect() as conn:
            force = " WITH (FORCE)" if name == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {TEST_DATABASE}{force}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    else:
        eng = make_engine(request.getfixturevalue("server_databases")[request.param])
        with eng.begin() as conn:
            for table in TABLES:
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def repo(engine: Engine) -> SqlImageRepository:
    return SqlImageRepository(engine)
