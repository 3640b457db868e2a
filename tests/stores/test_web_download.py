"""The web-download byte source (`stores/web.py`) against real HTTP servers on 127.0.0.1
(http.server in threads), and its filter and settings.

Loopback is refused by default, so the download tests allow private networks and the servers'
random ports; the refusal tests use the default policy or lists naming one server but not
another, and check that the refused server saw no request.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from glimpse import config
from glimpse.stores.errors import ObjectNotFound, StoreUnavailable
from glimpse.stores.web import (
    DownloadRefused,
    DownloadTooLarge,
    ImportFilter,
    WebDownload,
    open_download,
)

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
PATTERN = os.urandom(MiB + 7)
#: Loopback servers on random ports: what the download tests allow.
OPEN = ImportFilter(allow_private_networks=True, allowed_ports=(), timeout=10)


def body(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Handler(BaseHTTPRequestHandler):
    """Routes (`n` a size in bytes):
    /obj/n       n bytes with Content-Length
    /chunked/n   n bytes, chunked (no Content-Length)
    /short/n     announces n bytes, sends half and hangs up
    /stall/n     announces n bytes, sends half, waits for `release` (at most 30 s)
    /to?url=u    302 to u
    /status/k    answers k
    """

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        parts = urlsplit(self.path)
        route, _, arg = parts.path.strip("/").partition("/")
        if route == "to":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["url"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route == "status":
            self.send_response(int(arg))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = int(arg)
        self.send_response(200)
        if route == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            data = body(size)
            for at in range(0, size, 64 * 1024):
                piece = data[at:at + 64 * 1024]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if route == "obj":
            self.send_pattern(size)
        elif route == "short":
            self.wfile.write(body(size)[:size // 2])
            self.close_connection = True
        elif route == "stall":
            self.wfile.write(body(size)[:size // 2])
            self.wfile.flush()
            self.server.release.wait(30)
            self.close_connection = True

    def send_pattern(self, size: int) -> None:
        view = memoryview(PATTERN)
        sent = 0
        while sent < size:
            piece = view[:min(len(PATTERN), size - sent)]
            self.wfile.write(piece)
            sent += len(piece)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[str] = []
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def serve() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def web() -> Iterator[Server]:
    yield from serve()


@pytest.fixture
def other() -> Iterator[Server]:
    yield from serve()


async def read(download: WebDownload) -> bytes:
    out = bytearray()
    async for chunk in download.chunks():
        out += chunk
    return bytes(out)


async def count(download: WebDownload, sizes: list[int]) -> None:
    """Read the download, noting the size of each chunk in `sizes` (kept when it fails)."""
    async for chunk in download.chunks():
        sizes.append(len(chunk))


async def fetch(url: str, filters: ImportFilter = OPEN, limit: int = 1 << 40) -> bytes:
    return await read(await open_download(url, filters, limit))


# -- downloads -------------------------------------------------------------------------------

async def test_download_from_loopback_when_allowed(web: Server) -> None:
    download = await open_download(web.url("/obj/3000001"), OPEN, 1 << 30)
    assert download.size == 3000001
    assert await read(download) == body(3000001)
    chunked = await open_download(web.url("/chunked/1000003"), OPEN, 1 << 30)
    assert chunked.size is None
    assert await read(chunked) == body(1000003)


async def test_download_follows_allowed_redirects(web: Server, other: Server) -> None:
    target = other.url("/obj/1234")
    download = await open_download(web.url(f"/to?url={target}"), OPEN, 1 << 30)
    assert download.url == target
    assert await read(download) == body(1234)


async def test_large_download_streams_in_bounded_memory(web: Server) -> None:
    size = 64 * MiB
    tracemalloc.start()
    try:
        download = await open_download(web.url(f"/obj/{size}"), OPEN, size)
        received, started = 0, time.perf_counter()
        async for chunk in download.chunks():
            received += len(chunk)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert received == size
    assert peak < 8 * MiB, peak
    print(f"64 MiB in {elapsed:.2f} s ({size / elapsed / 1e6:.0f} MB/s), peak {peak / 1e6:.1f} MB")


# -- refusals by address ---------------------------------------------------------------------

async def test_loopback_is_refused_by_default(web: Server) -> None:
    url = web.url("/obj/10")
    with pytest.raises(DownloadRefused) as caught:
        await fetch(url, ImportFilter(allowed_ports=()))
    assert caught.value.message == (f"web-download of {url} refused: 127.0.0.1 is a loopback "
                                    "address; set import_allow_private_networks to allow it")
    # a name is judged by the addresses it resolves to, before connecting
    named = web.url("/obj/10", host="localhost")
    with pytest.raises(DownloadRefused, match=r"localhost: (127\.0\.0\.1|::1) is a loopback "
                                              r"address; set import_allow_private_networks"):
        await fetch(named, ImportFilter(allowed_ports=()))
    # and with Glance's default ports the random port is refused first
    with pytest.raises(DownloadRefused, match=f"port {web.port} is not in "
                                              r"import_allowed_ports \(80, 443\)"):
        await fetch(url, ImportFilter())
    assert web.seen == []


async def test_metadata_address_is_refused_before_connecting() -> None:
    started = time.monotonic()
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/x",
                "http://[::ffff:169.254.169.254]/x", "http://10.0.0.1/x", "http://0.0.0.0/x"):
        with pytest.raises(DownloadRefused, match="set import_allow_private_networks"):
            await fetch(url, ImportFilter())
    with pytest.raises(DownloadRefused, match=r"169\.254\.169\.254 is a link-local address"):
        ImportFilter().check("http://169.254.169.254/latest/meta-data/")
    # nothing waited on a connection (there is no route to these on the test machine)
    assert time.monotonic() - started < 5


async def test_redirect_to_a_forbidden_target_is_refused(web: Server, other: Server) -> None:
    only_web = ImportFilter(allow_private_networks=True, allowed_ports=(web.port,), timeout=10)
    cases = {
        other.url("/obj/10"): f"port {other.port} is not in import_allowed_ports",
        "file:///etc/passwd": "scheme 'file' is not in import_allowed_schemes",
        f"http://user:secret@127.0.0.1:{web.port}/obj/1": "credentials in the URL are refused",
    }
    for target, why in cases.items():
        url = web.url(f"/to?url={target}")
        with pytest.raises(DownloadRefused) as caught:
            await fetch(url, only_web)
        assert caught.value.message.startswith(f"web-download of {web.url('/to')} refused: "
                                               "its redirect to ")
        assert why in caught.value.message
        assert "secret" not in caught.value.message
    # by host name, after an allowed first hop
    no_localhost = ImportFilter(allow_private_networks=True, allowed_ports=(),
                                disallowed_hosts=("localhost",))
    with pytest.raises(DownloadRefused, match="host localhost is in import_disallowed_hosts"):
        await fetch(web.url(f"/to?url={other.url('/obj/1', host='localhost')}"), no_localhost)
    # by address: the second server is allowed by port but its name resolves to loopback
    private_off = ImportFilter(allowed_ports=(), allowed_hosts=("127.0.0.1", "localhost"))
    with pytest.raises(DownloadRefused, match="loopback"):
        await fetch(other.url("/obj/1", host="localhost"), private_off)
    assert other.seen == []


async def test_too_many_redirects(web: Server) -> None:
    url = web.url("/obj/1")
    for _ in range(3):
        url = web.url(f"/to?url={url}")
    with pytest.raises(StoreUnavailable, match="more than 2 redirects"):
        await fetch(url, ImportFilter(allow_private_networks=True, allowed_ports=(),
                                      max_redirects=2))
    assert await fetch(url, ImportFilter(allow_private_networks=True, allowed_ports=(),
                                         max_redirects=3)) == body(1)


# -- refusals by scheme, host and port lists (no network needed) -----------------------------

def test_disallowed_schemes() -> None:
    for url in ("ftp://example.com/x", "file:///etc/passwd", "gopher://example.com/"):
        with pytest.raises(DownloadRefused, match="is not in import_allowed_schemes"):
            ImportFilter().check(url)
    with pytest.raises(DownloadRefused, match="'http' is in import_disallowed_schemes"):
        ImportFilter(allowed_schemes=(), disallowed_schemes=("http",)).check("http://a.example/")
    # no lists at all: the downloader still speaks only http(s)
    with pytest.raises(DownloadRefused, match="reads only http and https"):
        ImportFilter(allowed_schemes=()).check("ftp://a.example/x")
    with pytest.raises(ValueError, match=r"import_allowed_schemes: .* not 'ftp'"):
        ImportFilter(allowed_schemes=("http", "ftp"))


def test_host_lists_allow_wins_over_deny() -> None:
    both = ImportFilter(allowed_hosts=("images.example.com",),
                        disallowed_hosts=("images.example.com", "other.example.com"))
    assert both.check("https://IMAGES.example.com/a.qcow2")  # allowed: the deny list is ignored
    with pytest.raises(DownloadRefused, match=r"host other\.example\.com is not in "
                                              "import_allowed_hosts"):
        both.check("https://other.example.com/a.qcow2")
    deny = ImportFilter(disallowed_hosts=("Bad.Example.com", "[2001:db8::1]"))
    with pytest.raises(DownloadRefused, match="is in import_disallowed_hosts"):
        deny.check("http://bad.example.com/x")
    with pytest.raises(DownloadRefused, match="host 2001:db8::1 is in import_disallowed_hosts"):
        deny.check("http://[2001:db8::1]/x")
    assert deny.check("http://good.example.com/x")


def test_port_lists_allow_wins_over_deny() -> None:
    default = ImportFilter()
    assert default.check("http://a.example/x")  # no port in the URL: its scheme's default
    assert default.check("https://a.example:443/x")
    with pytest.raises(DownloadRefused, match="port 8080 is not in import_allowed_ports"):
        default.check("http://a.example:8080/x")
    both = ImportFilter(allowed_ports=(8080,), disallowed_ports=(8080, 9090))
    assert both.check("http://a.example:8080/x")
    with pytest.raises(DownloadRefused, match="port 80 is not in import_allowed_ports"):
        both.check("http://a.example:80/x")  # named, so judged (Glance's rule)
    deny = ImportFilter(allowed_ports=(), disallowed_ports=(9090,))
    assert deny.check("http://a.example:8080/x")
    with pytest.raises(DownloadRefused, match="port 9090 is in import_disallowed_ports"):
        deny.check("http://a.example:9090/x")


def test_malformed_and_ambiguous_urls() -> None:
    f = ImportFilter()
    for url, why in {"": "1 to", "http://a.example/x y": "no spaces",
                     "http://a.example\\@127.0.0.1/": "backslashes", "http:///x": "no host",
                     "//a.example/x": "no scheme", "http://a.example:99999/": "not a valid URL",
                     "http://u@a.example/": "credentials"}.items():
        with pytest.raises(DownloadRefused, match=why):
            f.check(url)


# -- limits and broken servers ---------------------------------------------------------------

async def test_content_length_above_the_limit_is_refused_before_reading(web: Server) -> None:
    url = web.url("/obj/5000")
    with pytest.raises(DownloadTooLarge, match="Content-Length 5000 exceeds the limit of "
                                               "4999 bytes"):
        await open_download(url, OPEN, 4999)
    assert await fetch(url, limit=5000) == body(5000)


async def test_body_above_the_limit_without_content_length(web: Server) -> None:
    download = await open_download(web.url("/chunked/300000"), OPEN, 200000)
    received: list[int] = []
    with pytest.raises(DownloadTooLarge, match="the body exceeds the limit of 200000 bytes"):
        await count(download, received)
    assert sum(received) <= 200000
    assert await fetch(web.url("/chunked/300000"), limit=300000) == body(300000)


async def test_body_shorter_than_its_content_length(web: Server) -> None:
    with pytest.raises(StoreUnavailable, match=r"web-download of .*/short/100000 failed"):
        await fetch(web.url("/short/100000"))


async def test_server_stalling_mid_body_times_out(web: Server) -> None:
    quick = ImportFilter(allow_private_networks=True, allowed_ports=(), timeout=0.5)
    download = await open_download(web.url("/stall/200000"), quick, 1 << 30)
    received: list[int] = []
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"failed: no progress for 0\.5 s \(ReadTimeout; "
                                               r"web_download_timeout\)"):
        await count(download, received)
    assert sum(received) == 100000
    assert time.monotonic() - started < 20


async def test_server_that_never_answers_times_out() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        port = listener.getsockname()[1]
        quick = ImportFilter(allow_private_networks=True, allowed_ports=(), timeout=0.5)
        with pytest.raises(StoreUnavailable, match=r"no progress for 0\.5 s"):
            await open_download(f"http://127.0.0.1:{port}/x", quick, 1 << 30)
    finally:
        listener.close()


async def test_error_statuses_and_unreachable_servers(web: Server) -> None:
    with pytest.raises(ObjectNotFound, match="the server answered 404"):
        await open_download(web.url("/status/404"), OPEN, 1 << 30)
    with pytest.raises(StoreUnavailable, match="the server answered 500"):
        await open_download(web.url("/status/500"), OPEN, 1 << 30)
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        await open_download(f"http://127.0.0.1:{port}/x", OPEN, 1 << 30)


# -- settings --------------------------------------------------------------------------------

def test_settings_from_the_environment() -> None:
    settings = config.load(environ={
        "GLIMPSE_IMPORT_ALLOWED_PORTS": "8080, 8443",
        "GLIMPSE_IMPORT_DISALLOWED_HOSTS": "Metadata.Internal,[fd00::1]",
        "GLIMPSE_IMPORT_ALLOW_PRIVATE_NETWORKS": "true",
        "GLIMPSE_WEB_DOWNLOAD_TIMEOUT": "7.5",
        "GLIMPSE_IMPORT_ALLOWED_SCHEMES": "https",
    })
    f = settings.import_filter
    assert f.allowed_ports == (8080, 8443)
    assert f.disallowed_hosts == ("metadata.internal", "fd00::1")
    assert f.allowed_schemes == ("https",)
    assert f.allow_private_networks and f.timeout == 7.5
    default = config.load(environ={}).import_filter
    assert default == ImportFilter()
    assert (default.allowed_schemes, default.allowed_ports) == (("http", "https"), (80, 443))
    assert not default.allow_private_networks
    assert config.load(environ={"GLIMPSE_IMPORT_ALLOWED_PORTS": ""}).import_allowed_ports == ()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("IMPORT_ALLOWED_PORTS", "80,http", "import_allowed_ports: cannot use"),
    ("IMPORT_DISALLOWED_PORTS", "0", "import_disallowed_ports: 0 is not a port"),
    ("IMPORT_ALLOWED_SCHEMES", "http,ftp", "import_allowed_schemes: web-download reads only"),
    ("WEB_DOWNLOAD_TIMEOUT", "0", "web_download_timeout: must be a positive"),
    ("WEB_DOWNLOAD_MAX_REDIRECTS", "21", "web_download_max_redirects: must be in 0..20"),
])
def test_bad_settings_stop_start_up(name: str, value: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(environ={f"GLIMPSE_{name}": value})
