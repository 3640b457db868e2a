"""Who may do what to an image: Glance's rules (`services.rules`), enforced by oslo.policy.

Every check goes through one `Policy`. An image the caller may not see does not exist for it
(404, for every action); one it may see but not act on is 403. Seeing is the access term of
`services.visibility` (the same definition listings compile to SQL) and the `get_image` rule.

Roles imply others as Keystone's defaults do (admin → member → reader), so a caller named only
`member` (by a token file or `X-Roles`) may read what members read; Keystone's own tokens carry
the implied roles already.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oslo_config import cfg
from oslo_policy import opts as policy_opts
from oslo_policy import policy as oslo

from glimpse.domain.access import holds
from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Forbidden, Invalid, NotFound
from glimpse.domain.images import Image, Visibility
from glimpse.domain.members import MemberStatus
from glimpse.services.rules import RULES
from glimpse.services.visibility import readable

#: Roles each role implies (Keystone's default implied roles).
IMPLIED = {"admin": ("member", "reader"), "member": ("reader",)}
#: Every Glance rule is for project or system scope.
SCOPES = ["system", "project"]


def expanded(roles: frozenset[str]) -> list[str]:
    """`roles` with the roles they imply."""
    out = set(roles)
    for role in roles:
        out.update(IMPLIED.get(role, ()))
    return sorted(out)


class PolicyFileError(ValueError):
    """The operator's policy file cannot be read or names a rule in a broken way."""


class Policy:
    def __init__(self, policy_file: str | Path | None = None) -> None:
        conf = cfg.ConfigOpts()
        # A private configuration: no config files, no search path, only the operator's file.
        path = str(policy_file) if policy_file else "/nonexistent/glimpse-policy.yaml"
        policy_opts.set_defaults(conf, policy_file=path)
        conf([], project="glimpse", default_config_files=[], default_config_dirs=[])
        self._enforcer = oslo.Enforcer(conf, use_conf=True)
        self._enforcer.register_defaults([
            oslo.RuleDefault(name, check, description=what, scope_types=SCOPES)
            for name, (check, what) in RULES.items()
        ])
        if policy_file is not None:
            if not Path(policy_file).is_file():
                raise PolicyFileError(f"policy file {policy_file} does not exist")
            try:
                self._enforcer.load_rules()
            except Exception as exc:  # oslo.policy raises several kinds for a broken file
                raise PolicyFileError(f"policy file {policy_file}: {exc}") from exc

    # -- the primitive ----------------------------------------------------------------------------

    def allows(self, rule: str, ctx: RequestContext, target: Mapping[str, Any]) -> bool:
        creds = {"roles": expanded(ctx.roles), "project_id": ctx.project_id,
                 "user_id": ctx.user_id}
        return bool(self._enforcer.enforce(rule, dict(target), creds))

    @staticmethod
    def target(ctx: RequestContext, image: Image,
               membership: MemberStatus | None) -> dict[str, Any]:
        return {
            "project_id": image.owner,
            "owner": image.owner,
            "visibility": image.visibility.value,
            "member_id": ctx.project_id if membership is not None else None,
        }

    # -- images -----------------------------------------------------------------------------------

    def can_see(self, ctx: RequestContext, image: Image,
                membership: MemberStatus | None = None) -> bool:
        members = {ctx.project_id: membership} if ctx.project_id and membership else {}
        return holds(readable(ctx), image, members) and self.allows(
            "get_image", ctx, self.target(ctx, image, membership))

    def check_visible(self, ctx: RequestContext, image: Image,
                      membership: MemberStatus | None = None) -> None:
        """Images the caller may not see do not exist for it (404)."""
        if not self.can_see(ctx, image, membership):
            raise NotFound(f"No image found with ID {image.id}")

    def check(self, rule: str, ctx: RequestContext, image: Image,
              membership: MemberStatus | None = None, doing: str = "") -> None:
        """404 unless `ctx` may see `image`, then 403 unless `rule` allows it."""
        self.check_visible(ctx, image, membership)
        if not self.allows(rule, ctx, self.target(ctx, image, membership)):
            raise Forbidden(f"You are not permitted to {doing or rule} image {image.id}.")

    def check_rule(self, rule: str, ctx: RequestContext, doing: str) -> None:
        """403 unless `rule` allows `ctx` (a rule about no image: tasks, for one)."""
        if not self.allows(rule, ctx, {"project_id": ctx.project_id}):
            raise Forbidden(f"You are not permitted to {doing}.")

    def check_list(self, ctx: RequestContext) -> None:
        if not self.allows("get_images", ctx, {"project_id": ctx.project_id}):
            raise Forbidden("You are not permitted to list images.")

    def check_create(self, ctx: RequestContext, owner: str | None) -> None:
        if not self.allows("add_image", ctx, {"project_id": owner, "owner": owner}):
            raise Forbidden("You are not permitted to create images"
                            + ("" if owner == ctx.project_id else " owned by another project")
                            + ".")

    def check_visibility(self, ctx: RequestContext, visibility: str,
                         owner: str | None) -> None:
        """Setting `visibility` (on create or change): public needs `publicize_image`, community
        `communitize_image`."""
        target = {"project_id": owner, "owner": owner, "visibility": visibility}
        if visibility == Visibility.PUBLIC and not self.allows("publicize_image", ctx, target):
            raise Forbidden("You are not permitted to publicize images (admin only).")
        if visibility == Visibility.COMMUNITY and not self.allows("communitize_image", ctx,
                                                                   target):
            raise Forbidden("You are not permitted to make images community images.")

    @staticmethod
    def check_owner_change(ctx: RequestContext, owner: str | None) -> None:
        if not ctx.is_admin and owner != ctx.project_id:
            raise Forbidden("Owner can't be updated by non admin.")

    @staticmethod
    def check_member_id(member_id: object) -> str:
        if not isinstance(member_id, str) or not member_id or len(member_id) > 255:
            raise Invalid("Member must be a project id of 1 to 255 characters.")
        return member_id
