"""Every store driver gives a factory here; the conformance suite runs against each of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.stores.base import Store
from glimpse.stores.filesystem import FilesystemDriver
from tests.stores import swift_server


@pytest.fixture(scope="session")
def swift_facts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real Swift for the session: the one `GLIMPSE_TEST_SWIFT` names, else our own."""
    reused = swift_server.reused_facts()
    if reused is not None:
        yield reused
        return
    folder = tmp_path_factory.mktemp("swift")
    facts = swift_server.start_swift(folder)
    try:
        yield facts
    finally:
        swift_server.stop_swift(folder)


@pytest.fixture(params=["filesystem", "swift"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "filesystem":
        yield Store("file", FilesystemDriver(tmp_path / "objects"))
    elif request.param == "swift":
        yield Store("swift", swift_server.driver(request.getfixturevalue("swift_facts")))
