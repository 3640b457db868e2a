"""Locations get a status and the client's metadata; background tasks get a table.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("image_locations") as batch:
        batch.add_column(sa.Column("status", sa.String(20), nullable=False,
                                   server_default="active"))
        # MySQL allows no literal default on TEXT columns, so existing rows get one first.
        batch.add_column(sa.Column("meta", LONG_TEXT, nullable=True))
    op.execute("UPDATE image_locations SET meta = '{}'")
    with op.batch_alter_table("image_locations") as batch:
        batch.alter_column("meta", existing_type=LONG_TEXT, nullable=False)
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("image_id", sa.String(36)),
        sa.Column("input", LONG_TEXT, nullable=False),
        sa.Column("result", LONG_TEXT),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("user_id", sa.String(255)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime),
        sa.Column("due_at", sa.DateTime),
        sa.Column("attempts", sa.Integer, nullable=False),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_tasks_image_id", "tasks", ["image_id"])
    op.create_index("ix_tasks_due_at", "tasks", ["due_at"])
    op.create_index("ix_tasks_owner_created_at", "tasks", ["owner", "created_at"])


def downgrade() -> None:
    op.drop_table("tasks")
    with op.batch_alter_table("image_locations") as batch:
        batch.drop_column("meta")
        batch.drop_column("status")
