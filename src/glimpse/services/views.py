"""Images as the API documents them: the JSON object every client reads and the schema checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from glimpse.domain.images import Image

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


def image_document(image: Image) -> dict[str, Any]:
    image_id = image.id
    return {
        **image.properties,
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
