"""Upload sessions become records of their own (`uploads`); the image keeps only its claim.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("image_id", sa.String(36), nullable=False),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_uploads_heartbeat_at", "uploads", ["heartbeat_at"])
    op.create_index("ix_uploads_image_id", "uploads", ["image_id"])
    # Uploads in flight carry on as sessions (their data key was `<image id>.<upload id>`; a
    # store left unrecorded by an older version is resolved by the server to its default).
    op.execute(
        "INSERT INTO uploads (id, image_id, store, \"key\", purpose, heartbeat_at) "
        "SELECT upload_id, id, COALESCE(upload_store, ''), id || '.' || upload_id, 'upload', "
        "COALESCE(upload_heartbeat, updated_at) FROM images WHERE upload_id IS NOT NULL"
        if op.get_bind().dialect.name != "mysql" else
        "INSERT INTO uploads (id, image_id, store, `key`, purpose, heartbeat_at) "
        "SELECT upload_id, id, COALESCE(upload_store, ''), CONCAT(id, '.', upload_id), "
        "'upload', COALESCE(upload_heartbeat, updated_at) FROM images "
        "WHERE upload_id IS NOT NULL"
    )
    with op.batch_alter_table("images") as batch:
        batch.drop_column("upload_heartbeat")
        batch.drop_column("upload_store")


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("upload_heartbeat", sa.DateTime))
        batch.add_column(sa.Column("upload_store", sa.String(64)))
    op.drop_table("uploads")
