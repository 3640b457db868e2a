"""The JSON schemas served at /v2/schemas/*, which also validate every request: one truth."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft4Validator, ValidationError, validators

from glimpse.domain.errors import Invalid
from glimpse.services.bounds import INT32_MAX, INT64_MAX

UUID_PATTERN = (
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)
STATUSES = [
    "queued", "saving", "active", "killed", "deleted", "uploading", "importing",
    "pending_delete", "deactivated",
]


def _ro(kind: Any, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "readOnly": True, "description": description, **extra}


def image_schema(disk_formats: Iterable[str], container_formats: Iterable[str]) -> dict[str, Any]:
    """The `image` schema (Glance's base properties plus its default operator extras)."""
    props: dict[str, Any] = {
        "id": {"type": "string", "description": "An identifier for the image",
               "pattern": UUID_PATTERN},
        "name": {"type": ["null", "string"], "maxLength": 255,
                 "description": "Descriptive name for the image"},
        "status": _ro("string", "Status of the image", enum=STATUSES),
        "visibility": {"type": "string", "enum": ["community", "public", "private", "shared"],
                       "description": "Scope of image accessibility"},
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {"type": "boolean",
                      "description": "If true, image will not appear in default image list "
                                     "response."},
        "checksum": _ro(["null", "string"], "md5 hash of image contents.", maxLength=32),
        "os_hash_algo": _ro(["null", "string"], "Algorithm to calculate the os_hash_value",
                            maxLength=64),
        "os_hash_value": _ro(["null", "string"], "Hexdigest of the image contents using the "
                             "algorithm specified by the os_hash_algo", maxLength=128),
        "owner": {"type": ["null", "string"], "maxLength": 255,
                  "description": "Owner of the image"},
        "size": _ro(["null", "integer"], "Size of image file in bytes", maximum=INT64_MAX),
        "virtual_size": _ro(["null", "integer"], "Virtual size of image in bytes",
                            maximum=INT64_MAX),
        "container_format": {"type": ["null", "string"],
                             "enum": [None, *container_formats],
                             "description": "Format of the container"},
        "disk_format": {"type": ["null", "string"], "enum": [None, *disk_formats],
                        "description": "Format of the disk"},
        "created_at": _ro("string", "Date and time of image registration"),
        "updated_at": _ro("string", "Date and time of the last image modification"),
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 255},
                 "description": "List of strings related to the image"},
        "direct_url": _ro("string", "URL to access the image file kept in external store"),
        "min_ram": {"type": "integer", "minimum": 0, "maximum": INT32_MAX,
                    "description": "Amount of ram (in MB) required to boot image."},
        "min_disk": {"type": "integer", "minimum": 0, "maximum": INT32_MAX,
                     "description": "Amount of disk space (in GB) required to boot image."},
        "self": _ro("string", "An image self url"),
        "file": _ro("string", "An image file url"),
        "stores": _ro("string", "Store in which image data resides."),
        "schema": _ro("string", "An image schema url"),
        "locations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"url": {"type": "string", "maxLength": 255},
                               "metadata": {"type": "object"}},
                "required": ["url", "metadata"],
            },
            "description": "A set of URLs to access the image file kept in external store",
        },
    }
    uuid_or_null = {"type": ["null", "string"], "pattern": UUID_PATTERN}
    extras: dict[str, Any] = {
        "kernel_id": {**uuid_or_null, "description": "ID of image stored in Glance that should "
                      "be used as the kernel when booting an AMI-style image."},
        "ramdisk_id": {**uuid_or_null, "description": "ID of image stored in Glance that should "
                       "be used as the ramdisk when booting an AMI-style image."},
        "instance_uuid": {"type": "string", "description": "Metadata which can be used to "
                          "record which instance this image is associated with."},
        "architecture": {"type": "string", "description": "Operating system architecture"},
        "os_distro": {"type": "string", "description": "Common name of operating system "
                      "distribution"},
        "os_version": {"type": "string", "description": "Operating system version"},
        "description": {"type": "string", "description": "A human-readable string describing "
                        "this image."},
        "cinder_encryption_key_id": {"type": "string", "description": "Identifier in the "
                                     "OpenStack Key Management Service for the encryption key"},
        "cinder_encryption_key_deletion_policy": {
            "type": "string", "enum": ["on_image_deletion", "do_not_delete"],
            "description": "States the condition under which the encryption key is deleted"},
    }
    for definition in extras.values():
        definition["is_base"] = False
    return {
        "name": "image",
        "properties": {**props, **extras},
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema(image: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": copy.deepcopy(image)},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def member_schema() -> dict[str, Any]:
    return {
        "name": "member",
        "properties": {
            "created_at": {"type": "string", "description": "Date and time of image member "
                           "creation"},
            "image_id": {"type": "string", "pattern": UUID_PATTERN,
                         "description": "An identifier for the image"},
            "member_id": {"type": "string", "description": "An identifier for the image member "
                          "(tenantId)"},
            "status": {"type": "string", "enum": ["pending", "accepted", "rejected"],
                       "description": "The status of this image member"},
            "updated_at": {"type": "string", "description": "Date and time of last "
                           "modification of image member"},
            "schema": {"type": "string", "readOnly": True},
        },
    }


def members_schema() -> dict[str, Any]:
    return {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def task_schema() -> dict[str, Any]:
    """Glance's task schema (`GET /v2/schemas/task`)."""
    text = {"type": "string"}
    stamp = {"type": "string", "description": "Date and time, ISO 8601."}
    return {
        "name": "task",
        "properties": {
            "id": {"type": "string", "pattern": UUID_PATTERN,
                   "description": "An identifier for the task"},
            "type": {"type": "string", "enum": ["import", "location_import"],
                     "description": "The type of task represented by this content"},
            "status": {"type": "string",
                       "enum": ["pending", "processing", "success", "failure"],
                       "description": "The current status of this task"},
            "input": {"type": ["null", "object"], "description": "The parameters required by "
                      "task, JSON blob"},
            "result": {"type": ["null", "object"], "description": "The result of current "
                       "task, JSON blob"},
            "owner": {"type": ["null", "string"], "description": "An identifier for the owner "
                      "of this task"},
            "message": {"type": "string", "description": "Human-readable informative message "
                        "only included when appropriate (usually on failure)"},
            "image_id": {"type": ["null", "string"], "description": "Image associated with "
                         "the task"},
            "request_id": {"type": ["null", "string"], "description": "Request ID of the "
                           "call that started the task"},
            "user_id": {"type": ["null", "string"], "description": "User associated with the "
                        "task"},
            "expires_at": {"type": ["null", "string"], "description": "Datetime when this "
                           "resource would be subject to removal"},
            "created_at": stamp,
            "updated_at": stamp,
            "self": text,
            "schema": text,
        },
        "links": [{"rel": "self", "href": "{self}"}, {"rel": "describedby", "href": "{schema}"}],
    }


def tasks_schema() -> dict[str, Any]:
    return {
        "name": "tasks",
        "properties": {
            "tasks": {"type": "array", "items": task_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterable[Any]:
    """`pattern` as JSON Schema (ECMA 262) reads it: a final `$` matches only at the very end.

    Python's `$` also matches before a final newline, so `"<uuid>\\n"` would pass the id pattern,
    be stored, and then break the `Location` header of the response.
    """
    if not validator.is_type(instance, "string"):
        return
    anchored = pattern.endswith("$") and not pattern.endswith("\\$")
    strict = pattern[:-1] + r"\Z" if anchored else pattern
    if re.search(strict, instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(  # type: ignore[no-untyped-call]
    Draft4Validator, {"pattern": _pattern})


class Schemas:
    """The schemas of one configuration, with validators compiled once."""

    def __init__(self, disk_formats: Iterable[str], container_formats: Iterable[str]) -> None:
        self.image = image_schema(disk_formats, container_formats)
        self.images = images_schema(self.image)
        self.member = member_schema()
        self.members = members_schema()
        self.task = task_schema()
        self.tasks = tasks_schema()
        self._image_validator = _Validator(self.image)

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {"image": self.image, "images": self.images, "member": self.member,
                "members": self.members, "task": self.task, "tasks": self.tasks}

    def validate_image(self, document: dict[str, Any]) -> None:
        """Raise `Invalid` with the first schema violation of `document`, if any."""
        error = next(iter(self._image_validator.iter_errors(document)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            prefix = f"Invalid value for '{where}': " if where else ""
            raise Invalid(f"Provided object does not match schema 'image': {prefix}"
                          f"{error.message}")
