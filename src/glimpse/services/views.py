"""Images as the API documents them, per caller: the JSON object a client reads
(`image_document`) and the copy a JSON patch edits (`editable_copy`).

Both leave out the extra properties the caller may not read (`services.protections`). The
editable copy keeps them aside (`EditableImage.hidden`), so a patch can neither see nor change
them, and they are stored again untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from glimpse.domain.errors import Forbidden
from glimpse.domain.images import Image
from glimpse.services.protections import UNRESTRICTED, Operation, PropertyAccess

#: Keys that are attributes of the image rather than extra properties.
BASE_KEYS = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
    "os_hash_value", "owner", "size", "virtual_size", "container_format", "disk_format",
    "created_at", "updated_at", "tags", "min_ram", "min_disk", "self", "file", "schema",
    "direct_url", "locations", "stores",
})


def isotime(value: datetime) -> str:
    """`YYYY-MM-DDThh:mm:ssZ`, as Glance shows every timestamp."""
    text = value.astimezone(UTC).isoformat(timespec="seconds")
    return text[:-6] + "Z"  # "+00:00" → "Z"


def image_document(image: Image, access: PropertyAccess = UNRESTRICTED) -> dict[str, Any]:
    """The image as the caller of `access` sees it: base attributes, links, and the extra
    properties it may read (all of them by default, as without protections)."""
    return _document(image, access.readable(image.properties))


@dataclass(frozen=True)
class EditableImage:
    """The copy of an image one caller's patch edits.

    `document` is what that caller sees (`image_document`), which the patch changes in place;
    `hidden` holds the properties it may not read, which to the patch do not exist: replacing or
    removing one is a 409 as for an absent property, adding one is refused (it would overwrite a
    value the caller cannot see). `guard` is the check `patch.apply` runs before each change of
    an extra property.
    """

    document: dict[str, Any]
    hidden: dict[str, str]
    access: PropertyAccess

    def guard(self, operation: Operation, name: str) -> None:
        if operation == "create" and name in self.hidden:
            # Glance lets a caller who may create but not read a property overwrite it;
            # reading is a condition of updating, so this is refused as an update.
            raise Forbidden(f"Property '{name}' is protected: you are not permitted to "
                            "update it.")
        self.access.check(operation, name)


def editable_copy(image: Image, access: PropertyAccess = UNRESTRICTED) -> EditableImage:
    """The copy of `image` that a patch by the caller of `access` may edit."""
    return EditableImage(_document(image, access.readable(image.properties)),
                         access.hidden(image.properties), access)


def _document(image: Image, properties: Mapping[str, str]) -> dict[str, Any]:
    image_id = image.id
    return {
        **properties,
        "id": image_id,
        "name": image.name,
        "status": image.status.value,
        "visibility": image.visibility.value,
        "protected": image.protected,
        "os_hidden": image.os_hidden,
        "checksum": image.checksum,
        "os_hash_algo": image.os_hash_algo,
        "os_hash_value": image.os_hash_value,
        "owner": image.owner,
        "size": image.size,
        "virtual_size": image.virtual_size,
        "container_format": image.container_format,
        "disk_format": image.disk_format,
        "created_at": isotime(image.created_at),
        "updated_at": isotime(image.updated_at),
        "tags": sorted(image.tags),
        "min_ram": image.min_ram,
        "min_disk": image.min_disk,
        "self": f"/v2/images/{image_id}",
        "file": f"/v2/images/{image_id}/file",
        "schema": "/v2/schemas/image",
    }
