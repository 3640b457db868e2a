"""Image locations through Glance's two location APIs, and the task that verifies new ones.

Legacy: JSON-patch operations on `/locations` (`add /locations/N|-`, `remove /locations/N`,
`replace /locations`), only with `show_multiple_locations` on, as Glance gates them. Restricted
as OSSN-0065 asks: a location is added to an active image only if the hashes it is given match
the image's; `replace` may change the metadata of the locations, never which they are; the last
location is never removed. API 2.17: `POST /v2/images/{id}/locations` adds the first location of
a queued image (its owner or a service), then, with `do_secure_hash`, a `location_import` task
hashes the data there in the background (the image is `importing` meanwhile) and activates the
image only if the hashes match the `validation_data`; `GET` shows the locations, to services.

A location URL names a store of this server: its key is the URL minus the store's prefix
(`Store.key_of`), or the URL itself in an HTTP store. Credentials never appear in one.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Conflict, Forbidden, Invalid, NotFound, RefusedData, TooLarge
from glimpse.domain.images import (
    Claimed,
    Digest,
    Image,
    ImageStatus,
    Location,
    LocationStatus,
)
from glimpse.domain.members import MemberStatus
from glimpse.domain.ports import ImageRepository, MemberRepository
from glimpse.domain.tasks import Task
from glimpse.services import patch
from glimpse.services.inspection import FormatInspection, InspectionSettings
from glimpse.services.members import membership_of
from glimpse.services.mutations import Mutator
from glimpse.services.pipeline import Bounds, Hasher, Stage, stream
from glimpse.services.policy import Policy
from glimpse.services.signature import CertificateStore, SignatureVerification
from glimpse.services.tasks import TaskFailed
from glimpse.stores.base import Store
from glimpse.stores.errors import InvalidKey, ObjectNotFound, StoreError

log = logging.getLogger(__name__)

TASK_TYPE = "location_import"
_HEX = re.compile(r"[0-9a-f]+")
#: Hash algorithms a client may name in validation_data, by their hex digest length.
ALGORITHMS = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128,
              "sha3_224": 56, "sha3_256": 64, "sha3_384": 96, "sha3_512": 128,
              "blake2b": 128, "blake2s": 64}


@dataclass(frozen=True)
class LocationSettings:
    #: Glance's show_multiple_locations: images show `locations`, and PATCH may change them.
    show_multiple_locations: bool = False
    #: Glance's show_image_direct_url: images show `direct_url`, their first location.
    show_image_direct_url: bool = False
    #: Hash the data of a location added through API 2.17 before the image is active.
    do_secure_hash: bool = True
    #: Attempts to read a location's data before its task fails.
    http_retries: int = 3
    hashing_algorithm: str = "sha512"
    location_quota: int | None = 10
    multistore: bool = False


@dataclass(frozen=True)
class _Resolved:
    """A location operation of a patch, with what had to be looked up before the change."""

    change: patch.Change
    locations: tuple[Location, ...] = ()
    sizes: tuple[int, ...] = ()
    claimed: Claimed | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class LocationService:
    def __init__(self, repo: ImageRepository, members: MemberRepository, mutate: Mutator,
                 policy: Policy, stores: dict[str, Store], settings: LocationSettings,
                 clock: Callable[[], datetime] = _now) -> None:
        self._repo = repo
        self._members = members
        self._mutate = mutate
        self._policy = policy
        self._stores = stores
        self._settings = settings
        self._clock = clock
        # the heaviest store first, as location URLs are matched
        self._by_weight = sorted(stores.values(), key=lambda s: -s.weight)

    @property
    def settings(self) -> LocationSettings:
        return self._settings

    # -- views --------------------------------------------------------------------------------

    def url(self, location: Location) -> str:
        store = self._stores.get(location.store)
        return location.key if store is None else store.url(location.key)

    def view(self, location: Location) -> dict[str, Any]:
        metadata = dict(location.metadata)
        if self._settings.multistore:
            metadata["store"] = location.store
        return {"url": self.url(location), "metadata": metadata}

    def add_to_document(self, image: Image, document: dict[str, Any]) -> None:
        """Add `locations` and `direct_url` to an image's document where configured."""
        if self._settings.show_multiple_locations:
            document["locations"] = [self.view(loc) for loc in image.locations]
        readable = image.readable_locations
        if self._settings.show_image_direct_url and readable:
            document["direct_url"] = self.url(readable[0])

    # -- resolving URLs -----------------------------------------------------------------------

    def resolve(self, url: Any, metadata: Any, status: LocationStatus = LocationStatus.ACTIVE
                ) -> Location:
        """The location a client's `{url, metadata}` names; 400 if no store of this server
        holds such URLs (or the one `metadata.store` names does not)."""
        if not isinstance(url, str) or not url:
            raise Invalid("A location needs a 'url' string.")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise Invalid("A location's 'metadata' must be an object.")
        metadata = dict(metadata)
        named = metadata.pop("store", None)
        candidates = self._by_weight
        if named is not None:
            store = self._stores.get(named) if isinstance(named, str) else None
            if store is None:
                raise Invalid(f"Store {named!r} named by the location is not one of this "
                              f"server's stores.")
            candidates = [store]
        for store in candidates:
            try:
                key = store.key_of(url)
            except InvalidKey as exc:
                raise Invalid(f"Invalid location {_shown(url)}: {exc.message}") from exc
            if key is not None:
                return Location(store.id, key, status, metadata)
        raise Invalid(f"Invalid location {_shown(url)}: no store of this server holds such "
                      "URLs.")

    async def _size(self, location: Location) -> int:
        store = self._stores[location.store]
        try:
            return (await store.stat(location.key)).size
        except ObjectNotFound as exc:
            raise Invalid(f"Invalid location {_shown(self.url(location))}: no data there.") \
                from exc
        except StoreError as exc:
            raise Invalid(f"Invalid location {_shown(self.url(location))}: {exc.message}") \
                from exc

    # -- the legacy PATCH of /locations ---------------------------------------------------------

    @staticmethod
    def is_location_change(change: patch.Change) -> bool:
        return patch.decode_pointer(change.path)[0] == "locations"

    async def prepare(self, changes: Sequence[patch.Change]) -> list[_Resolved]:
        """Look up what the location operations of a patch need (stores, sizes), before the
        image change that applies them (which must not wait on a store)."""
        if not self._settings.show_multiple_locations:
            raise Forbidden("It's not allowed to update locations if locations are invisible.")
        resolved = []
        for change in changes:
            segments = patch.decode_pointer(change.path)
            if change.op == "remove":
                resolved.append(_Resolved(change))
                continue
            if change.op == "replace":
                if len(segments) != 1:
                    raise Invalid("Only the whole list of locations can be replaced: "
                                  "`/locations`.")
                if not isinstance(change.value, list):
                    raise Invalid("The value of `/locations` must be a list of locations.")
                items = [self._item(value) for value in change.value]
            else:
                if len(segments) != 2:
                    raise Invalid("A location is added at `/locations/N` or `/locations/-`.")
                items = [self._item(change.value)]
            locations = tuple(self.resolve(url, metadata) for url, metadata, _ in items)
            sizes = tuple([await self._size(loc) for loc in locations])
            claimed = self._legacy_claimed(items[0][2]) if change.op == "add" else None
            resolved.append(_Resolved(change, locations, sizes, claimed))
        return resolved

    @staticmethod
    def _item(value: Any) -> tuple[Any, Any, Any]:
        if not isinstance(value, dict):
            raise Invalid("A location is an object with 'url' and 'metadata'.")
        unknown = set(value) - {"url", "metadata", "validation_data"}
        if unknown:
            raise Invalid(f"Unknown members of a location: {', '.join(sorted(unknown))}.")
        if "metadata" not in value or "url" not in value:
            raise Invalid("A location needs both 'url' and 'metadata'.")
        return value["url"], value["metadata"], value.get("validation_data")

    def _legacy_claimed(self, data: Any) -> Claimed | None:
        if data is None or data == {}:
            return None
        if not isinstance(data, dict):
            raise Invalid("'validation_data' must be an object.")
        unknown = set(data) - {"checksum", "os_hash_algo", "os_hash_value"}
        if unknown:
            raise Invalid(f"Unknown members of validation_data: {', '.join(sorted(unknown))}.")
        checksum = data.get("checksum")
        if checksum is not None and not (isinstance(checksum, str) and len(checksum) == 32
                                         and _HEX.fullmatch(checksum)):
            raise Invalid("validation_data checksum must be 32 hexadecimal digits (MD5).")
        # the length of the value is checked only if it is taken (`apply`): against an active
        # image's hashes, a value of another algorithm's length is a mismatch (409), as Tempest
        # expects of Glance
        return self._claimed(data.get("os_hash_algo"), data.get("os_hash_value"), checksum,
                             exact=False)

    def _claimed(self, algo: Any, value: Any, checksum: str | None = None,
                 exact: bool = True) -> Claimed:
        if value is not None and algo is None:
            raise Invalid("validation_data with os_hash_value needs os_hash_algo.")
        if algo is not None:
            if not isinstance(algo, str) or algo not in ALGORITHMS:
                raise Invalid(f"validation_data os_hash_algo {str(algo)[:64]!r} is not one of "
                              f"{', '.join(sorted(ALGORITHMS))}.")
            if value is None:
                raise Invalid("validation_data with os_hash_algo needs os_hash_value.")
            longest = max(ALGORITHMS.values())
            if not (isinstance(value, str) and _HEX.fullmatch(value) and len(value) <= longest):
                raise Invalid(f"validation_data os_hash_value must be at most {longest} "
                              "hexadecimal digits.")
        claimed = Claimed(checksum, algo, value)
        if exact:
            _check_length(claimed)
        return claimed

    def apply(self, image: Image, resolved: Iterable[_Resolved], ctx: RequestContext,
              member: MemberStatus | None) -> list[Location]:
        """Apply prepared location operations to `image`; returns the locations removed (whose
        data must go)."""
        removed: list[Location] = []
        for item in resolved:
            change = item.change
            if change.op == "remove":
                self._policy.check("delete_image_location", ctx, image, member,
                                   "delete a location of")
                removed += image.remove_location(_position(change.path, len(image.locations)))
                continue
            self._policy.check("set_image_location", ctx, image, member, "set a location of")
            if change.op == "replace" and image.replace_locations(list(item.locations)):
                continue
            position = None
            if change.op == "add":
                position = _position(change.path, len(image.locations), insert=True)
            if item.claimed is not None and image.status == ImageStatus.QUEUED:
                _check_length(item.claimed)  # the image takes these hashes
            for i, (location, size) in enumerate(zip(item.locations, item.sizes, strict=True)):
                image.add_location(location, None if position is None else position + i, size,
                                   item.claimed, self._settings.location_quota)
        return removed

    # -- API 2.17 -------------------------------------------------------------------------------

    async def add(self, ctx: RequestContext, image_id: str, body: Any) -> None:
        """`POST /v2/images/{id}/locations`: the first location of a queued image."""
        member = await membership_of(self._members, ctx, image_id)
        image = await self._repo.get(image_id)
        self._policy.check_visible(ctx, image, member)
        self._policy.check("add_image_location", ctx, image, member, "add a location to")
        if not isinstance(body, dict):
            raise Invalid("Request body must be a JSON object.")
        unknown = set(body) - {"url", "validation_data"}
        if unknown:
            raise Invalid(f"Unknown members: {', '.join(sorted(unknown))}.")
        data = body.get("validation_data") or {}
        if not isinstance(data, dict) or set(data) - {"os_hash_algo", "os_hash_value"}:
            raise Invalid("'validation_data' is an object of os_hash_algo and os_hash_value.")
        claimed = self._claimed(data.get("os_hash_algo"), data.get("os_hash_value"))
        location = self.resolve(body.get("url"), {})
        if image.status != "queued":  # answer before reaching out to the store
            raise Conflict(f"Image {image_id} is {image.status}: a location can only be added "
                           "to a queued image.")
        size = await self._size(location)
        verify = self._settings.do_secure_hash
        task = Task.new(TASK_TYPE, image.owner, self._clock().replace(microsecond=0),
                        image_id=image_id, request_id=ctx.request_id, user_id=ctx.user_id,
                        input_={"store": location.store, "key": location.key,
                                "os_hash_algo": claimed.hash_algo,
                                "os_hash_value": claimed.hash_value})
        if not verify:
            task.status = task.status.SUCCESS
            task.result = {"image_id": image_id}

        def change(img: Image) -> None:
            self._policy.check("add_image_location", ctx, img, member, "add a location to")
            img.begin_location_import(location, size, claimed, verify)

        await self._mutate(image_id, change, tasks=[task])

    async def list(self, ctx: RequestContext, image_id: str) -> list[dict[str, Any]]:
        """`GET /v2/images/{id}/locations`: for services (and admins) only."""
        member = await membership_of(self._members, ctx, image_id)
        image = await self._repo.get(image_id)
        self._policy.check("fetch_image_location", ctx, image, member, "read the locations of")
        return [self.view(loc) for loc in image.locations]


class LocationImport:
    """The `location_import` task: hash the data at a new location and activate the image if
    the hashes match what the client said (`validation_data`); else give it back to queued."""

    def __init__(self, repo: ImageRepository, mutate: Mutator, stores: dict[str, Store],
                 settings: LocationSettings,
                 inspection: InspectionSettings | None = None,
                 size_cap: int = 1024**4,
                 certificates: CertificateStore | None = None) -> None:
        self._repo = repo
        self._mutate = mutate
        self._stores = stores
        self._settings = settings
        self._inspection = inspection or InspectionSettings()
        self._size_cap = size_cap
        self._certificates = certificates or CertificateStore("")

    @staticmethod
    def _location(task: Task) -> Location:
        return Location(str(task.input["store"]), str(task.input["key"]))

    async def run(self, task: Task) -> dict[str, object] | None:
        assert task.image_id is not None
        location = self._location(task)
        store = self._stores.get(location.store)
        if store is None:
            raise TaskFailed(f"Store {location.store!r} is not configured on this server.")
        try:
            image = await self._repo.get(task.image_id)
        except NotFound as exc:
            raise TaskFailed("The image was deleted.") from exc
        expected_algo = task.input.get("os_hash_algo")
        algo = str(expected_algo or self._settings.hashing_algorithm)
        digest: Digest | None = None
        for attempt in range(1, max(1, self._settings.http_retries) + 1):
            try:
                digest = await self._hash(store, location.key, algo, image)
                break
            except (RefusedData, TooLarge, Invalid) as exc:
                raise TaskFailed(f"The data at the location was refused: {exc.message}") \
                    from exc
            except ObjectNotFound as exc:
                raise TaskFailed(f"No data at the location: {exc.message}") from exc
            except StoreError as exc:
                log.warning("task %s: reading %s failed (attempt %d): %s", task.id,
                            location.key, attempt, exc.message)
                if attempt == self._settings.http_retries:
                    raise TaskFailed(f"The data at the location could not be read: "
                                     f"{exc.message}") from exc
        assert digest is not None
        expected = task.input.get("os_hash_value")
        if expected is not None and expected != digest.hash_value:
            raise TaskFailed(f"The {algo} hash of the data at the location "
                             f"({digest.hash_value}) does not match the os_hash_value given in "
                             f"validation_data ({expected}).")

        def change(image: Image) -> None:
            image.finish_location_import(location, digest)

        try:
            await self._mutate(task.image_id, change)
        except (Conflict, NotFound) as exc:
            raise TaskFailed(f"The image can no longer be activated: {exc}") from exc
        return {"image_id": task.image_id}

    async def _hash(self, store: Store, key: str, algo: str, image: Image) -> Digest:
        """Stream the location's data through the pipeline: hashed, inspected and, for a
        signed image, verified."""
        md5, other = Hasher("md5"), Hasher(algo)
        inspection = FormatInspection(image.disk_format, image.container_format,
                                      self._inspection)
        signature = await to_thread.run_sync(SignatureVerification.for_image, image.properties,
                                             self._certificates)
        stages: list[Stage] = [md5, other, inspection, *([signature] if signature else [])]
        reader = await store.open_reader(key)
        try:
            size = await stream(reader.chunks(), stages, None, Bounds(self._size_cap))
        finally:
            await reader.aclose()
        inspected = await to_thread.run_sync(inspection.finish)
        if signature is not None:
            await to_thread.run_sync(signature.finish)
        return Digest(size, md5.hexdigest(), algo, other.hexdigest(), inspected.virtual_size)

    async def failed(self, task: Task, message: str) -> None:
        if task.image_id is None:
            return
        location = self._location(task)

        def change(image: Image) -> None:
            image.fail_location_import(location)

        with contextlib.suppress(Conflict, NotFound):  # deleted, or no longer waiting for it
            await self._mutate(task.image_id, change)


def _check_length(claimed: Claimed) -> None:
    algo, value = claimed.hash_algo, claimed.hash_value
    if algo is not None and value is not None and len(value) != ALGORITHMS[algo]:
        raise Invalid(f"validation_data os_hash_value must be {ALGORITHMS[algo]} hexadecimal "
                      f"digits for {algo}.")


def _position(path: str, length: int, insert: bool = False) -> int:
    segments = patch.decode_pointer(path)
    if len(segments) != 2:
        raise Invalid(f"A location path is `/locations/N`{' or `/locations/-`' * insert}.")
    index = segments[1]
    if index == "-" and insert:
        return length
    if not index.isascii() or not index.isdigit() or (len(index) > 1 and index[0] == "0"):
        raise Invalid(f"Invalid location position {index[:16]!r}.")
    return int(index)


def _shown(url: str) -> str:
    """The URL for messages: without credentials (`user:pass@`) or query (signed URLs carry
    tokens there), at most 120 characters."""
    url = url.split("?", 1)[0]
    scheme, sep, rest = url.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            authority = "***@" + authority.rsplit("@", 1)[1]
        url = f"{scheme}{sep}{authority}{slash}{path}"
    return url if len(url) <= 120 else url[:117] + "..."


