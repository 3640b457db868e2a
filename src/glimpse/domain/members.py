"""Image members: the projects a `shared` image is offered to, and whether they took it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class MemberStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Member:
    """Project `member_id`'s membership of image `image_id`."""

    image_id: str
    member_id: str
    status: MemberStatus
    created_at: datetime
    updated_at: datetime
