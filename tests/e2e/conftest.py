"""End-to-end fixtures: the session's Swift under the name these tests use."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def swift(swift_facts: dict[str, Any]) -> dict[str, Any]:
    return swift_facts
