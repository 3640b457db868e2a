"""Schema migrations: bring a database up to the newest revision (Alembic, from this package)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

_HERE = Path(__file__).parent / "migrations"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision`; safe to call on an up-to-date database."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
