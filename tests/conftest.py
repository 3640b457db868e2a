"""Shared fixtures: a real server process for the whole session, and a factory for more.

Every server runs on the registry `GLIMPSE_TEST_DATABASE` names (sqlite, postgresql, mariadb;
see tests/servers.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import Server, drop_databases, start_server
from tests.stores import swift_server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the PostgreSQL/MariaDB databases the servers of this run had (all stopped now)."""
    drop_databases()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `glimpse serve` on the embedded default, shared by the tests that only need one."""
    srv = start_server(tmp_path_factory.mktemp("glimpse") / "data")
    yield srv
    srv.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    """An HTTP client for the shared server, asking for JSON errors."""
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Accept": "application/json"}) as client:
        yield client


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start extra servers (own settings, optionally a shared data dir); all stopped at the end."""
    started: list[Server] = []

    def factory(data_dir: Path | None = None, **settings: object) -> Server:
        srv = start_server(data_dir or tmp_path / f"data{len(started)}", **settings)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def swift_facts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real Swift for the session: the one `GLIMPSE_TEST_SWIFT` names, else our own."""
    reused = swift_server.reused_facts()
    if reused is not None:
        yield reused
        return
    with swift_server.running_swift(tmp_path_factory.mktemp("swift")) as facts:
        yield facts
