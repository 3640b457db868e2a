"""Deletion jobs: image data that must be removed from a store, recorded until it is."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from glimpse.domain.images import Location


@dataclass(frozen=True)
class Deletion:
    """Remove whatever `location` holds (committed or partial data). `attempts` counts claims."""

    id: str
    location: Location
    image_id: str | None
    attempts: int = 0

    @classmethod
    def of(cls, location: Location, image_id: str | None) -> Deletion:
        """A new job, with a fresh id."""
        return cls(str(uuid.uuid4()), location, image_id)
