"""The filesystem driver's local-file methods used by conversion on import: `path_of` and
`adopt` (a dot-file in the store folder committed as an object, as a writer commits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from glimpse.stores.errors import InvalidKey, ObjectExists, StoreUnavailable
from glimpse.stores.filesystem import FilesystemDriver

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def read(driver: FilesystemDriver, key: str) -> bytes:
    reader = await driver.open_reader(key)
    return b"".join([chunk async for chunk in reader.chunks()])


async def test_adopt_commits_a_dot_file_as_an_object(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "staging")
    temp = driver.root / ".converted.tmp"
    temp.write_bytes(b"converted")
    await driver.adopt("new-key", temp)
    assert not temp.exists()
    assert driver.path_of("new-key") == driver.root / "new-key"
    assert await read(driver, "new-key") == b"converted"


async def test_adopt_never_replaces_an_object_and_removes_the_file(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "staging")
    writer = await driver.open_writer("taken")
    await writer.write([b"first"])
    await writer.commit()
    temp = driver.root / ".second.tmp"
    temp.write_bytes(b"second")
    with pytest.raises(ObjectExists):
        await driver.adopt("taken", temp)
    assert not temp.exists()
    assert await read(driver, "taken") == b"first"


async def test_adopt_takes_only_dot_files_of_its_folder(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "staging")
    outside = tmp_path / ".elsewhere"
    outside.write_bytes(b"x")
    visible = driver.root / "visible"
    visible.write_bytes(b"x")
    for path in (outside, visible):
        with pytest.raises(StoreUnavailable):
            await driver.adopt("key", path)
        assert path.exists()
    with pytest.raises(InvalidKey):
        driver.path_of("../escape")
