"""The image entity, its status machine and the rules every change to an image obeys.

An `Image` is a plain dataclass. State changes go through methods named for what they do
(`begin_upload`, `finish_upload`, `fail_upload`, `deactivate`, ...), each checked against the one
transition table, `TRANSITIONS`. Persistence is someone else's job: a repository saves the
difference a change made (`changes.diff`) with a compare-and-swap on the fields it touched, so two
racing changes never mix.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from glimpse.domain.errors import Conflict, Forbidden, Invalid, NotFound, TooLarge


class ImageStatus(enum.StrEnum):
    QUEUED = "queued"
    SAVING = "saving"
    ACTIVE = "active"
    KILLED = "killed"
    DELETED = "deleted"
    UPLOADING = "uploading"
    IMPORTING = "importing"
    PENDING_DELETE = "pending_delete"
    DEACTIVATED = "deactivated"


S = ImageStatus

#: Which status may follow which (Glance's table; v2 upload failure returns saving to queued).
TRANSITIONS: dict[ImageStatus, frozenset[ImageStatus]] = {
    S.QUEUED: frozenset({S.SAVING, S.UPLOADING, S.IMPORTING, S.ACTIVE, S.DELETED}),
    S.SAVING: frozenset({S.ACTIVE, S.KILLED, S.DELETED, S.QUEUED}),
    S.UPLOADING: frozenset({S.IMPORTING, S.QUEUED, S.DELETED}),
    S.IMPORTING: frozenset({S.ACTIVE, S.DELETED, S.QUEUED}),
    S.ACTIVE: frozenset({S.PENDING_DELETE, S.DELETED, S.DEACTIVATED}),
    S.DEACTIVATED: frozenset({S.ACTIVE, S.DELETED}),
    S.KILLED: frozenset({S.DELETED}),
    S.PENDING_DELETE: frozenset({S.DELETED, S.ACTIVE}),
    S.DELETED: frozenset(),
}

#: Leaving these for a status that holds data needs both formats set.
_NEEDS_FORMATS_FROM = frozenset({S.QUEUED, S.UPLOADING})
_HOLDS_DATA = frozenset({S.SAVING, S.ACTIVE, S.IMPORTING})


class Visibility(enum.StrEnum):
    PUBLIC = "public"
    COMMUNITY = "community"
    SHARED = "shared"
    PRIVATE = "private"


class LocationStatus(enum.StrEnum):
    #: Holds the image's data: downloads read it.
    ACTIVE = "active"
    #: Added with data still to be verified (hashed) before it may be served.
    PENDING = "pending"
    #: Its verification failed: kept so that the caller sees what was tried, never served.
    FAILED = "failed"
    #: Data staged for an import (`PUT /stage`, web-download): not the image's data yet.
    STAGED = "staged"


@dataclass(frozen=True)
class Location:
    """Where one copy of the image data lives: a store id and the key inside that store (for an
    HTTP store, the URL), its status, and the metadata a client attached to it. Credentials
    never appear here: they live in the store's configuration."""

    store: str
    key: str
    status: LocationStatus = LocationStatus.ACTIVE
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def same_place(self, other: Location) -> bool:
        return (self.store, self.key) == (other.store, other.key)


@dataclass(frozen=True)
class Claimed:
    """Hashes a client states for data it points at (Glance's `validation_data`)."""

    checksum: str | None = None
    hash_algo: str | None = None
    hash_value: str | None = None


@dataclass(frozen=True)
class Digest:
    """What the upload pipeline measured of the bytes it streamed."""

    size: int
    checksum: str
    hash_algo: str
    hash_value: str
    #: What the format inspector found the disk's size to be, when it could tell.
    virtual_size: int | None = None


@dataclass
class Image:
    id: str
    owner: str | None
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    status: ImageStatus = ImageStatus.QUEUED
    visibility: Visibility = Visibility.SHARED
    protected: bool = False
    os_hidden: bool = False
    disk_format: str | None = None
    container_format: str | None = None
    min_disk: int = 0
    min_ram: int = 0
    size: int | None = None
    virtual_size: int | None = None
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    tags: set[str] = field(default_factory=set)
    properties: dict[str, str] = field(default_factory=dict)
    locations: list[Location] = field(default_factory=list)
    #: The upload session (`domain.uploads`) that holds this image in `saving`; the session
    #: records where it writes and whether it is alive.
    upload_id: str | None = None
    #: Bumped by every save.
    version: int = 0

    # -- status machine -------------------------------------------------------------------------

    def _move(self, target: ImageStatus) -> None:
        if target not in TRANSITIONS[self.status]:
            raise Conflict(f"Image status transition from {self.status} to {target} is not allowed")
        if (
            self.status in _NEEDS_FORMATS_FROM
            and target in _HOLDS_DATA
            and (self.disk_format is None or self.container_format is None)
        ):
            raise Invalid(
                "Properties disk_format, container_format must be set prior to saving data."
            )
        self.status = target

    def begin_upload(self, upload_id: str) -> None:
        """queued → saving, claimed by the upload session `upload_id`."""
        if self.status != ImageStatus.QUEUED:
            raise Conflict(f"Image {self.id} is not in queued status (it is {self.status}); "
                           "data can only be uploaded once")
        self._move(ImageStatus.SAVING)
        self.upload_id = upload_id

    def finish_upload(self, upload_id: str, digest: Digest, location: Location) -> None:
        """saving → active with the measured digest; only the upload that holds the claim may."""
        self._check_claim(upload_id)
        self._move(ImageStatus.ACTIVE)
        self._take_digest(digest)
        self.locations = [location]
        self.upload_id = None

    def fail_upload(self, upload_id: str) -> bool:
        """saving → queued after a failed upload. Returns False if the claim had already gone."""
        if self.status != ImageStatus.SAVING or self.upload_id != upload_id:
            return False
        self._move(ImageStatus.QUEUED)
        self.size = None
        self.virtual_size = None
        self.upload_id = None
        return True

    def _check_claim(self, upload_id: str) -> None:
        if self.status != ImageStatus.SAVING or self.upload_id != upload_id:
            raise Conflict(f"Image {self.id} is no longer being saved by this upload "
                           f"(status {self.status})")

    def deactivate(self) -> None:
        if self.status == ImageStatus.DEACTIVATED:
            return
        if self.status != ImageStatus.ACTIVE:
            raise Forbidden(f"Not allowed to deactivate image in status '{self.status}'")
        self._move(ImageStatus.DEACTIVATED)

    def reactivate(self) -> None:
        if self.status == ImageStatus.ACTIVE:
            return
        if self.status != ImageStatus.DEACTIVATED:
            raise Forbidden(f"Not allowed to reactivate image in status '{self.status}'")
        self._move(ImageStatus.ACTIVE)

    def delete(self) -> list[Location]:
        """Mark deleted; returns the locations whose data the caller must now remove.

        An upload in flight keeps its session: if its process is gone, the reaper still finds
        the session and discards its partial data.
        """
        if self.protected:
            raise Forbidden(f"Image {self.id} is protected and cannot be deleted.")
        self._move(ImageStatus.DELETED)
        gone, self.locations = self.locations, []
        return gone

    def drop_store(self, store: str) -> list[Location]:
        """Forget the locations in `store`; returns them (their data must now be removed).

        Only an active image loses a copy this way, and never its last one."""
        if self.status != ImageStatus.ACTIVE:
            raise Conflict(f"Image {self.id} is {self.status}: only an active image's data "
                           "can be removed from one store")
        gone = [loc for loc in self.locations if loc.store == store]
        if not gone:
            raise NotFound(f"Image {self.id} has no data in store {store!r}")
        kept = [loc for loc in self.locations if loc.store != store]
        if not kept:
            raise Conflict(f"Store {store!r} holds the last copy of image {self.id}'s data; "
                           "delete the image instead")
        self.locations = kept
        return gone

    # -- staging and import (interoperable import) ------------------------------------------

    @property
    def staged(self) -> Location | None:
        """The data staged for an import, if any."""
        return next((loc for loc in self.locations if loc.status == LocationStatus.STAGED), None)

    def begin_stage(self, upload_id: str) -> None:
        """queued → uploading, claimed by the staging session `upload_id`."""
        if self.status != ImageStatus.QUEUED:
            raise Conflict(f"Image {self.id} is {self.status}: data can only be staged to a "
                           "queued image")
        self._move(ImageStatus.UPLOADING)
        self.upload_id = upload_id

    def finish_stage(self, upload_id: str, location: Location, size: int,
                     metadata: dict[str, Any] | None = None) -> None:
        """The staged data is complete: the image stays uploading, ready for an import.
        `metadata`: what the staged location records (the server that staged it, say)."""
        if self.status != ImageStatus.UPLOADING or self.upload_id != upload_id:
            raise Conflict(f"Image {self.id} is no longer being staged by this upload "
                           f"(status {self.status})")
        self.upload_id = None
        self.size = size
        self.locations = [Location(location.store, location.key, LocationStatus.STAGED,
                                   metadata or {})]

    def fail_stage(self, upload_id: str) -> bool:
        """uploading → queued after a failed stage. False if the claim had already gone."""
        if self.status != ImageStatus.UPLOADING or self.upload_id != upload_id:
            return False
        self._move(ImageStatus.QUEUED)
        self.upload_id = None
        self.size = None
        return True

    def begin_import(self, method: str, needs_staged: bool, copies: bool) -> None:
        """`POST /import`: glance-direct needs staged data (uploading → importing); a download
        method starts from queued; copy-image copies an active image's data (its status
        stays)."""
        if copies:
            if self.status != ImageStatus.ACTIVE:
                raise Conflict(f"Image {self.id} is {self.status}: only an active image can be "
                               "copied to other stores")
            return
        wanted = ImageStatus.UPLOADING if needs_staged else ImageStatus.QUEUED
        if self.status != wanted or self.upload_id is not None or (
                needs_staged and self.staged is None):
            raise Conflict(f"Image {self.id} is {self.status}: {method} imports an image in "
                           f"status {wanted}" + (" with staged data" if needs_staged else ""))
        self._move(ImageStatus.IMPORTING)

    def add_imported(self, location: Location, digest: Digest) -> None:
        """An import (or copy) stored the data in one more store. A copy of an active image
        must match its data; an importing image stays importing until `finish_import`."""
        if self.status not in (ImageStatus.IMPORTING, ImageStatus.ACTIVE):
            raise Conflict(f"Image {self.id} is {self.status}: the import cannot go on")
        if self.status == ImageStatus.ACTIVE and self.os_hash_algo == digest.hash_algo and (
                digest.size, digest.hash_value) != (self.size, self.os_hash_value):
            raise Conflict(f"The data copied to store {location.store} differs from image "
                           f"{self.id}'s")
        self.locations = [loc for loc in self.locations if not loc.same_place(location)]
        self.locations.append(Location(location.store, location.key))

    def finish_import(self, digest: Digest | None) -> list[Location]:
        """The import is over: an importing image becomes active with `digest`; the staged
        data is returned, for removal."""
        if self.status == ImageStatus.IMPORTING:
            if digest is None or not self.readable_locations:
                raise Conflict(f"Image {self.id}: the import stored no data")
            self._move(ImageStatus.ACTIVE)
            self._take_digest(digest)
        return self.drop_staged()

    def drop_staged(self) -> list[Location]:
        """Forget the staged data (its import is over); returns it, for removal."""
        staged = [loc for loc in self.locations if loc.status == LocationStatus.STAGED]
        self.locations = [loc for loc in self.locations if loc.status != LocationStatus.STAGED]
        return staged

    def fail_import(self) -> list[Location]:
        """An import that could not finish: an image still importing goes back to queued, its
        staged data and the copies this import made are returned for removal."""
        if self.status != ImageStatus.IMPORTING:
            return self.drop_staged()
        self._move(ImageStatus.QUEUED)
        gone, self.locations = self.locations, []
        self.size = None
        self.checksum = self.os_hash_algo = self.os_hash_value = None
        self.virtual_size = None
        return gone

    # -- locations (Glance's location APIs) ----------------------------------------------------

    @property
    def readable_locations(self) -> list[Location]:
        """The locations downloads may read, in order."""
        return [loc for loc in self.locations if loc.status == LocationStatus.ACTIVE]

    def add_location(self, location: Location, position: int | None, size: int | None,
                     claimed: Claimed | None = None, quota: int | None = None) -> None:
        """Add a location through the legacy PATCH of `/locations`: at `position` (None: at the
        end). A queued image becomes active with `size` and the `claimed` hashes; an active
        one keeps its data and hashes, which `claimed` must then match (OSSN-0065: data already
        served is never silently replaced)."""
        if self.status not in (ImageStatus.QUEUED, ImageStatus.ACTIVE):
            raise Conflict(f"It's not allowed to add locations if image status is "
                           f"{self.status}.")
        if any(loc.same_place(location) for loc in self.locations):
            raise Invalid(f"The location {location.key} is already in use by this image.")
        if quota is not None and len(self.locations) >= quota:
            raise TooLarge(f"Maximum number of locations exceeded: {quota}")
        if position is not None and not 0 <= position <= len(self.locations):
            raise Invalid("Invalid position for adding a location.")
        if self.status == ImageStatus.ACTIVE:
            self._check_claimed(claimed)
        else:
            self._move(ImageStatus.ACTIVE)
            self.size = size
            self._take_claimed(claimed)
            self.locations = [loc for loc in self.locations if loc.status != LocationStatus.FAILED]
        at = len(self.locations) if position is None else position
        self.locations.insert(at, location)

    def replace_locations(self, new: list[Location]) -> bool:
        """The legacy `replace /locations`: only the metadata of the locations may change, never
        which they are (OSSN-0065). Returns False if the image had none, so the caller adds them
        one by one instead."""
        if not new:
            raise Forbidden("Cannot set locations to empty list.")
        if self.status not in (ImageStatus.QUEUED, ImageStatus.ACTIVE):
            raise Conflict(f"It's not allowed to replace locations if image status is "
                           f"{self.status}.")
        if not self.locations:
            return False
        if len(new) != len(self.locations) or not all(
                a.same_place(b) for a, b in zip(new, self.locations, strict=True)):
            raise Invalid("Only the metadata of an image's locations can be replaced; add and "
                          "remove locations one at a time.")
        self.locations = [Location(old.store, old.key, old.status, dict(loc.metadata))
                          for old, loc in zip(self.locations, new, strict=True)]
        return True

    def remove_location(self, position: int) -> list[Location]:
        """The legacy `remove /locations/N`: returns the removed location, whose data the
        caller must remove; never the last one."""
        if self.status != ImageStatus.ACTIVE:
            raise Conflict(f"It's not allowed to remove locations if image status is "
                           f"{self.status}.")
        if not 0 <= position < len(self.locations):
            raise Invalid("Invalid position for removing a location.")
        if len(self.readable_locations) <= 1 and \
                self.locations[position].status == LocationStatus.ACTIVE:
            raise Forbidden("Cannot remove last location in the image.")
        return [self.locations.pop(position)]

    def begin_location_import(self, location: Location, size: int | None,
                              claimed: Claimed | None, verify: bool) -> None:
        """`POST /v2/images/{id}/locations` (API 2.17), only for a queued image. With `verify`
        the location stays pending and the image importing until its data has been hashed
        (`finish_location_import`); without, the image is active at once, with the `claimed`
        hashes taken as given."""
        if self.status != ImageStatus.QUEUED:
            raise Conflict(f"Image {self.id} is {self.status}: a location can only be added "
                           "to a queued image.")
        kept = [loc for loc in self.locations if loc.status != LocationStatus.FAILED]
        if kept:
            raise Conflict(f"Image {self.id} already has a location.")
        self._move(ImageStatus.IMPORTING if verify else ImageStatus.ACTIVE)
        self.size = size
        if verify:
            location = Location(location.store, location.key, LocationStatus.PENDING,
                                location.metadata)
        else:
            self._take_claimed(claimed)
        self.locations = [location]

    def finish_location_import(self, location: Location, digest: Digest) -> None:
        """importing → active once the pending `location`'s data was hashed as `digest`."""
        index = self._pending_index(location)
        self._move(ImageStatus.ACTIVE)
        self._take_digest(digest)
        done = self.locations[index]
        self.locations[index] = Location(done.store, done.key, LocationStatus.ACTIVE,
                                         done.metadata)

    def fail_location_import(self, location: Location) -> None:
        """importing → queued: the pending location's data did not verify. The location stays,
        failed (never served), as Glance keeps it; a later add replaces it."""
        index = self._pending_index(location)
        self._move(ImageStatus.QUEUED)
        self.size = None
        failed = self.locations[index]
        self.locations[index] = Location(failed.store, failed.key, LocationStatus.FAILED,
                                         failed.metadata)

    def _take_digest(self, digest: Digest) -> None:
        self.size = digest.size
        self.checksum = digest.checksum
        self.os_hash_algo = digest.hash_algo
        self.os_hash_value = digest.hash_value
        self.virtual_size = digest.virtual_size

    def _pending_index(self, location: Location) -> int:
        for i, loc in enumerate(self.locations):
            if loc.same_place(location) and loc.status == LocationStatus.PENDING:
                if self.status != ImageStatus.IMPORTING:
                    break
                return i
        raise Conflict(f"Image {self.id} no longer waits for location {location.key} "
                       f"(status {self.status})")

    def _take_claimed(self, claimed: Claimed | None) -> None:
        if claimed is not None:
            self.checksum = claimed.checksum or self.checksum
            self.os_hash_algo = claimed.hash_algo or self.os_hash_algo
            self.os_hash_value = claimed.hash_value or self.os_hash_value

    def _check_claimed(self, claimed: Claimed | None) -> None:
        if claimed is None:
            return
        for name, value, known in (("checksum", claimed.checksum, self.checksum),
                                   ("os_hash_algo", claimed.hash_algo, self.os_hash_algo),
                                   ("os_hash_value", claimed.hash_value, self.os_hash_value)):
            if value is not None and value != known:
                raise Conflict(f"The image's {name} ({known}) does not match the {name} "
                               f"given for the new location ({value}).")

    # -- metadata rules -------------------------------------------------------------------------

    @property
    def formats_changeable(self) -> bool:
        return self.status in (ImageStatus.QUEUED, ImageStatus.IMPORTING)
