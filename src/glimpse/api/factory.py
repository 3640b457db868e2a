"""Entry point for server processes: the app built from the environment's settings."""

from __future__ import annotations

from glimpse import config
from glimpse.api.app import create_app
from glimpse.api.middleware import ASGIApp


def app() -> ASGIApp:
    return create_app(config.load())
