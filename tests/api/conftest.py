"""Fixtures for the API tests.

Building an `httpx.Client` costs ~0.1 s (it loads a TLS context), so every client here shares one
transport and the admin client is created once per session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import uid
from tests.servers import Server, start_server


class SharedTransport(httpx.BaseTransport):
    """Delegates to one pooled transport; closing a client leaves the pool open."""

    def __init__(self, inner: httpx.HTTPTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def transport() -> Iterator[SharedTransport]:
    inner = httpx.HTTPTransport()
    yield SharedTransport(inner)
    inner.close()


@pytest.fixture(scope="session")
def connect(transport: SharedTransport) -> Callable[..., httpx.Client]:
    """`connect(url, **headers)`: a client asking for JSON errors, on the shared transport."""

    def factory(url: str, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=url, timeout=60, transport=transport,
                            headers={"Accept": "application/json", **headers})

    return factory


@pytest.fixture(scope="session")
def api(server: Server, connect: Callable[..., httpx.Client]) -> httpx.Client:
    """The admin client (no X-Roles: admin of project "admin") for the shared server."""
    return connect(server.url)


@pytest.fixture
def client_for(server: Server,
               connect: Callable[..., httpx.Client]) -> Callable[..., httpx.Client]:
    """Clients for other callers: `client_for(project, roles="member")`."""

    def factory(project: str, roles: str = "member") -> httpx.Client:
        return connect(server.url, **{"X-Project-Id": project, "X-Roles": roles})

    return factory


@pytest.fixture
def member(client_for: Callable[..., httpx.Client]) -> httpx.Client:
    """A non-admin (role member) of a fresh project of its own."""
    return client_for(f"proj-{uid()}")


@pytest.fixture(scope="session")
def limited(tmp_path_factory: pytest.TempPathFactory,
            connect: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    """Admin client on a second server with tiny quotas: 2 extra properties, 2 tags, pages of 3.

    Started once (like `make_server`, via `start_server`) because every start costs ~1 s.
    """
    data_dir: Path = tmp_path_factory.mktemp("limited") / "data"
    srv = start_server(data_dir, image_property_quota=2, image_tag_quota=2, api_limit_max=3)
    yield connect(srv.url)
    srv.stop()
