"""Images, their properties, tags and locations.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("visibility", sa.String(20), nullable=False),
        sa.Column("protected", sa.Boolean, nullable=False),
        sa.Column("os_hidden", sa.Boolean, nullable=False),
        sa.Column("disk_format", sa.String(20)),
        sa.Column("container_format", sa.String(20)),
        sa.Column("min_disk", sa.Integer, nullable=False),
        sa.Column("min_ram", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger),
        sa.Column("virtual_size", sa.BigInteger),
        sa.Column("checksum", sa.String(32)),
        sa.Column("os_hash_algo", sa.String(64)),
        sa.Column("os_hash_value", sa.String(128)),
        sa.Column("owner", sa.String(255)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("deleted_at", sa.DateTime),
        sa.Column("upload_id", sa.String(36)),
        sa.Column("upload_heartbeat", sa.DateTime),
        sa.Column("version", sa.Integer, nullable=False),
    )
    for name, cols in [
        ("ix_images_created_at_id", ["created_at", "id"]),
        ("ix_images_updated_at", ["updated_at"]),
        ("ix_images_name", ["name"]),
        ("ix_images_status", ["status"]),
        ("ix_images_owner", ["owner"]),
        ("ix_images_visibility", ["visibility"]),
        ("ix_images_checksum", ["checksum"]),
        ("ix_images_os_hash_value", ["os_hash_value"]),
    ]:
        op.create_index(name, "images", cols)
    op.create_table(
        "image_properties",
        sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("ix_image_properties_name", "image_properties", ["name"])
    op.create_table(
        "image_tags",
        sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"), primary_key=True),
        sa.Column("value", sa.String(255), primary_key=True),
    )
    op.create_index("ix_image_tags_value", "image_tags", ["value"])
    op.create_table(
        "image_locations",
        sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
    )


def downgrade() -> None:
    for table in ("image_locations", "image_tags", "image_properties", "images"):
        op.drop_table(table)
