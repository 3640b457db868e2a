"""Who is asking: the request context every service call carries."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    """The caller's identity as established at the API edge.

    `project_id` is the project the caller acts for (the owner of what it creates); `roles` are
    lower-cased role names. `is_admin` follows from the roles, never from a separate flag.
    """

    project_id: str | None
    roles: frozenset[str] = field(default_factory=frozenset)
    user_id: str | None = None
    request_id: str = ""

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles
