"""The store an upload writes to, recorded with its claim.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("upload_store", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("upload_store")
