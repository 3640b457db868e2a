"""The task runner: background work that survives the request (see `domain/tasks.py`).

The server whose request recorded a task runs it at once, renewing its lease while it works. If
that server dies, the lease runs out and any server's periodic sweep claims the task and runs it
again from the start, so handlers must be safe to repeat; after `max_attempts` claims a task is
failed instead, with a message. A handler returns the task's result, or raises `TaskFailed` to
fail it with a message for the user (any other exception is logged and the task failed with a
generic message). Its `failed` hook then undoes what the task left half-done (an image waiting in
`importing` goes back to `queued`), so no image waits for a task that will never finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import NotFound
from glimpse.domain.ports import ImageRepository, MemberRepository, TaskRepository
from glimpse.domain.tasks import Task, TaskStatus
from glimpse.services.members import membership
from glimpse.services.policy import Policy
from glimpse.services.views import isotime

log = logging.getLogger(__name__)

BATCH = 20


class TaskFailed(Exception):
    """The task cannot succeed; the message says why, to the user."""


class Handler(Protocol):
    async def run(self, task: Task) -> dict[str, object] | None:
        """Do the work; safe to repeat from the start on another server."""
        ...

    async def failed(self, task: Task, message: str) -> None:
        """Undo what a failed task left half-done."""
        ...


class TaskRunner:
    def __init__(self, repo: TaskRepository, lease: float, interval: float = 10.0,
                 max_attempts: int = 3) -> None:
        self._repo = repo
        self._handlers: dict[str, Handler] = {}
        self._lease = lease
        self._interval = interval
        self._max_attempts = max_attempts
        self._running: set[asyncio.Task[None]] = set()

    def register(self, task_type: str, handler: Handler) -> None:
        self._handlers[task_type] = handler

    def start(self, tasks: tuple[Task, ...] | list[Task]) -> None:
        """Run tasks this server just recorded (and holds the lease of) in the background."""
        for task in tasks:
            if not task.finished:
                running = asyncio.create_task(self._run(task))
                self._running.add(running)
                running.add_done_callback(self._running.discard)

    async def wait(self) -> None:
        """Wait for the tasks this server is running (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def sweep(self) -> int:
        """Claim and run the tasks whose server died; returns how many were claimed."""
        claimed = 0
        while True:
            tasks = await self._repo.claim_due(BATCH)
            claimed += len(tasks)
            for task in tasks:
                if task.attempts > self._max_attempts:
                    log.warning("task %s (%s) was abandoned %d times; failing it", task.id,
                                task.type, task.attempts - 1)
                    await self._fail(task, "The task was interrupted too many times "
                                           "(its server stopped); try again.")
                else:
                    log.info("task %s (%s): resuming after its server stopped", task.id,
                             task.type)
                    self.start([task])
            if len(tasks) < BATCH:
                return claimed

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("task sweep failed; retrying")
            await asyncio.sleep(self._interval)

    async def aclose(self) -> None:
        for running in list(self._running):
            running.cancel()
        for running in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await running

    async def _run(self, task: Task) -> None:
        handler = self._handlers.get(task.type)
        if handler is None:
            await self._fail(task, f"Unknown task type {task.type!r}.")
            return
        beat = asyncio.create_task(self._heartbeat(task))
        try:
            result = await handler.run(task)
        except TaskFailed as exc:
            await self._fail(task, str(exc), handler)
        except asyncio.CancelledError:
            raise  # the server is stopping: the lease runs out and another server resumes it
        except Exception:
            log.exception("task %s (%s) failed", task.id, task.type)
            await self._fail(task, "The task failed with an internal error.", handler)
        else:
            await self._repo.finish(task, TaskStatus.SUCCESS, result, "")
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _fail(self, task: Task, message: str, handler: Handler | None = None) -> None:
        handler = handler or self._handlers.get(task.type)
        if handler is not None:
            try:
                await handler.failed(task, message)
            except Exception:
                log.exception("task %s (%s): undoing after its failure failed", task.id,
                              task.type)
        await self._repo.finish(task, TaskStatus.FAILURE, None, message)

    async def _heartbeat(self, task: Task) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            if not await self._repo.heartbeat(task):
                log.warning("task %s lost its lease", task.id)
                return


class TaskService:
    """Reading tasks: those of an image (whoever may see the image), and the admin tasks API."""

    def __init__(self, repo: TaskRepository, images: ImageRepository, members: MemberRepository,
                 policy: Policy) -> None:
        self._repo = repo
        self._images = images
        self._members = members
        self._policy = policy

    async def of_image(self, ctx: RequestContext, image_id: str) -> list[Task]:
        image = await self._images.get(image_id)
        self._policy.check_visible(ctx, image, await membership(self._members, ctx, image))
        return await self._repo.of_image(image_id)

    async def get(self, ctx: RequestContext, task_id: str) -> Task:
        self._policy.check_rule("tasks_api_access", ctx, "use the tasks API")
        self._policy.check_rule("get_task", ctx, "show tasks")
        task = await self._repo.get(task_id)
        if not ctx.is_admin and task.owner != ctx.project_id:
            raise NotFound(f"Task with identifier {task_id} not found")
        return task

    async def find(self, ctx: RequestContext, limit: int, marker: str | None) -> list[Task]:
        self._policy.check_rule("tasks_api_access", ctx, "use the tasks API")
        self._policy.check_rule("get_tasks", ctx, "list tasks")
        return await self._repo.find(None if ctx.is_admin else ctx.project_id, limit, marker)


def task_document(task: Task) -> dict[str, object]:
    """A task as Glance shows it."""
    return {
        "id": task.id, "type": task.type, "status": task.status.value, "owner": task.owner,
        "input": task.input, "result": task.result, "message": task.message,
        "image_id": task.image_id, "request_id": task.request_id, "user_id": task.user_id,
        "expires_at": None if task.expires_at is None else isotime(task.expires_at),
        "created_at": isotime(task.created_at), "updated_at": isotime(task.updated_at),
        "self": f"/v2/tasks/{task.id}", "schema": "/v2/schemas/task",
    }
