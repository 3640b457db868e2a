"""The SQL schema. Alembic migrations in `migrations/` create exactly these tables."""

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
    Column("upload_heartbeat", DateTime),
    Column("version", Integer, nullable=False),
    Index("ix_images_created_at_id", "created_at", "id"),
    Index("ix_images_updated_at", "updated_at"),
    Index("ix_images_name", "name"),
    Index("ix_images_status", "status"),
    Index("ix_images_owner", "owner"),
    Index("ix_images_visibility", "visibility"),
    Index("ix_images_checksum", "checksum"),
    Index("ix_images_os_hash_value", "os_hash_value"),
)

image_properties = Table(
    "image_properties",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_image_properties_name", "name"),
)

image_tags = Table(
    "image_tags",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("value", String(255), primary_key=True),
    Index("ix_image_tags_value", "value"),
)

image_locations = Table(
    "image_locations",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("store", String(255), nullable=False),
    Column("key", String(1024), nullable=False),
)
