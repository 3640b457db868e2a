"""Fixtures for the API tests: non-admin clients on the shared server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.api.helpers import uid
from tests.servers import Server


@pytest.fixture
def client_for(server: Server) -> Iterator[Callable[..., httpx.Client]]:
    """Make clients for other callers: `client_for(project, roles="member")`."""
    clients: list[httpx.Client] = []

    def factory(project: str, roles: str = "member") -> httpx.Client:
        client = httpx.Client(base_url=server.url, timeout=60, headers={
            "Accept": "application/json", "X-Project-Id": project, "X-Roles": roles})
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def member(client_for: Callable[..., httpx.Client]) -> httpx.Client:
    """A non-admin (role member) of a fresh project of its own."""
    return client_for(f"proj-{uid()}")
