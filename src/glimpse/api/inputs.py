"""The validation edge: body, path and header values checked before the services see them.

Every check answers 4xx with a message that names what is wrong and where:
- decoded JSON bodies: at most `MAX_JSON_DEPTH` levels; every string, keys included, storable text
  (`bounds.check_text`): 400;
- path values: an image id that is not exactly a UUID is 404, as Glance answers for an id it
  does not know, before any database call; a tag is checked as text: 400;
- headers that become data (project, user, roles): printable ASCII of bounded length: 400;
- integer headers: ASCII digits within the column range: 400.
Query parameters are parsed and bounded by the services (`services.query`), which are pure.
The bounds themselves live in `glimpse.services.bounds`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request

from glimpse.api.errors import ApiError
from glimpse.domain.errors import Invalid, NotFound
from glimpse.services.bounds import (
    MAX_IDENTITY_LENGTH,
    MAX_JSON_DEPTH,
    check_text,
    is_uuid,
    shown,
    text_problem,
)

#: Request headers whose values become data (owner, roles) or identity.
IDENTITY_HEADERS = {
    b"x-project-id": "X-Project-Id",
    b"x-tenant-id": "X-Tenant-Id",
    b"x-user-id": "X-User-Id",
    b"x-roles": "X-Roles",
}


def _where(path: list[str | int]) -> str:
    return "'" + "/".join(shown(str(p), 48) for p in path) + "'"


def check_document(document: Any) -> Any:
    """`document` (decoded JSON) unchanged, if it nests at most `MAX_JSON_DEPTH` levels and
    every string in it, object keys included, is storable text; otherwise `Invalid`.

    Walks with an explicit stack, so no input depth can exhaust the interpreter's.
    """
    stack: list[tuple[Any, list[str | int]]] = [(document, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            check_text(_where(path) if path else "the request body", value)
            continue
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_JSON_DEPTH:
            raise Invalid(f"JSON request body nests deeper than {MAX_JSON_DEPTH} levels.")
        if isinstance(value, dict):
            for key, item in value.items():
                problem = text_problem(key)
                if problem is not None:
                    raise Invalid(f"Invalid name {_where([*path, key])}: {problem}.")
                stack.append((item, [*path, key]))
        else:
            stack.extend((item, [*path, i]) for i, item in enumerate(value))
    return document


def image_id(request: Request) -> str:
    """The `{id}` path value: exactly a UUID, else 404 without asking the registry."""
    value: str = request.path_params["id"]
    if not is_uuid(value):
        raise NotFound(f"No image found with ID {shown(value)}")
    return value


def tag(request: Request) -> str:
    """The `{tag}` path value, checked as text (its length is the service's rule).

    The server decodes percent-escapes that are not UTF-8 (`%FF`) to U+FFFD; such a path is
    refused rather than stored as a different tag than the client sent."""
    value: str = request.path_params["tag"]
    if "\ufffd" in value:
        try:
            unquote_to_bytes(request.scope.get("raw_path", b"")).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid("Invalid value for the tag: the path is not valid UTF-8.") from exc
    return check_text("the tag", value)


def identity_problem(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a header that becomes identity or data is refused, or None: each must be printable
    ASCII (no NUL, no control characters, no bytes past 0x7e) and at most
    `MAX_IDENTITY_LENGTH` characters long (roles: each role)."""
    for key, raw in headers:
        name = IDENTITY_HEADERS.get(key)
        if name is None:
            continue
        if not all(0x20 <= b <= 0x7E for b in raw):
            return (f"Invalid value for header {name}: only printable ASCII characters are "
                    "allowed.")
        parts = raw.split(b",") if key == b"x-roles" else [raw]
        if any(len(p.strip()) > MAX_IDENTITY_LENGTH for p in parts):
            return (f"Invalid value for header {name}: longer than {MAX_IDENTITY_LENGTH} "
                    "characters.")
    return None


def header_integer(request: Request, name: str, maximum: int) -> int | None:
    """An optional non-negative integer header: ASCII digits only, at most `maximum`; 400
    otherwise (no header or an empty one: None)."""
    raw = request.headers.get(name)
    if raw is None or raw.strip() == "":
        return None
    digits = raw.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise ApiError(400, f"{name} must be a non-negative integer, not {shown(raw)!r}.")
    # Compared as text first: int() of thousands of digits is slow and then refused anyway.
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(maximum)) or int(significant) > maximum:
        raise ApiError(400, f"{name} must be at most {maximum}, not {shown(digits, 32)}.")
    return int(significant)
