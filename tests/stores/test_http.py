"""The read-only HTTP driver against real HTTP(S) servers on 127.0.0.1 (http.server in threads).

Loopback is refused by default, so most tests configure `allow_private_networks`; the refusal
tests use the default policy, or `allowed_hosts` naming one server's port but not another's.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from glimpse.stores import catalog
from glimpse.stores.base import Store
from glimpse.stores.errors import (
    InvalidKey,
    InvalidRange,
    ObjectNotFound,
    StoreUnavailable,
    WriteDenied,
)
from glimpse.stores.http import HttpDriver, HttpOptions

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
GiB = 1024 * MiB
#: Every object's bytes: this pattern, repeated (an odd length, so offsets show).
PATTERN = os.urandom(MiB + 7)


def expected(offset: int, length: int) -> bytes:
    """Bytes `offset`..`offset + length` of any object the server serves."""
    out = bytearray()
    while len(out) < length:
        start = (offset + len(out)) % len(PATTERN)
        out += PATTERN[start:start + length - len(out)]
    return bytes(out)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Handler(BaseHTTPRequestHandler):
    """Routes (`n` a size in bytes):
    /obj/n         an object, with HEAD, Range and ETag
    /nolength/n    HEAD without Content-Length; GET without Range: a close-delimited body
    /norange/n     ignores Range (always 200 with the whole object)
    /short/n       announces n bytes, sends half and hangs up
    /hops/k        redirects k times, then /obj/10
    /to?url=u      redirects to u
    anything else  404
    """

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.answer(head=True)

    def do_GET(self) -> None:
        self.answer(head=False)

    def answer(self, head: bool) -> None:
        self.server.seen.append(self.path)
        self.server.ranges.append(self.headers.get("Range"))
        parts = urlsplit(self.path)
        route, _, arg = parts.path.strip("/").partition("/")
        if route == "hops":
            hops = int(arg)
            return self.redirect(f"/hops/{hops - 1}" if hops else "/obj/10")
        if route == "to":
            return self.redirect(parse_qs(parts.query)["url"][0])
        if route not in ("obj", "nolength", "norange", "short") or not arg.isdigit():
            return self.plain(404, b"not found")
        size = int(arg)
        start, end, status = 0, size, 200
        wanted = self.headers.get("Range")
        if wanted and route != "norange":
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start = int(first)
            end = min(size, int(last) + 1) if last else size
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("ETag", '"v1"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        close_delimited = route == "nolength" and (head or status == 200)
        if close_delimited:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if head:
            return
        if route == "short":
            end = start + (end - start) // 2
            self.close_connection = True
        self.send_bytes(start, end)

    def send_bytes(self, start: int, end: int) -> None:
        view = memoryview(PATTERN)
        position = start
        while position < end:
            at = position % len(PATTERN)
            piece = view[at:min(len(PATTERN), at + end - position, at + MiB)]
            self.wfile.write(piece)
            position += len(piece)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[str] = []
        self.ranges: list[str | None] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early (ranges read in part) are expected


@dataclass
class Running:
    server: Server
    scheme: str = "http"
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def web() -> Iterator[Running]:
    running = Running(Server())
    yield running
    running.stop()


other = web  # a second server, for redirects between two


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "glimpse test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_file, key_file)


@pytest.fixture
def tls_web(certificate: Certificate) -> Iterator[Running]:
    server = Server()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    running = Running(server, "https")
    yield running
    running.stop()


@pytest.fixture
async def drivers() -> AsyncIterator[list[HttpDriver]]:
    made: list[HttpDriver] = []
    yield made
    for driver in made:
        await driver.aclose()


@pytest.fixture
def make_store(drivers: list[HttpDriver]) -> Any:
    def make(**options: Any) -> Store:
        driver = HttpDriver(**options)
        drivers.append(driver)
        return Store("web", driver)

    return make


@pytest.fixture
def store(make_store: Any) -> Store:
    return make_store(allow_private_networks=True)


async def read(store: Store, url: str, offset: int = 0, length: int | None = None) -> bytes:
    reader = await store.open_reader(url, offset, length)
    return b"".join([chunk async for chunk in reader.chunks()])


# -- reads ------------------------------------------------------------------------------------

async def test_whole_and_ranged_reads(store: Store, web: Running) -> None:
    url = web.url("/obj/100000")
    assert await read(store, url) == expected(0, 100_000)
    assert await read(store, url, 10, 20) == expected(10, 20)
    assert await read(store, url, 100_000 - 5) == expected(99_995, 5)
    assert await read(store, url, 100, 10**9) == expected(100, 99_900)
    assert await read(store, url, 7, 0) == b""
    reader = await store.open_reader(url, 50, 10)
    assert reader.size == 100_000
    await reader.aclose()
    assert web.server.ranges[-1] == "bytes=50-59"  # passed through as asked
    with pytest.raises(InvalidRange) as past:
        await store.open_reader(url, 100_000)
    assert past.value.size == 100_000
    info = await store.stat(url)
    assert (info.size, info.version) == (100_000, '"v1"')
    assert await read(store, web.url("/obj/0")) == b""


async def test_a_server_ignoring_range_is_read_from_the_start_and_skipped(
        store: Store, web: Running) -> None:
    url = web.url("/norange/300000")
    assert await read(store, url, 70_000, 1000) == expected(70_000, 1000)
    assert await read(store, url, 299_999) == expected(299_999, 1)
    with pytest.raises(InvalidRange):
        await store.open_reader(url, 300_000)


async def test_size_from_a_ranged_get_when_head_gives_no_length(
        store: Store, web: Running) -> None:
    url = web.url("/nolength/5000")
    assert (await store.stat(url)).size == 5000
    reader = await store.open_reader(url)  # a close-delimited body: size from the ranged GET
    assert reader.size == 5000
    assert b"".join([c async for c in reader.chunks()]) == expected(0, 5000)
    assert await read(store, url, 4000, 50) == expected(4000, 50)


async def test_a_short_body_is_an_error_never_a_short_stream(
        store: Store, web: Running) -> None:
    reader = await store.open_reader(web.url("/short/400000"))
    got = bytearray()
    async def drain() -> None:
        async for chunk in reader.chunks():
            got.extend(chunk)

    with pytest.raises(StoreUnavailable) as broke:
        await drain()
    assert len(got) < 400_000
    assert broke.value.store_id == "web"
    with pytest.raises(StoreUnavailable):
        await read(store, web.url("/short/400000"), 1000, 300_000)


async def test_not_found(store: Store, web: Running) -> None:
    for call in (store.open_reader(web.url("/nothing/here")), store.stat(web.url("/gone"))):
        with pytest.raises(ObjectNotFound) as missing:
            await call
        assert missing.value.store_id == "web"


async def test_a_server_that_is_down_is_unavailable(store: Store, web: Running) -> None:
    url = web.url("/obj/10")
    web.stop()
    with pytest.raises(StoreUnavailable):
        await store.open_reader(url)


async def test_redirects_are_followed_up_to_the_limit(make_store: Any, web: Running) -> None:
    store = make_store(allow_private_networks=True, max_redirects=3)
    assert await read(store, web.url("/hops/2")) == expected(0, 10)
    assert (await store.stat(web.url("/hops/2"))).size == 10
    with pytest.raises(StoreUnavailable, match="more than 3 redirects"):
        await store.open_reader(web.url("/hops/3"))
    strict = make_store(allow_private_networks=True, max_redirects=0)
    with pytest.raises(StoreUnavailable):
        await strict.open_reader(web.url("/hops/0"))


async def test_large_stream_keeps_memory_flat(store: Store, web: Running) -> None:
    """1 GiB through a reader, with Python's allocations staying small."""
    tracemalloc.start()
    try:
        reader = await store.open_reader(web.url(f"/obj/{GiB}"))
        position = 0
        async for part in reader.chunks():
            if position % (64 * MiB) < len(part):  # spot checks, cheap enough under tracing
                assert part == expected(position, len(part))
            position += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert position == GiB
    assert peak < 16 * MiB, f"peak traced memory {peak} bytes"


# -- keys and policy --------------------------------------------------------------------------

@pytest.mark.parametrize("key", [
    "http://user:pass@127.0.0.1/x", "https://user@example.com/x", "http://:pw@example.com/",
    "ftp://example.com/x", "file:///etc/passwd", "/relative/path", "img-1", "http://",
    "http:///x", "http://example.com/a b", "http://example.com/\x00", "",
    "http://example.com/" + "a" * 2048,
])
async def test_bad_urls_are_invalid_keys(store: Store, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.open_reader(key)
    with pytest.raises(InvalidKey):
        await store.stat(key)


async def test_credentials_are_refused_without_echoing_them(store: Store) -> None:
    with pytest.raises(InvalidKey) as refused:
        await store.open_reader("http://admin:s3cret@example.com/image")
    assert "s3cret" not in refused.value.message


@pytest.mark.parametrize("host", [
    "127.0.0.1", "localhost", "[::1]", "0.0.0.0", "2130706433", "[::ffff:127.0.0.1]",
    "169.254.169.254", "10.1.2.3", "192.168.0.1", "224.0.0.1",
])
async def test_non_public_targets_are_refused_by_default(
        make_store: Any, web: Running, host: str) -> None:
    store = make_store()
    with pytest.raises(InvalidKey, match="refused"):
        await store.open_reader(f"http://{host}:{web.port}/obj/10")
    assert web.server.seen == []


async def test_a_redirect_to_a_host_not_allowed_is_refused(
        make_store: Any, web: Running, other: Running) -> None:
    store = make_store(allow_private_networks=True, allowed_hosts=[f"127.0.0.1:{web.port}"])
    assert await read(store, web.url("/obj/10")) == expected(0, 10)
    for target in (other.url("/obj/10"), "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(InvalidKey, match="redirect from"):
            await store.open_reader(web.url(f"/to?url={target}"))
    with pytest.raises(InvalidKey, match="allowed_hosts"):
        await store.open_reader(other.url("/obj/10"))
    assert other.server.seen == []


async def test_host_names_are_checked_after_resolution(make_store: Any, web: Running) -> None:
    """The address check runs on every connection (each redirect's too) after resolving the
    name: an allowed host name that resolves to loopback is still refused."""
    store = make_store(allowed_hosts=[f"127.0.0.1:{web.port}", "localhost"])
    with pytest.raises(InvalidKey, match="loopback"):
        await store.open_reader(f"http://localhost:{web.port}/obj/10")
    assert web.server.seen == []


async def test_the_store_is_read_only(store: Store, web: Running) -> None:
    url = web.url("/obj/10")
    for call in (store.open_writer(url), store.delete(url), store.discard(url)):
        with pytest.raises(WriteDenied):
            await call
    driver = store.driver
    for direct in (driver.open_writer(url, None), driver.delete(url), driver.discard(url)):
        with pytest.raises(WriteDenied):
            await direct
    assert web.server.seen == []


# -- TLS --------------------------------------------------------------------------------------

async def test_tls_is_verified(make_store: Any, tls_web: Running,
                               certificate: Certificate) -> None:
    url = tls_web.url("/obj/1000")
    untrusting = make_store(allow_private_networks=True)
    with pytest.raises(StoreUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        await untrusting.open_reader(url)
    trusting = make_store(allow_private_networks=True, ca_file=str(certificate.cert_file))
    assert await read(trusting, url, 10, 100) == expected(10, 100)
    careless = make_store(allow_private_networks=True, verify_tls=False)
    assert await read(careless, url) == expected(0, 1000)


async def test_https_is_never_downgraded(make_store: Any, tls_web: Running, web: Running,
                                         certificate: Certificate) -> None:
    store = make_store(allow_private_networks=True, ca_file=str(certificate.cert_file))
    with pytest.raises(InvalidKey, match="downgraded"):
        await store.open_reader(tls_web.url(f"/to?url={web.url('/obj/10')}"))
    assert web.server.seen == []


# -- configuration ----------------------------------------------------------------------------

async def test_catalog_builds_and_checks_an_http_store(tmp_path: Path) -> None:
    specs = catalog.parse({"web": {"driver": "http", "allowed_hosts": ["images.example.com"],
                                   "max_redirects": 2, "timeout": 5}})
    stores = catalog.build(specs)
    driver = stores["web"].driver
    assert isinstance(driver, HttpDriver)
    assert driver.options.allowed_hosts == ("images.example.com",)
    assert not stores["web"].capabilities.write
    await catalog.check(stores)  # no network needed
    for bad, message in (({"max_redirects": 99}, "max_redirects"),
                         ({"allowed_hosts": "x"}, "allowed_hosts"),
                         ({"verify_tls": "yes"}, "verify_tls"),
                         ({"verify_tls": False, "ca_file": "/x"}, "ca_file"),
                         ({"proxy": "x"}, "not an option")):
        with pytest.raises(catalog.StoreConfigError, match=message):
            catalog.parse({"web": {"driver": "http", **bad}})
    missing = catalog.build(catalog.parse({"web": {
        "driver": "http", "ca_file": str(tmp_path / "absent.pem")}}))
    with pytest.raises(catalog.StoreConfigError, match=r"stores\.web: ca_file"):
        await catalog.check(missing)


def test_options_default_to_the_safe_side() -> None:
    options = HttpOptions()
    assert (options.allow_private_networks, options.verify_tls, options.max_redirects) == (
        False, True, 5)
