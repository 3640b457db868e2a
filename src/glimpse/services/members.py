"""Sharing: the members of shared images, with Glance's rules on who may do what.

- Only `shared` images have members: adding one to another image is 403, listing its members
  403, showing one 404.
- The owner (or an admin) adds and removes members; a new member is `pending`.
- Only the member itself (or an admin) sets its status: pending, accepted or rejected.
- The owner sees every member; a member sees only its own membership; anyone else sees no
  image at all (404).
"""

from __future__ import annotations

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Forbidden, Invalid, NotFound
from glimpse.domain.images import Image, Visibility
from glimpse.domain.members import Member, MemberStatus
from glimpse.domain.ports import ImageRepository, MemberRepository
from glimpse.services.policy import Policy


async def membership_of(members: MemberRepository, ctx: RequestContext,
                        image_id: str) -> MemberStatus | None:
    """The caller's membership of image `image_id` (read before a change that checks it)."""
    if ctx.is_admin or ctx.project_id is None:
        return None
    found = await members.find(image_id, ctx.project_id)
    return None if found is None else found.status


async def membership(members: MemberRepository, ctx: RequestContext,
                     image: Image) -> MemberStatus | None:
    """The caller's membership of `image`, looked up only where it can matter: a shared image
    that the caller neither owns nor administers."""
    if (ctx.is_admin or ctx.project_id is None or image.owner == ctx.project_id
            or image.visibility != Visibility.SHARED):
        return None
    found = await members.find(image.id, ctx.project_id)
    return None if found is None else found.status


class MemberService:
    def __init__(self, repo: ImageRepository, members: MemberRepository, policy: Policy,
                 quota: int | None = 128) -> None:
        self._repo = repo
        self._members = members
        self._policy = policy
        self._quota = quota

    async def _image(self, ctx: RequestContext, image_id: str) -> tuple[Image, MemberStatus | None]:
        image = await self._repo.get(image_id)
        mine = await membership(self._members, ctx, image)
        self._policy.check_visible(ctx, image, mine)
        return image, mine

    def _sees_all(self, ctx: RequestContext, image: Image) -> bool:
        return ctx.is_admin or (ctx.project_id is not None and image.owner == ctx.project_id)

    async def list(self, ctx: RequestContext, image_id: str) -> list[Member]:
        image, mine = await self._image(ctx, image_id)
        if image.visibility != Visibility.SHARED:
            raise Forbidden(f"Only shared images have members (image {image_id} is "
                            f"{image.visibility}).")
        if not self._policy.allows("get_members", ctx, self._policy.target(ctx, image, mine)):
            raise Forbidden(f"You are not permitted to list the members of image {image_id}.")
        found = await self._members.of_image(image_id)
        if self._sees_all(ctx, image):
            return found
        return [m for m in found if m.member_id == ctx.project_id]

    async def get(self, ctx: RequestContext, image_id: str, member_id: str) -> Member:
        image, mine = await self._image(ctx, image_id)
        missing = NotFound(f"Member {member_id} not found on image {image_id}.")
        if image.visibility != Visibility.SHARED:
            raise missing
        if not self._sees_all(ctx, image) and member_id != ctx.project_id:
            raise missing
        if not self._policy.allows("get_member", ctx, self._policy.target(ctx, image, mine)):
            raise Forbidden(f"You are not permitted to show members of image {image_id}.")
        return await self._members.get(image_id, member_id)

    async def add(self, ctx: RequestContext, image_id: str, member_id: object) -> Member:
        project = self._policy.check_member_id(member_id)
        image, mine = await self._image(ctx, image_id)
        if not self._policy.allows("add_member", ctx, self._policy.target(ctx, image, mine)):
            raise Forbidden(f"You are not permitted to add members to image {image_id}.")
        if image.visibility != Visibility.SHARED:
            raise Forbidden(f"Only shared images can have members (image {image_id} is "
                            f"{image.visibility}).")
        return await self._members.add(image_id, project, self._quota)

    async def set_status(self, ctx: RequestContext, image_id: str, member_id: str,
                         status: object) -> Member:
        if status not in {s.value for s in MemberStatus}:
            raise Invalid(f"Status {status!r} is not one of pending, accepted, rejected.")
        image, mine = await self._image(ctx, image_id)
        if image.visibility != Visibility.SHARED:
            raise NotFound(f"Member {member_id} not found on image {image_id}.")
        target = {**self._policy.target(ctx, image, mine), "member_id": member_id}
        if not self._policy.allows("modify_member", ctx, target):
            raise Forbidden(f"You are not permitted to change the status of member {member_id} "
                            f"of image {image_id} (only the member itself may).")
        return await self._members.set_status(image_id, member_id, MemberStatus(str(status)))

    async def remove(self, ctx: RequestContext, image_id: str, member_id: str) -> None:
        image, mine = await self._image(ctx, image_id)
        if not self._policy.allows("delete_member", ctx, self._policy.target(ctx, image, mine)):
            raise Forbidden(f"You are not permitted to remove members of image {image_id}.")
        await self._members.remove(image_id, member_id)
