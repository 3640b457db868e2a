"""What a listing asks for, in terms the repository can turn into a query.

These are values, built by the services from request parameters and read by the repository.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from glimpse.domain.access import EVERYTHING, Term

Op = Literal["eq", "neq", "in", "gt", "gte", "lt", "lte"]
SortDir = Literal["asc", "desc"]


@dataclass(frozen=True)
class Condition:
    """`field op value` on a base column (`prop=False`) or on an extra property (`prop=True`)."""

    field: str
    op: Op
    value: object
    prop: bool = False


@dataclass(frozen=True)
class SortKey:
    field: str
    direction: SortDir


@dataclass(frozen=True)
class ListQuery:
    """A page of images. `marker` is the id of the last image of the previous page."""

    conditions: tuple[Condition, ...] = ()
    tags: tuple[str, ...] = ()
    #: Which images the caller may list at all (before any filter).
    access: Term = EVERYTHING
    sort: tuple[SortKey, ...] = field(
        default_factory=lambda: (SortKey("created_at", "desc"), SortKey("id", "desc"))
    )
    limit: int = 25
    marker: str | None = None
