"""A migrated registry database per test (SQLite, real files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from glimpse.registry.engine import make_engine
from glimpse.registry.images import SqlImageRepository
from glimpse.registry.migrate import upgrade


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def repo(engine: Engine) -> SqlImageRepository:
    return SqlImageRepository(engine)
