"""Who is asking: the request context every service call carries."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    """The caller's identity as established at the API edge (`glimpse.api.identity`).

    `project_id` is the project the caller acts for (the owner of what it creates; None for an
    anonymous or a domain-scoped caller); `roles` are lower-cased role names. `is_admin` follows
    from the roles, never from a separate flag.

    In keystone mode every field comes from the validated token: the user and its domain, the
    project and its domain (or, for a token scoped otherwise, `domain_id` or `system_scope`,
    e.g. "all", with `project_id` None), and `service_roles`, the lower-cased roles of a valid
    service token sent with the request (`X-Service-Token`; empty without one). `auth_token` is
    the caller's token as it sent it, for calls made on its behalf (e.g. to another Glance); it
    is never shown in `repr`. In tokens mode user, project and roles come from the token file;
    in noauth mode from the `X-*` headers. `authenticated` says whether credentials were checked.
    """

    project_id: str | None
    roles: frozenset[str] = field(default_factory=frozenset)
    user_id: str | None = None
    request_id: str = ""
    user_domain_id: str | None = None
    project_domain_id: str | None = None
    service_roles: frozenset[str] = field(default_factory=frozenset)
    domain_id: str | None = None
    system_scope: str | None = None
    auth_token: str | None = field(default=None, repr=False)
    authenticated: bool = False

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles
