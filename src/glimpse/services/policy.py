"""Who may do what to an image. Glance's defaults, narrowed to what the core needs today."""

from __future__ import annotations

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Forbidden, NotFound
from glimpse.domain.images import Image, Visibility


def can_see(ctx: RequestContext, image: Image) -> bool:
    if ctx.is_admin or image.owner == ctx.project_id:
        return True
    return image.visibility in (Visibility.PUBLIC, Visibility.COMMUNITY)


def check_visible(ctx: RequestContext, image: Image) -> None:
    """Images the caller may not see do not exist for it."""
    if not can_see(ctx, image):
        raise NotFound(f"No image found with ID {image.id}")


def check_owner(ctx: RequestContext, image: Image, action: str) -> None:
    """Changes need the owner's project or an admin; a visible image says 403, else 404."""
    check_visible(ctx, image)
    if not (ctx.is_admin or (ctx.project_id is not None and image.owner == ctx.project_id)):
        raise Forbidden(f"You are not permitted to {action} image {image.id}.")


def check_visibility_change(ctx: RequestContext, visibility: str) -> None:
    if visibility == Visibility.PUBLIC and not ctx.is_admin:
        raise Forbidden("You are not permitted to publicize images (admin only).")


def check_owner_change(ctx: RequestContext, owner: str | None) -> None:
    if not ctx.is_admin and owner != ctx.project_id:
        raise Forbidden("Owner can't be updated by non admin.")
