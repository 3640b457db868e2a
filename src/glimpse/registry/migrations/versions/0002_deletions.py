"""Deletion jobs; binary utf8mb4 tables and MEDIUMTEXT property values on MySQL/MariaDB.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = ("images", "image_properties", "image_tags", "image_locations")


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if _is_mysql():
        # MariaDB will not change the collation of a column a foreign key joins: drop the keys
        # of the child tables, convert every table, then put the keys back.
        children = ("image_properties", "image_tags", "image_locations")
        inspector = sa.inspect(op.get_bind())
        for table in children:
            for key in inspector.get_foreign_keys(table):
                if key["name"]:
                    op.drop_constraint(key["name"], table, type_="foreignkey")
        for table in _TABLES:
            op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 "
                       "COLLATE utf8mb4_bin")
        op.alter_column("image_properties", "value", existing_nullable=False,
                        type_=mysql.MEDIUMTEXT(), existing_type=sa.Text())
        for table in children:
            op.create_foreign_key(f"fk_{table}_image_id", table, "images", ["image_id"], ["id"])
    op.create_table(
        "deletions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("image_id", sa.String(36)),
        sa.Column("due_at", sa.DateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_deletions_due_at", "deletions", ["due_at"])


def downgrade() -> None:
    op.drop_table("deletions")
