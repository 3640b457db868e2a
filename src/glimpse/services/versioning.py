"""The one way services change a stored image: read, change, compare-and-swap save, retry."""

from __future__ import annotations

from collections.abc import Callable

from glimpse.domain.errors import Conflict, StaleImage
from glimpse.domain.images import Image
from glimpse.domain.ports import ImageRepository

ATTEMPTS = 8


async def mutate(repo: ImageRepository, image_id: str, change: Callable[[Image], object]) -> Image:
    """Apply `change` to the newest stored image and save it if nobody saved in between.

    `change` runs again on a fresh read whenever another save won the race, so it must decide
    from the image it is given (and may raise to refuse). After `ATTEMPTS` lost races: `Conflict`.
    """
    for _ in range(ATTEMPTS):
        image = await repo.get(image_id)
        change(image)
        try:
            return await repo.save(image)
        except StaleImage:
            continue
    raise Conflict(f"Image {image_id} is being changed concurrently; try again.")
