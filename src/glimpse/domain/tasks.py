"""Background tasks: work that outlives the request that asked for it (hashing the data behind
a new location today; imports and copies later).

A task is recorded in the registry in the same transaction as the image change that needs it,
so a crash never leaves an image waiting for work nobody knows of. One server at a time holds it
(`due_at` is both schedule and lease, as for deletion jobs); a server that dies while running it
only delays it, and another server runs it again. A task ends `success` or `failure`, the latter
with a `message` that says why.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILURE = "failure"


#: Statuses a task never leaves.
FINISHED = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILURE})


@dataclass
class Task:
    id: str
    type: str
    owner: str | None
    created_at: datetime
    updated_at: datetime
    image_id: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    status: TaskStatus = TaskStatus.PENDING
    result: dict[str, Any] | None = None
    message: str = ""
    request_id: str | None = None
    user_id: str | None = None
    expires_at: datetime | None = None
    #: How many times a server has claimed it.
    attempts: int = 0

    @classmethod
    def new(cls, type_: str, owner: str | None, now: datetime, *, image_id: str | None = None,
            input_: dict[str, Any] | None = None, request_id: str | None = None,
            user_id: str | None = None) -> Task:
        return cls(str(uuid.uuid4()), type_, owner, now, now, image_id=image_id,
                   input=dict(input_ or {}), request_id=request_id, user_id=user_id)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED
