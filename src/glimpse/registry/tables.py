"""The SQL schema. Alembic migrations in `migrations/` create exactly these tables.

On MySQL/MariaDB every table is utf8mb4 with the binary collation (`MYSQL`): the server default
(`utf8mb4_general_ci`) compares case- and accent-insensitively and ignores trailing spaces, so the
tags "A" and "a " would collide on a primary key and filters would match what other databases do
not. Property values are MEDIUMTEXT there, since TEXT holds only 64 KiB.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql

LONG_TEXT = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

metadata = MetaData()

images = Table(
    "images",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255)),
    Column("status", String(30), nullable=False),
    Column("visibility", String(20), nullable=False),
    Column("protected", Boolean, nullable=False),
    Column("os_hidden", Boolean, nullable=False),
    Column("disk_format", String(20)),
    Column("container_format", String(20)),
    Column("min_disk", Integer, nullable=False),
    Column("min_ram", Integer, nullable=False),
    Column("size", BigInteger),
    Column("virtual_size", BigInteger),
    Column("checksum", String(32)),
    Column("os_hash_algo", String(64)),
    Column("os_hash_value", String(128)),
    Column("owner", String(255)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("deleted_at", DateTime),
    Column("upload_id", String(36)),
    Column("version", Integer, nullable=False),
    Index("ix_images_created_at_id", "created_at", "id"),
    Index("ix_images_updated_at", "updated_at"),
    Index("ix_images_name", "name"),
    Index("ix_images_status", "status"),
    Index("ix_images_owner", "owner"),
    Index("ix_images_visibility", "visibility"),
    Index("ix_images_checksum", "checksum"),
    Index("ix_images_os_hash_value", "os_hash_value"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

image_properties = Table(
    "image_properties",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("value", LONG_TEXT, nullable=False),
    Index("ix_image_properties_name", "name"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

image_tags = Table(
    "image_tags",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("value", String(255), primary_key=True),
    Index("ix_image_tags_value", "value"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

image_locations = Table(
    "image_locations",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("store", String(255), nullable=False),
    Column("key", String(1024), nullable=False),
    Column("status", String(20), nullable=False, server_default="active"),
    #: The client's metadata of the location: a JSON object.
    Column("meta", LONG_TEXT, nullable=False),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

#: Projects a shared image is offered to, and whether they accepted it.
image_members = Table(
    "image_members",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("member", String(255), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_image_members_member", "member"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

#: Image data to remove from a store, kept until it is removed (see `registry/deletions.py`).
deletions = Table(
    "deletions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("store", String(255), nullable=False),
    Column("key", String(1024), nullable=False),
    Column("image_id", String(36)),
    Column("due_at", DateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Index("ix_deletions_due_at", "due_at"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

#: Background tasks (see `domain/tasks.py`); `due_at` is their schedule and lease.
tasks = Table(
    "tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("owner", String(255)),
    Column("image_id", String(36)),
    Column("input", LONG_TEXT, nullable=False),
    Column("result", LONG_TEXT),
    Column("message", Text, nullable=False),
    Column("request_id", String(64)),
    Column("user_id", String(255)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("expires_at", DateTime),
    Column("due_at", DateTime),
    Column("attempts", Integer, nullable=False),
    Index("ix_tasks_image_id", "image_id"),
    Index("ix_tasks_due_at", "due_at"),
    Index("ix_tasks_owner_created_at", "owner", "created_at"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

#: Upload sessions (see `domain/uploads.py`): every write of image data still in flight.
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("image_id", String(36), nullable=False),
    Column("store", String(255), nullable=False),
    Column("key", String(1024), nullable=False),
    Column("purpose", String(20), nullable=False),
    Column("heartbeat_at", DateTime, nullable=False),
    Index("ix_uploads_heartbeat_at", "heartbeat_at"),
    Index("ix_uploads_image_id", "image_id"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)
