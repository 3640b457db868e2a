"""Every store driver gives a factory here; the conformance suite runs against each of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from glimpse.stores.base import Store
from glimpse.stores.filesystem import FilesystemDriver


@pytest.fixture(params=["filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "filesystem":
        yield Store("file", FilesystemDriver(tmp_path / "objects"))
