"""What one save of an image changes, and what it read: the compare-and-swap unit of the registry.

A service reads an image, changes a copy in memory, and hands the registry `diff(before, after)`.
The registry applies it only if every field the change *wrote*, and every field in `GUARDED`
(the ones the rules read), still holds the value that was read. Writers that touch disjoint
fields therefore never refuse each other: two clients adding different properties or tags to
one image both succeed, while two changes of the same property, or a change racing a status
transition, make one of them retry from a fresh read (`StaleImage` names the fields).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from glimpse.domain.deletions import Deletion
from glimpse.domain.images import Image, Location
from glimpse.domain.quotas import ProjectLimits
from glimpse.domain.tasks import Task
from glimpse.domain.uploads import UploadSession

#: Attributes the rules read (status machine, ownership and visibility checks, protection,
#: format rules, upload claims): every save checks they are unchanged since its read.
GUARDED = ("status", "owner", "visibility", "protected", "disk_format", "container_format",
           "upload_id")

#: Base attributes a change may write (each one a column of the image).
COLUMNS = ("name", "status", "visibility", "protected", "os_hidden", "disk_format",
           "container_format", "min_disk", "min_ram", "size", "virtual_size", "checksum",
           "os_hash_algo", "os_hash_value", "owner", "upload_id")


@dataclass(frozen=True)
class Quotas:
    """Limits the registry checks inside the transaction that would pass them: per image
    (`properties`, `tags`), and `project`, the limits of the image owner's project, checked
    (serialized per project) when the change grows what one of them counts."""

    properties: int | None = None
    tags: int | None = None
    project: ProjectLimits = field(default_factory=ProjectLimits)


@dataclass(frozen=True)
class ImageChange:
    """A save of image `image_id`.

    `expected` holds, for every guarded or written attribute, the value that was read; `values`
    the attributes to write. `properties` maps each touched extra property to (read, new), None
    meaning absent. Tags are a set: additions and removals merge with other writers'. `locations`
    is (read, new) when the list changed. `discard` holds the data that must be removed once the
    change is stored: the registry records these deletion jobs in the same transaction, leased
    to the caller, who runs them right after. `tasks` are background tasks the change starts,
    recorded in the same transaction and leased to the caller in the same way. `opened` are
    upload sessions the change starts, `closed` the ids of those it settles (their data is now a
    location, or in `discard`): both in the same transaction, so no byte in flight is ever
    unaccounted for.
    """

    image_id: str
    expected: Mapping[str, object]
    values: Mapping[str, object]
    properties: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    added_tags: frozenset[str] = frozenset()
    removed_tags: frozenset[str] = frozenset()
    locations: tuple[tuple[Location, ...], tuple[Location, ...]] | None = None
    discard: tuple[Deletion, ...] = ()
    tasks: tuple[Task, ...] = ()
    opened: tuple[UploadSession, ...] = ()
    closed: tuple[str, ...] = ()
    quotas: Quotas = Quotas()

    @property
    def empty(self) -> bool:
        """Whether storing it would change nothing but `updated_at` (and record no job)."""
        return not (self.values or self.properties or self.added_tags or self.removed_tags
                    or self.locations or self.discard or self.tasks or self.opened
                    or self.closed)


def diff(before: Image, after: Image, discard: Iterable[Location] = (),
         quotas: Quotas = Quotas(), tasks: Iterable[Task] = (),
         opened: Iterable[UploadSession] = (), closed: Iterable[str] = ()) -> ImageChange:
    """The change that turns stored `before` into `after` (same id), guarded as `GUARDED` says."""
    values = {name: getattr(after, name) for name in COLUMNS
              if getattr(after, name) != getattr(before, name)}
    expected = {name: getattr(before, name) for name in (*GUARDED, *values)}
    names = set(before.properties) | set(after.properties)
    properties = {
        name: (before.properties.get(name), after.properties.get(name))
        for name in sorted(names)
        if before.properties.get(name) != after.properties.get(name)
    }
    locations = None
    if after.locations != before.locations:
        locations = (tuple(before.locations), tuple(after.locations))
    return ImageChange(
        image_id=before.id,
        expected=expected,
        values=values,
        properties=properties,
        added_tags=frozenset(after.tags - before.tags),
        removed_tags=frozenset(before.tags - after.tags),
        locations=locations,
        discard=tuple(Deletion.of(location, before.id) for location in discard),
        tasks=tuple(tasks),
        opened=tuple(opened),
        closed=tuple(closed),
        quotas=quotas,
    )
