"""What an import replaced on the image to stage its data (the formats a conversion changed) is
kept with the staged data in the registry, so the import's failure restores it on whichever
server handles that failure: here a second `ImportTask`, with none of the first one's memory,
over the same real SQLite registry and staging folder, with the real qemu-img."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from glimpse import config
from glimpse.api.app import build_services
from glimpse.domain.context import RequestContext
from glimpse.domain.tasks import Task
from glimpse.registry.engine import make_engine
from glimpse.registry.migrate import upgrade
from glimpse.services.imports import TASK_TYPE, ImportTask
from glimpse.services.tasks import TaskFailed

pytestmark = [pytest.mark.anyio,
              pytest.mark.skipif(shutil.which("qemu-img") is None,
                                 reason="needs qemu-img (Debian qemu-utils)")]
MiB = 1 << 20
ADMIN = RequestContext("admin", frozenset({"admin"}))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def big(tmp_path: Path) -> Path:
    """A 64 MiB disk as a (small) qcow2: its raw form exceeds the 48 MiB size cap, so the
    import converts, then fails."""
    path = tmp_path / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(path), str(64 * MiB)],
                   check=True, capture_output=True)
    return path


class Parked:
    """A task handler that holds its task until cancelled (at close)."""

    async def run(self, task: Task) -> None:
        await asyncio.Event().wait()

    async def failed(self, task: Task, message: str) -> None:
        raise AssertionError("a parked task does not fail")


async def chunks_of(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            yield chunk


async def test_a_failure_after_conversion_restores_the_formats_on_another_server(
        tmp_path: Path, big: Path) -> None:
    settings = config.load(environ={}, overrides={
        "data_dir": str(tmp_path / "data"), "image_conversion_output_format": "raw",
        "image_size_cap": 48 * MiB})
    (tmp_path / "data").mkdir()
    engine = make_engine(settings.database)
    upgrade(engine)
    engine.dispose()
    built, close = build_services(settings)
    built.runner.register(TASK_TYPE, Parked())  # the server that took the request: it
    try:                                           # never runs the task itself
        image = await built.images.create(ADMIN, {"name": "big", "disk_format": "qcow2",
                                                  "container_format": "ovf"})
        await built.imports.stage(ADMIN, image.id, chunks_of(big), None)
        task = await built.imports.begin(ADMIN, image.id, {"method": {"name": "glance-direct"}})

        with pytest.raises(TaskFailed, match="exceeds the limit") as failure:
            await ImportTask(built.imports).run(task)  # another server, resuming it
        converted = await built.images.get(ADMIN, image.id)
        assert converted.disk_format == "raw"  # converted, then the import failed

        # the failure handled by yet another server's ImportTask
        await ImportTask(built.imports).failed(task, str(failure.value))
        restored = await built.images.get(ADMIN, image.id)
        assert restored.status == "queued"
        assert (restored.disk_format, restored.container_format) == ("qcow2", "ovf")
        assert restored.staged is None
    finally:
        await close()
