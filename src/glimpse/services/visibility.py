"""Which images a caller may see and list, as access terms (`domain.access`), Glance's rules.

- Shown by id (`readable`): admins see every image; others their project's images, public and
  community ones, and shared ones that list their project as a member in any status (pending
  and rejected members may still show and download an image).
- Listed (`listed`): the default list holds the caller's images, public ones and shared ones
  whose membership has `member_status` (accepted unless asked); `visibility=all` adds community
  images; `visibility=X` narrows to one visibility (`private` and `shared`: the caller's own, or
  shared with it). An admin lists every image, narrowed only by `visibility`.
"""

from __future__ import annotations

from glimpse.domain.access import (
    EVERYTHING,
    AllOf,
    AnyOf,
    MemberOf,
    OwnedBy,
    Term,
    VisibilityIn,
)
from glimpse.domain.context import RequestContext
from glimpse.domain.images import Visibility
from glimpse.domain.members import MemberStatus

V = Visibility
ANY_STATUS = frozenset(MemberStatus)
_OPEN = VisibilityIn(frozenset({V.PUBLIC, V.COMMUNITY}))
_PUBLIC = VisibilityIn(frozenset({V.PUBLIC}))
_SHARED = VisibilityIn(frozenset({V.SHARED}))


def _one(visibility: Visibility) -> VisibilityIn:
    return VisibilityIn(frozenset({visibility}))


def _statuses(member_status: str) -> frozenset[MemberStatus]:
    return ANY_STATUS if member_status == "all" else frozenset({MemberStatus(member_status)})


def readable(ctx: RequestContext) -> Term:
    """The images `ctx` may show (and whose existence it may know)."""
    if ctx.is_admin:
        return EVERYTHING
    if ctx.project_id is None:
        return _OPEN
    project = ctx.project_id
    return AnyOf((OwnedBy(project), _OPEN, AllOf((_SHARED, MemberOf(project, ANY_STATUS)))))


def listed(ctx: RequestContext, visibility: str | None, member_status: str) -> Term:
    """The images a listing by `ctx` with these parameters may hold, before any filter."""
    if ctx.is_admin:
        return EVERYTHING if visibility in (None, "all") else _one(Visibility(visibility))
    if visibility == "public":
        return _PUBLIC
    if visibility == "community":
        return _one(V.COMMUNITY)
    if ctx.project_id is None:
        return _PUBLIC if visibility is None else (_OPEN if visibility == "all" else AnyOf(()))
    project = ctx.project_id
    shared_with_me = AllOf((_SHARED, MemberOf(project, _statuses(member_status))))
    if visibility is None:
        return AnyOf((OwnedBy(project), _PUBLIC, shared_with_me))
    if visibility == "all":
        return AnyOf((OwnedBy(project), _OPEN, shared_with_me))
    if visibility == "private":
        return AllOf((_one(V.PRIVATE), OwnedBy(project)))
    return AnyOf((AllOf((_SHARED, OwnedBy(project))), shared_with_me))  # shared
