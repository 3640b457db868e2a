"""The OpenAPI document built in-process, the same way `GET /v2/openapi.json` builds it.

Schemathesis' pytest integration needs its schema when tests are collected, before any server
runs; `test_stateless.test_fuzzed_document_is_served` checks that this document is the one a
default server serves.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from starlette.routing import BaseRoute

from glimpse.api import openapi, routes
from glimpse.api.routes.versions import CURRENT
from glimpse.config import Settings
from glimpse.services.schemas import Schemas


def route_table() -> list[BaseRoute]:
    """The routes of every module of `glimpse.api.routes`, which the app serves (a module it
    did not serve would make the served document differ from this one)."""
    found: list[BaseRoute] = []
    for module in pkgutil.iter_modules(routes.__path__):
        found += getattr(importlib.import_module(f"{routes.__name__}.{module.name}"), "routes", [])
    return found


def local_document(server_url: str = "http://127.0.0.1/") -> dict[str, Any]:
    settings = Settings()
    schemas = Schemas(settings.disk_formats, settings.container_formats)
    return openapi.document(route_table(), schemas, server_url, CURRENT)
