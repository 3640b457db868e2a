"""Which images a caller may see: one definition, for one image and for a whole listing.

The services build an access `Term` for a caller (`services.policy`); `holds` evaluates it for
one image and the caller's memberships, and the registry compiles the same term to SQL for
listings. The two are tested against each other, so a listing can never show an image that
`GET /v2/images/{id}` would hide, nor the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from glimpse.domain.images import Image, Visibility
from glimpse.domain.members import MemberStatus


@dataclass(frozen=True)
class OwnedBy:
    """Images owned by `project`."""

    project: str


@dataclass(frozen=True)
class VisibilityIn:
    visibilities: frozenset[Visibility]


@dataclass(frozen=True)
class MemberOf:
    """Images that list `project` as a member in one of `statuses`."""

    project: str
    statuses: frozenset[MemberStatus]


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Term, ...]


@dataclass(frozen=True)
class AllOf:
    terms: tuple[Term, ...]


Term = OwnedBy | VisibilityIn | MemberOf | AnyOf | AllOf

#: Every image (`AllOf` of nothing), and none (`AnyOf` of nothing).
EVERYTHING: Term = AllOf(())
NOTHING: Term = AnyOf(())


def holds(term: Term, image: Image, memberships: Mapping[str, MemberStatus]) -> bool:
    """Whether `term` admits `image`, whose members (project → status) are `memberships`."""
    match term:
        case OwnedBy(project):
            return image.owner == project
        case VisibilityIn(visibilities):
            return image.visibility in visibilities
        case MemberOf(project, statuses):
            return memberships.get(project) in statuses
        case AnyOf(terms):
            return any(holds(t, image, memberships) for t in terms)
        case AllOf(terms):
            return all(holds(t, image, memberships) for t in terms)
    raise TypeError(f"not an access term: {term!r}")
