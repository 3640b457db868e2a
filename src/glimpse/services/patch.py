"""JSON-patch updates of an image, as Glance accepts them.

Two media types: `application/openstack-images-v2.1-json-patch` (RFC 6902 subset:
`{"op", "path", "value"}`) and the older `...-v2.0-json-patch`
(`{"replace": "/name", "value": ...}`).
Only add, remove and replace exist; paths are one level deep. The rules that depend on the image
(read-only attributes, base vs extra properties, the v2.0 'add means new' rule) live in `apply`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from glimpse.domain.errors import Conflict, Forbidden, Invalid

V21 = "application/openstack-images-v2.1-json-patch"
V20 = "application/openstack-images-v2.0-json-patch"
MEDIA_TYPES = (V21, V20)
OPS = ("add", "remove", "replace")

#: Never changeable through PATCH.
READ_ONLY = frozenset({"id", "status", "checksum", "os_hash_algo", "os_hash_value", "size",
                       "virtual_size", "created_at", "updated_at", "direct_url", "self", "file",
                       "schema", "stores"})
RESERVED = frozenset({"location", "deleted", "deleted_at"})
RESERVED_PREFIX = "os_glance"
#: Base attributes a patch may set (but never remove).
EDITABLE = frozenset({"name", "visibility", "protected", "os_hidden", "disk_format",
                      "container_format", "min_disk", "min_ram", "owner", "tags"})

_MISSING: Any = object()
ChangeOp = Literal["add", "remove", "replace"]
#: Refuses (by raising) a change of an extra property: `(operation, name)`, the operation one
#: of "create", "update", "delete".
Guard = Callable[[Literal["create", "update", "delete"], str], None]


@dataclass(frozen=True)
class Change:
    op: ChangeOp
    path: str
    value: Any
    legacy: bool


def decode_pointer(pointer: str) -> list[str]:
    """Split a JSON pointer into unescaped segments, rejecting what Glance rejects."""
    if not pointer.startswith("/"):
        raise Invalid(f"Pointer `{pointer}` does not start with \"/\".")
    if pointer.endswith("/"):
        raise Invalid(f"Pointer `{pointer}` end with \"/\".")
    segments = []
    for raw in pointer[1:].split("/"):
        if raw == "":
            raise Invalid(f"Pointer `{pointer}` contains adjacent \"/\".")
        parts = raw.split("~")
        for part in parts[1:]:
            if not part or part[0] not in "01":
                raise Invalid(f"Pointer `{pointer}` contains \"~\" not part of a recognized "
                              "escape sequence.")
        segments.append(raw.replace("~1", "/").replace("~0", "~"))
    return segments


def parse(media_type: str, body: Any) -> list[Change]:
    """Changes from a decoded JSON body; `media_type` must be one of `MEDIA_TYPES`."""
    legacy = media_type == V20
    if not isinstance(body, list):
        raise Invalid("Request body must be a JSON array of operation objects.")
    changes = []
    for raw in body:
        if not isinstance(raw, dict):
            raise Invalid("Operations must be JSON objects.")
        if legacy:
            ops = [name for name in OPS if name in raw]
            if len(ops) != 1:
                raise Invalid("Operation objects must contain exactly one member named "
                              "\"add\", \"remove\", or \"replace\".")
            op: Any = ops[0]
            path = raw[op]
        else:
            op, path = raw.get("op"), raw.get("path")
            if not isinstance(op, str):
                raise Invalid("Operation objects must contain a string member named \"op\".")
            if op not in OPS:
                raise Invalid(f"Invalid operation: `{op}`.")
        if not isinstance(path, str):
            raise Invalid("Unable to find `path` in the operation, or it is not a string.")
        value = raw.get("value", _MISSING)
        if op != "remove" and value is _MISSING:
            raise Invalid(f"Operation \"{op}\" requires a member named \"value\".")
        changes.append(Change(cast(ChangeOp, op), path, value, legacy))
    return changes


def apply(document: dict[str, Any], change: Change, guard: Guard | None = None) -> None:
    """Apply one change to an image document in place, enforcing the per-attribute rules.

    Before an extra property is changed, `guard(operation, name)` may refuse it (property
    protections): "create" for an add of an absent property, "update" for an add or replace of a
    present one, "delete" for a remove, as Glance checks them. Rules that depend on the caller or
    the image status (owner, formats, visibility) are checked by the service after the whole
    patch has been applied.
    """
    segments = decode_pointer(change.path)
    name = segments[0]
    if name == "locations":
        raise Forbidden("Image locations cannot be changed through this API.")
    if len(segments) > 1:
        raise Invalid(f"Nested paths are not allowed: `{change.path}`.")
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only.")
    if name in RESERVED or name.startswith(RESERVED_PREFIX):
        raise Forbidden(f"Attribute '{name}' is reserved.")
    exists = name in document
    if change.op == "remove":
        if name in EDITABLE:
            raise Forbidden(f"Properties {name} cannot be removed.")
        if not exists:
            raise Conflict(f"Property {name} does not exist.")
        if guard is not None:
            guard("delete", name)
        del document[name]
        return
    if change.op == "add" and change.legacy and (exists or name in EDITABLE):
        raise Conflict(f"Property {name} already present.")
    if change.op == "replace" and not exists and name not in EDITABLE:
        raise Conflict(f"Property {name} does not exist.")
    if len(name) > 255:
        raise Invalid(f"Property name is longer than 255 characters: {name[:32]}...")
    if guard is not None and name not in EDITABLE:
        guard("update" if exists else "create", name)
    document[name] = change.value
