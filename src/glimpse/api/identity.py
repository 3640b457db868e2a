"""Who is calling: the authentication modes behind one `Authenticator` contract.

- `noauth` (`NoAuth`): no credentials; the `X-Project-Id`/`X-Tenant-Id`, `X-User-Id` and
  `X-Roles` headers narrow an admin of `default_project`, as Glance's unauthenticated context.
- `keystone` (`glimpse.api.keystone`): `X-Auth-Token` validated by keystonemiddleware.
- `tokens` (`glimpse.api.tokens`): API tokens from the token file (`glimpse token ...`).

In the two modes that check credentials, identity headers sent by the client are never read:
the context is made only from what the credentials prove. Only `PUBLIC_PATHS` answer without
credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol
from urllib.parse import unquote

from glimpse.api.inputs import identity_problem
from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Invalid

#: A request's headers as the ASGI scope holds them (lower-case names).
RawHeaders = Iterable[tuple[bytes, bytes]]

#: Paths (after version prefixes are mapped) served to anyone: the versions documents and the
#: health check, as Glance serves them before keystonemiddleware runs.
PUBLIC_PATHS = frozenset({"/", "/versions", "/healthcheck"})

_ALL_ROLES = frozenset({"admin", "member", "reader"})


class Authenticator(Protocol):
    """Turns a request's credentials into its `RequestContext`.

    `authenticate` returns the context (with `request_id`) or raises `errors.Unauthenticated`
    (401 with the mode's challenge: no credentials, or ones that do not validate),
    `errors.IdentityUnavailable` (503: they cannot be checked now), or `domain.Invalid` (400: a
    malformed identity header in noauth mode). It never blocks the event loop.
    `requires_credentials` is False only for noauth. `close` releases threads and files.
    """

    requires_credentials: bool

    async def authenticate(self, headers: RawHeaders, request_id: str) -> RequestContext: ...

    def close(self) -> None: ...


def anonymous(request_id: str) -> RequestContext:
    """The context of a request to a public path in a mode that checks credentials."""
    return RequestContext(project_id=None, request_id=request_id)


def header(headers: RawHeaders, name: bytes) -> str | None:
    """The first value of header `name` (lower-case), decoded as latin-1, or None."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def presented_token(headers: RawHeaders) -> str | None:
    """The token the client sent: `X-Auth-Token`, else `Authorization: Bearer <token>`."""
    token = header(headers, b"x-auth-token")
    if token is None:
        authorization = header(headers, b"authorization")
        if authorization is not None:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                token = value
    token = token.strip() if token is not None else None
    return token or None


def roles_of(value: str | None) -> frozenset[str]:
    """Comma-separated role names, lower-cased, blanks dropped."""
    if not value:
        return frozenset()
    return frozenset(r.strip().lower() for r in value.split(",") if r.strip())


def _decoded(headers: RawHeaders, name: bytes) -> str | None:
    """An identity header's value with percent-escapes decoded: python-glanceclient sends its
    `identity_headers` quoted (`X-Roles: member%2Creader`). What the escapes decode to must be
    printable ASCII as well."""
    value = header(headers, name)
    if value is None or "%" not in value:
        return value
    decoded = unquote(value)
    if not (decoded.isascii() and decoded.isprintable()):
        shown = "-".join(part.capitalize() for part in name.decode().split("-"))
        raise Invalid(f"Invalid value for header {shown}: only printable ASCII characters "
                      "are allowed (after percent-decoding).")
    return decoded


class NoAuth:
    """No credentials: every request is an admin of `default_project` unless `X-Project-Id`
    (or `X-Tenant-Id`) and `X-Roles` narrow it. Only for loopback (see `config`)."""

    requires_credentials = False

    def __init__(self, default_project: str) -> None:
        self._default_project = default_project

    async def authenticate(self, headers: RawHeaders, request_id: str) -> RequestContext:
        headers = list(headers)
        problem = identity_problem(headers)
        if problem is not None:  # these headers become data: refused before anything runs
            raise Invalid(problem)
        roles_header = _decoded(headers, b"x-roles")
        roles = roles_of(roles_header) if roles_header is not None else _ALL_ROLES
        project = (_decoded(headers, b"x-project-id") or _decoded(headers, b"x-tenant-id")
                   or self._default_project)
        return RequestContext(project_id=project, roles=roles,
                              user_id=_decoded(headers, b"x-user-id"), request_id=request_id)

    def close(self) -> None:
        pass
