"""Downloading image data: access and status checks, ranges, the first location that works."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Forbidden, NotFound, RangeNotSatisfiable
from glimpse.domain.images import Image, ImageStatus
from glimpse.domain.ports import ImageRepository, MemberRepository
from glimpse.services.members import membership
from glimpse.services.policy import Policy
from glimpse.services.ranges import ByteRange, parse_content_range, parse_range
from glimpse.stores.base import Reader, Store
from glimpse.stores.errors import InvalidRange, ObjectNotFound, StoreError, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Download:
    """An opened download. `reader` is None when the image has no data (HTTP 204)."""

    image: Image
    reader: Reader | None
    range: ByteRange | None = None


class DownloadService:
    def __init__(self, repo: ImageRepository, members: MemberRepository, policy: Policy,
                 stores: dict[str, Store]) -> None:
        self._repo = repo
        self._members = members
        self._policy = policy
        self._stores = stores

    async def open(
        self,
        ctx: RequestContext,
        image_id: str,
        range_header: str | None = None,
        content_range_header: str | None = None,
    ) -> Download:
        """Check access, resolve the range and open a reader before any byte is sent."""
        image = await self._repo.get(image_id)
        member = await membership(self._members, ctx, image)
        self._policy.check("download_image", ctx, image, member, "download")
        if image.status == ImageStatus.DEACTIVATED and not ctx.is_admin:
            raise Forbidden("The requested image has been deactivated. "
                            "Image data download is forbidden.")
        if image.status not in (ImageStatus.ACTIVE, ImageStatus.DEACTIVATED):
            return Download(image, None)
        locations = image.readable_locations
        if not locations or image.size is None:
            return Download(image, None)
        byte_range = None
        if range_header:
            byte_range = parse_range(range_header, image.size)
        elif content_range_header:
            byte_range = parse_content_range(content_range_header, image.size)
        offset = byte_range.start if byte_range else 0
        length = byte_range.length if byte_range else None
        failures: list[str] = []
        unavailable: StoreError | None = None
        for location in locations:
            store = self._stores.get(location.store)
            if store is None:
                failures.append(f"store {location.store!r} is not configured")
                continue
            try:
                reader = await store.open_reader(location.key, offset, length)
            except InvalidRange as exc:
                raise RangeNotSatisfiable(exc.message, image.size) from exc
            except ObjectNotFound as exc:
                failures.append(f"{location.store}: {exc.message}")
                continue
            except StoreError as exc:  # the store is down or refuses: try the next location
                failures.append(f"{location.store}: {exc.message}")
                unavailable = exc
                continue
            if failures:
                log.warning("image %s: read from store %r after: %s", image_id, location.store,
                            "; ".join(failures))
            return Download(image, reader, byte_range)
        log.error("image %s: no readable location: %s", image_id, "; ".join(failures))
        if unavailable is not None:  # a store that is down is not data that is missing
            raise StoreUnavailable(f"Image data for {image_id} cannot be read now: the store "
                                   f"{unavailable.store_id!r} is unavailable.",
                                   unavailable.store_id)
        raise NotFound(f"Image data for {image_id} could not be found in any store.")
