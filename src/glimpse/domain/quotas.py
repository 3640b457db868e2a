"""Per-project quotas: what a project holds (`Usage`), how much it may hold (`ProjectLimits`),
and which image statuses each quota counts.

The four quotas are Glance's unified-limit names. Sizes are bytes (Glance counts MiB):

- `image_count_total`: images the project owns that are not deleted;
- `image_size_total`: bytes of the data of its images that hold data in a store (`STORED`);
- `image_stage_total`: bytes of its images' data in staging (`STAGING`: staged, not imported);
- `image_count_uploading`: its images with data on the way in (`UPLOADING`).

An image counts for its owner; images without an owner count for nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from glimpse.domain.errors import TooLarge
from glimpse.domain.images import ImageStatus

S = ImageStatus

#: The quota names, in the order `GET /v2/info/usage` shows them.
NAMES = ("image_size_total", "image_stage_total", "image_count_total", "image_count_uploading")

#: Statuses whose images count for no quota (`killed` images can no longer be seen or deleted).
GONE = frozenset({S.DELETED, S.KILLED})
#: Statuses whose `size` is data kept in a store (`image_size_total`).
STORED = frozenset({S.ACTIVE, S.DEACTIVATED})
#: Statuses whose `size` is data in staging (`image_stage_total`).
STAGING = frozenset({S.UPLOADING, S.IMPORTING})
#: Statuses of images whose data is on the way in (`image_count_uploading`).
UPLOADING = frozenset({S.SAVING, S.UPLOADING, S.IMPORTING})


@dataclass(frozen=True)
class Usage:
    """What one project holds now, one field per quota name."""

    image_size_total: int = 0
    image_stage_total: int = 0
    image_count_total: int = 0
    image_count_uploading: int = 0


@dataclass(frozen=True)
class ProjectLimits:
    """The limits of one project, one field per quota name; None means unlimited."""

    image_size_total: int | None = None
    image_stage_total: int | None = None
    image_count_total: int | None = None
    image_count_uploading: int | None = None

    @property
    def unlimited(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def check(self, name: str, project: str, usage: int, delta: int) -> None:
        """Raise `TooLarge` naming quota `name` if `usage` (which includes `delta`, the amount
        the refused request adds) passes the limit."""
        limit: int | None = getattr(self, name)
        if limit is not None and usage > limit:
            raise exceeded(name, project, limit, usage - delta, delta)


def exceeded(name: str, project: str, limit: int, usage: int, delta: int) -> TooLarge:
    """The refusal of a request that would take `project` past `limit` of quota `name`, in the
    words Glance (through oslo.limit) uses."""
    return TooLarge(f"Project {project} is over a limit for [Resource {name} is over limit of "
                    f"{limit} due to current usage {usage} and delta {delta}]")
