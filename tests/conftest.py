"""Shared fixtures: a real server process for the whole session, and a factory for more."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import Server, start_server


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
