"""Access terms (`domain.access`) compiled to SQL conditions on `images` rows."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, false, or_, true

from glimpse.domain.access import AllOf, AnyOf, MemberOf, OwnedBy, Term, VisibilityIn
from glimpse.registry.tables import image_members, images


def access_clause(term: Term) -> ColumnElement[bool]:
    """`term` as a condition on `images` rows: the SQL twin of `domain.access.holds`."""
    match term:
        case OwnedBy(project):
            return images.c.owner == project
        case VisibilityIn(visibilities):
            if not visibilities:
                return false()
            return images.c.visibility.in_(sorted(v.value for v in visibilities))
        case MemberOf(project, statuses):
            if not statuses:
                return false()
            return exists().where(
                image_members.c.image_id == images.c.id,
                image_members.c.member == project,
                image_members.c.status.in_(sorted(s.value for s in statuses)),
            )
        case AnyOf(terms):
            return or_(*(access_clause(t) for t in terms)) if terms else false()
        case AllOf(terms):
            return and_(*(access_clause(t) for t in terms)) if terms else true()
    raise TypeError(f"not an access term: {term!r}")
