"""The legacy tasks API's create (`POST /v2/tasks`, type `import`), on the import machinery.

`{"type": "import", "input": {"import_from": URL, "import_from_format": F,
"image_properties": {...}}}` is judged at once (400 for another type, a missing or mistyped
field, a URL the import filters refuse, properties the image schema refuses; 403 unless the
rules `tasks_api_access` and `add_task` allow the caller, admins by default, as in Glance). The
image is then created from `image_properties` (its `disk_format` defaults to
`import_from_format`, and must be it: the data is inspected as the image's `disk_format`), and
the task, of type `import`, is recorded with the change that takes the image's import lock,
exactly as `POST /import` with web-download records its `api_image_import` task
(`services.imports`).

Running it is web-download's run: the URL is fetched into the staging store through the import
filters, converted if `image_conversion_output_format` says so, and streamed through the
pipeline into the default store. On success the task's `result` is `{"image_id": ...}`; on
failure its `message` says why and, as Glance's revert does, the image the task created is
deleted (unless the task no longer holds its import lock).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from anyio import CancelScope

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Conflict, Forbidden, Invalid, NotFound
from glimpse.domain.images import Image, ImageStatus, Location
from glimpse.domain.ports import ImageRepository
from glimpse.domain.tasks import Task
from glimpse.services.images import ImageService
from glimpse.services.imports import LOCK, ImportService, ImportTask
from glimpse.services.mutations import Mutator
from glimpse.services.policy import Policy

TASK_TYPE = "import"
METHOD = "web-download"
INPUT_FIELDS = ("import_from", "import_from_format", "image_properties")


def _now() -> datetime:
    return datetime.now(UTC)


class LegacyTasks:
    """`POST /v2/tasks`: validates, creates the image and records its `import` task."""

    def __init__(self, images: ImageService, imports: ImportService, policy: Policy,
                 clock: Callable[[], datetime] = _now) -> None:
        self._images = images
        self._imports = imports
        self._policy = policy
        self._clock = clock

    async def create(self, ctx: RequestContext, body: Any) -> Task:
        self._policy.check_rule("tasks_api_access", ctx, "use the tasks API")
        self._policy.check_rule("add_task", ctx, "create tasks")
        properties, input_ = self._judge(body)
        image = await self._images.create(ctx, properties)
        task = Task.new(TASK_TYPE, ctx.project_id, self._clock().replace(microsecond=0),
                        image_id=image.id, input_=input_, request_id=ctx.request_id,
                        user_id=ctx.user_id)
        try:
            await self._imports.record(ctx, task, METHOD, self._imports.default_targets(), None)
        except BaseException:
            with CancelScope(shield=True), contextlib.suppress(Exception):
                await self._images.delete(ctx, image.id)
            raise
        return task

    def _judge(self, body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The image's properties and the task's input, or `Invalid` saying what is wrong."""
        if not isinstance(body, dict):
            raise Invalid("Request body must be a JSON object.")
        unknown = sorted(set(body) - {"type", "input"})
        if unknown:
            raise Invalid(f"Unknown task attribute {unknown[0]!r}: a task takes 'type' and "
                          "'input'.")
        kind = body.get("type")
        if not isinstance(kind, str):
            raise Invalid("The task needs a 'type' (a string).")
        if kind != TASK_TYPE:
            raise Invalid(f"Invalid type value: {kind[:64]!r}; only 'import' tasks can be "
                          "created.")
        input_ = body.get("input")
        if not isinstance(input_, dict):
            raise Invalid("The task needs an 'input' object.")
        for name in INPUT_FIELDS:
            if name not in input_:
                raise Invalid(f"Input does not contain '{name}' field.")
        source_format = input_["import_from_format"]
        if not isinstance(source_format, str) or not source_format:
            raise Invalid("'import_from_format' must be a disk format (a string).")
        properties = input_["image_properties"]
        if not isinstance(properties, dict):
            raise Invalid("'image_properties' must be an object.")
        self._imports.check_uri(input_["import_from"])
        properties = dict(properties)
        disk_format = properties.setdefault("disk_format", source_format)
        if disk_format != source_format:
            raise Invalid(f"'import_from_format' {source_format[:32]!r} is not the image's "
                          f"disk_format {str(disk_format)[:32]!r}: the data is checked as the "
                          "image's disk_format, so the two must agree.")
        return properties, dict(input_)


class LegacyImport:
    """The `import` task: web-download's run (`ImportTask`) on the legacy input."""

    def __init__(self, repo: ImageRepository, imports: ImportService, run: ImportTask,
                 mutate: Mutator) -> None:
        self._repo = repo
        self._imports = imports
        self._run = run
        self._mutate = mutate

    def _as_web_download(self, task: Task) -> Task:
        return dataclasses.replace(task, input={
            "image_id": task.image_id,
            "import_req": {"method": {"name": METHOD, "uri": task.input.get("import_from")}},
            "backend": self._imports.default_targets(),
        })

    async def run(self, task: Task) -> dict[str, object] | None:
        await self._run.run(self._as_web_download(task))
        return {"image_id": task.image_id}

    async def failed(self, task: Task, message: str) -> None:
        if task.image_id is None:
            return
        with contextlib.suppress(NotFound):
            if (await self._repo.get(task.image_id)).properties.get(LOCK) != task.id:
                return  # the image is no longer this task's to undo

        def created_here(img: Image) -> list[Location]:
            # The import undone, the image this task created goes too, unless it came into use.
            if img.status != ImageStatus.QUEUED or img.locations:
                raise Conflict(f"Image {img.id} is in use")
            return img.delete()

        await self._run.failed(self._as_web_download(task), message)
        with contextlib.suppress(NotFound, Conflict, Forbidden):
            await self._mutate(task.image_id, created_here)
