"""The error edge: an exception nothing maps is a logged 500 in Glance's format, never a 4xx, and
a failure after a response started closes the connection.

No real input should reach a bug, so the faults are injected in-process (as our rules allow for
exactly this): the app from `create_app` is built with a registry whose listing raises and a
store whose readers break mid-stream, and served by a real uvicorn (with Glimpse's protocol) in
a thread, over real sockets. The strict header numbers are checked against the real server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import glimpse.api.app as app_module
from glimpse.api.app import create_app
from glimpse.api.http import LimitedHttpToolsProtocol
from glimpse.config import Settings
from glimpse.domain.query import ListQuery
from glimpse.registry.engine import make_engine
from glimpse.registry.images import SqlImageRepository
from glimpse.registry.migrate import upgrade
from glimpse.stores import catalog
from glimpse.stores.base import Reader
from glimpse.stores.filesystem import FilesystemDriver
from tests.api.helpers import OCTET, REQUEST_ID, create_raw, upload
from tests.servers import free_port

INJECTED = "injected fault"


class BrokenRegistry(SqlImageRepository):
    """Lists nothing: raises a plain bug instead."""

    async def find(self, query: ListQuery) -> list[Any]:
        raise RuntimeError(INJECTED)


class BrokenReader:
    """Sends half of the first chunk, then fails."""

    def __init__(self, inner: Reader) -> None:
        self._inner = inner
        self.size = inner.size

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner.chunks():
            yield chunk[: len(chunk) // 2]
            raise RuntimeError(INJECTED + " mid-stream")

    async def aclose(self) -> None:
        await self._inner.aclose()


class BrokenDriver(FilesystemDriver):
    async def open_reader(self, key: str, offset: int = 0,
                          length: int | None = None) -> BrokenReader:
        return BrokenReader(await super().open_reader(key, offset, length))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real uvicorn in a thread serving the app with the broken parts."""
    data_dir: Path = tmp_path_factory.mktemp("edge") / "data"
    data_dir.mkdir(parents=True)
    settings = Settings(data_dir=str(data_dir)).validate()
    engine = make_engine(settings.database)
    upgrade(engine)
    engine.dispose()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "SqlImageRepository", BrokenRegistry)
        patch.setattr(catalog, "FilesystemDriver", BrokenDriver)
        app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="asyncio", http=LimitedHttpToolsProtocol,
        log_config=None, access_log=False, lifespan="on",
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server thread died"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture
def client(faulty: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faulty, timeout=30,
                      headers={"Accept": "application/json"}) as c:
        yield c


def failures(caplog: pytest.LogCaptureFixture, wait: float = 5.0) -> list[logging.LogRecord]:
    """Log records carrying a traceback. The server (in a thread) logs a failure right after
    it has answered, so the client may see the answer first: wait a little for the record."""
    deadline = time.monotonic() + wait
    while True:
        found = [r for r in caplog.records if r.exc_info]
        if found or time.monotonic() > deadline:
            time.sleep(0.05)  # and a moment more: a second record would show up now
            return [r for r in caplog.records if r.exc_info]
        time.sleep(0.02)


def test_unmapped_exception_is_a_glance_500(client: httpx.Client) -> None:
    resp = client.get("/v2/images")
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["code"] == "500 Internal Server Error"
    assert body["title"] == "Internal Server Error"
    request_id = resp.headers["x-openstack-request-id"]
    assert REQUEST_ID.match(request_id)
    assert request_id in body["message"]
    assert INJECTED not in body["message"]  # no internals for the client


@pytest.mark.parametrize(("accept", "check"), [
    ("text/plain", lambda r: r.text.startswith("500 Internal Server Error\n\n")),
    ("", lambda r: r.json()["error"]["message"].startswith("500 Internal Server Error: ")),
    ("*/*", lambda r: r.json()["error"]["code"] == "500 Internal Server Error"),
])
def test_500_negotiates_like_other_errors(faulty: str, accept: str,
                                          check: Callable[[httpx.Response], bool]) -> None:
    headers = {"Accept": accept} if accept else {}
    resp = httpx.get(f"{faulty}/v2/images", headers=headers)
    assert resp.status_code == 500
    assert check(resp), resp.text
    assert resp.headers["x-openstack-request-id"] in resp.text


def test_500_is_logged_once_with_request_id_and_traceback(
        client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    resp = client.get("/v2/images", headers={"X-Openstack-Request-Id": "req-edge-test-1"})
    assert resp.status_code == 500
    assert resp.headers["x-openstack-request-id"] == "req-edge-test-1"
    assert "req-edge-test-1" in resp.json()["message"]
    logged = failures(caplog)
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "req-edge-test-1" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert str(logged[0].exc_info[1]) == INJECTED
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]


def test_failure_mid_download_closes_the_connection(
        client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    image = create_raw(client)
    assert upload(client, image["id"], b"x" * 100_000).status_code == 204
    caplog.set_level(logging.INFO)
    with client.stream("GET", f"/v2/images/{image['id']}/file") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-length"] == "100000"
        request_id = resp.headers["x-openstack-request-id"]
        with pytest.raises(httpx.RemoteProtocolError):  # truncated, never silently short
            resp.read()
    logged = failures(caplog)
    assert len(logged) == 1
    assert request_id in logged[0].getMessage()
    assert "closing the connection" in logged[0].getMessage()
    assert client.get("/versions").status_code == 200  # the server goes on


def test_mapped_errors_are_unchanged(client: httpx.Client,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    resp = client.get("/v2/images/00000000-0000-0000-0000-000000000000")
    assert resp.status_code == 404
    assert resp.json()["code"] == "404 Not Found"
    assert not failures(caplog)


# Strict header numbers: only ASCII digits ("²".isdigit() is true, int("²") raises).

def test_declared_image_size_with_a_superscript_digit_is_400(api: httpx.Client) -> None:
    image = create_raw(api)
    resp = api.put(f"/v2/images/{image['id']}/file", content=b"xx",
                   headers={**OCTET, "x-openstack-image-size": b"\xb2"})  # type: ignore[dict-item]
    assert resp.status_code == 400, resp.text
    assert "x-openstack-image-size" in resp.json()["message"]


def test_content_length_with_a_superscript_digit_is_400(tmp_path: Path) -> None:
    # llhttp refuses such a Content-Length before the app sees it; behind another server (or
    # any ASGI transport) read_json is the guard, so it is checked in-process.
    settings = Settings(data_dir=str(tmp_path)).validate()
    engine = make_engine(settings.database)
    upgrade(engine)
    engine.dispose()
    transport = httpx.ASGITransport(app=create_app(settings))

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as c:
            return await c.post("/v2/images", content=b"{}", headers={
                "Content-Type": "application/json", "Accept": "application/json",
                "Content-Length": b"\xb2",  # type: ignore[dict-item]
            })

    import asyncio

    resp = asyncio.run(post())
    assert resp.status_code == 400, resp.text
    assert "content-length" in resp.json()["message"]
