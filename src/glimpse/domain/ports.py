"""The ports the services need from the outside: where image metadata is kept.

The byte stores' port is `glimpse.stores.base.Store`: stores know nothing of images.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from glimpse.domain.context import RequestContext
from glimpse.domain.images import Image
from glimpse.domain.query import ListQuery


class ImageRepository(Protocol):
    """Image metadata, kept with compare-and-swap saves.

    Every method is a coroutine so that an in-process SQL registry and a remote registry client
    fit the same port. Deleted images are kept as rows in status `deleted` (ids are never reused)
    but `get` and `list` treat them as absent.
    """

    async def add(self, image: Image) -> Image:
        """Insert a new image. Raises `Conflict` if the id was ever used."""
        ...

    async def get(self, image_id: str) -> Image:
        """The image, whoever owns it. Raises `NotFound` if absent or deleted."""
        ...

    async def save(self, image: Image) -> Image:
        """Store every field of `image` if the stored version still equals `image.version`.

        Returns the image with its new version and `updated_at`. Raises `StaleImage` if another
        save came first and `NotFound` if the row is gone.
        """
        ...

    async def find(self, ctx: RequestContext, query: ListQuery) -> list[Image]:
        """One page, visible to `ctx`, filtered and sorted as `query` says.

        Raises `Invalid` if `query.marker` names no image the caller can list.
        """
        ...

    async def touch_upload(self, image_id: str, upload_id: str, now: datetime) -> bool:
        """Record that `upload_id` is alive. False if it no longer holds the image."""
        ...

    async def stale_uploads(self, before: datetime) -> list[Image]:
        """Images, in `saving` or deleted meanwhile, whose upload last proved alive before
        `before` (deleted ones included: their partial data still has to go)."""
        ...
