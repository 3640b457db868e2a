"""Image metadata use cases: create, show, list, update (JSON patch), delete, (de)activate, tags."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Forbidden, Invalid, NotFound, TooLarge
from glimpse.domain.images import Image, Location, Visibility
from glimpse.domain.ports import ImageRepository, MemberRepository
from glimpse.services import patch
from glimpse.services.locations import LocationService
from glimpse.services.members import membership, membership_of
from glimpse.services.mutations import Mutator
from glimpse.services.policy import Policy
from glimpse.services.protections import UNPROTECTED, PropertyAccess, PropertyRules
from glimpse.services.query import parse_list_params
from glimpse.services.quotas import QuotaService
from glimpse.services.schemas import Schemas
from glimpse.services.views import BASE_KEYS, editable_copy
from glimpse.services.visibility import listed

#: Refused in a create body: attributes only the server sets.
CREATE_FORBIDDEN = frozenset({"direct_url", "self", "file", "schema", "stores", "locations"})
CREATE_READ_ONLY = frozenset({"created_at", "updated_at", "status", "checksum", "size",
                              "virtual_size", "os_hash_algo", "os_hash_value"})


@dataclass(frozen=True)
class Limits:
    property_quota: int = 128
    tag_quota: int = 128
    default_page: int = 25
    max_page: int = 1000


@dataclass(frozen=True)
class Page:
    images: list[Image]
    #: Whether the page was full, so that a next page may exist.
    full: bool


def _now() -> datetime:
    return datetime.now(UTC)


class ImageService:
    def __init__(
        self,
        repo: ImageRepository,
        members: MemberRepository,
        mutate: Mutator,
        policy: Policy,
        schemas: Schemas,
        limits: Limits,
        clock: Callable[[], datetime] = _now,
        protections: PropertyRules = UNPROTECTED,
        quotas: QuotaService | None = None,
        locations: LocationService | None = None,
    ) -> None:
        self._repo = repo
        self._locations = locations
        self._quotas = quotas
        self._protections = protections
        self._members = members
        self.mutate = mutate
        self._policy = policy
        self._schemas = schemas
        self._limits = limits
        self._clock = clock

    # -- reads --------------------------------------------------------------------------------

    def access(self, ctx: RequestContext) -> PropertyAccess:
        """What `ctx` may do to extra properties: the views of its images leave out those it
        may not read (`views.image_document(image, access)`)."""
        return self._protections.access(ctx)

    async def get(self, ctx: RequestContext, image_id: str) -> Image:
        image = await self._repo.get(image_id)
        self._policy.check_visible(ctx, image, await membership(self._members, ctx, image))
        return image

    async def find(self, ctx: RequestContext, params: Sequence[tuple[str, str]]) -> Page:
        self._policy.check_list(ctx)
        listing = parse_list_params(params, self._limits.default_page, self._limits.max_page)
        access = listed(ctx, listing.visibility, listing.member_status)
        query = dataclasses.replace(listing.query, access=access)
        images = await self._repo.find(query)
        return Page(images, full=len(images) == query.limit and query.limit > 0)

    # -- create -------------------------------------------------------------------------------

    async def create(self, ctx: RequestContext, body: dict[str, Any]) -> Image:
        for key in body:
            if key in CREATE_FORBIDDEN:
                raise Forbidden(f"Attribute '{key}' is reserved.")
            if key in CREATE_READ_ONLY:
                raise Forbidden(f"Attribute '{key}' is read-only.")
            if key in patch.RESERVED or key.startswith(patch.RESERVED_PREFIX):
                raise Forbidden(f"Attribute '{key}' is reserved.")
            if len(key) > 255:
                raise Invalid(f"Property name is longer than 255 characters: {key[:32]}...")
        self._schemas.validate_image(body)
        now = self._clock().replace(microsecond=0)  # Glance shows and filters whole seconds
        owner = body.get("owner", ctx.project_id)
        self._policy.check_create(ctx, owner)
        self._policy.check_owner_change(ctx, owner)
        visibility = body.get("visibility", Visibility.SHARED.value)
        self._policy.check_visibility(ctx, visibility, owner)
        image = Image(id=body.get("id") or str(uuid.uuid4()), owner=owner, created_at=now,
                      updated_at=now)
        document = editable_copy(image).document
        document.update(body)
        document["owner"] = owner
        self._load_document(image, document)
        access = self.access(ctx)
        for name in image.properties:
            access.check("create", name)
        # image_count_total is counted exactly, in the insert's transaction.
        limits = await self._quotas.limits(image.owner) if self._quotas is not None else None
        return await self._repo.add(image, limits)

    # -- update -------------------------------------------------------------------------------

    async def update(
        self, ctx: RequestContext, image_id: str, media_type: str, body: Any
    ) -> Image:
        changes = patch.parse(media_type, body)
        member = await membership_of(self._members, ctx, image_id)
        access = self.access(ctx)
        # Location operations look their stores up first; the rest edit the document.
        moves = [c for c in changes if patch.decode_pointer(c.path)[0] == "locations"]
        if moves and self._locations is None:
            raise Forbidden("Image locations cannot be changed through this API.")
        resolved = await self._locations.prepare(moves) if self._locations and moves else []

        def change(image: Image) -> list[Location]:
            self._policy.check("modify_image", ctx, image, member, "modify")
            editable = editable_copy(image, access)
            document = editable.document
            for item in changes:
                if item not in moves:
                    patch.apply(document, item, editable.guard)
            self._schemas.validate_image(document)
            if document["owner"] != image.owner:
                self._policy.check_owner_change(ctx, document["owner"])
            if document["visibility"] != image.visibility:
                self._policy.check_visibility(ctx, document["visibility"], image.owner)
            for name in ("disk_format", "container_format"):
                if document[name] != getattr(image, name) and not image.formats_changeable:
                    raise Forbidden(f"Attribute {name} can be only replaced for a queued image.")
            self._load_document(image, document, editable.hidden)
            if not resolved:
                return []
            assert self._locations is not None
            return self._locations.apply(image, resolved, ctx, member)

        return await self.mutate(image_id, change)

    def _load_document(self, image: Image, document: dict[str, Any],
                       hidden: dict[str, str] | None = None) -> None:
        """Copy a validated document's settable attributes and extra properties into `image`,
        with the `hidden` properties (those the caller may not read) kept as they were."""
        image.name = document["name"]
        image.visibility = Visibility(document["visibility"])
        image.protected = document["protected"]
        image.os_hidden = document["os_hidden"]
        image.disk_format = document["disk_format"]
        image.container_format = document["container_format"]
        image.min_disk = document["min_disk"]
        image.min_ram = document["min_ram"]
        image.owner = document["owner"]
        image.tags = set(document["tags"])
        # Extra properties are strings; null (which the schema allows for kernel_id and
        # ramdisk_id) removes one.
        image.properties = {
            k: v for k, v in document.items() if k not in BASE_KEYS and v is not None
        }
        image.properties.update(hidden or {})
        if len(image.properties) > self._limits.property_quota:
            raise TooLarge(f"Maximum number of properties exceeded: "
                           f"{self._limits.property_quota}")
        if len(image.tags) > self._limits.tag_quota:
            raise TooLarge(f"Maximum number of tags exceeded: {self._limits.tag_quota}")

    # -- status actions -----------------------------------------------------------------------

    async def deactivate(self, ctx: RequestContext, image_id: str) -> Image:
        member = await membership_of(self._members, ctx, image_id)

        def change(image: Image) -> None:
            self._policy.check("deactivate", ctx, image, member, "deactivate")
            image.deactivate()

        return await self.mutate(image_id, change)

    async def reactivate(self, ctx: RequestContext, image_id: str) -> Image:
        member = await membership_of(self._members, ctx, image_id)

        def change(image: Image) -> None:
            self._policy.check("reactivate", ctx, image, member, "reactivate")
            image.reactivate()

        return await self.mutate(image_id, change)

    async def delete(self, ctx: RequestContext, image_id: str) -> None:
        """Mark the image deleted; its data goes through recorded deletion jobs (`Cleanup`)."""

        member = await membership_of(self._members, ctx, image_id)

        def change(image: Image) -> Iterable[Location]:
            self._policy.check("delete_image", ctx, image, member, "delete")
            return image.delete()

        await self.mutate(image_id, change)

    async def delete_from_store(self, ctx: RequestContext, store_id: str, image_id: str) -> None:
        """Remove the image's data from one store (`DELETE /v2/stores/{store}/{id}`): the
        location goes, its data through a deletion job; the last location never goes."""
        member = await membership_of(self._members, ctx, image_id)

        def change(image: Image) -> Iterable[Location]:
            self._policy.check("delete_image_location", ctx, image, member,
                               "delete a location of")
            return image.drop_store(store_id)

        await self.mutate(image_id, change)

    # -- tags ---------------------------------------------------------------------------------

    async def add_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        if len(tag) > 255 or not tag:
            raise Invalid("Tags must be between 1 and 255 characters long.")
        member = await membership_of(self._members, ctx, image_id)

        def change(image: Image) -> None:
            self._policy.check("modify_image", ctx, image, member, "modify")
            image.tags.add(tag)
            if len(image.tags) > self._limits.tag_quota:
                raise TooLarge(f"Maximum number of tags exceeded: {self._limits.tag_quota}")

        await self.mutate(image_id, change)

    async def delete_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        member = await membership_of(self._members, ctx, image_id)

        def change(image: Image) -> None:
            self._policy.check("modify_image", ctx, image, member, "modify")
            if tag not in image.tags:
                raise NotFound(f"Tag {tag} not found on image {image_id}.")
            image.tags.discard(tag)

        await self.mutate(image_id, change)
