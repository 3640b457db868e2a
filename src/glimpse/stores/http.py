"""The read-only HTTP driver: images that live at `http(s)://` URLs, read where they are.

Keys are the URLs themselves (`check_key`: absolute `http`/`https`, at most `MAX_URL` characters,
no `user:pass@`, credentials belong in configuration, and, when `allowed_hosts` is set, one of
those hosts). Nothing is ever written: `open_writer`, `delete` and `discard` raise `WriteDenied`.

Reading: `stat` takes the size from a HEAD, or, when HEAD gives no length (or is not allowed),
from a `Range: bytes=0-0` GET's `Content-Range`. `open_reader` sends one GET with `Range` and
checks the answer before returning (404/410 → `ObjectNotFound`, 416 → `InvalidRange`, a range
other than the one asked for → `StoreUnavailable`); a server that ignores `Range` (200) is read
from the start and the bytes before `offset` skipped. The body is streamed as it is sent
(`Accept-Encoding: identity`, raw bytes) and counted: a body shorter than announced, a broken
connection, a timeout or a 5xx is `StoreUnavailable`, never a silently short stream.

Where it may connect (the guard against server-side request forgery): every connection,
including each redirect's, resolves the host, refuses it if *any* address it resolves to is not
a public unicast address (loopback, private, link-local such as 169.254.169.254, shared,
multicast, unspecified, reserved) unless `allow_private_networks` is set, and then connects to
the very address it checked (the TLS server name and the Host header stay the URL's host), so a
DNS answer that changes between the check and the connection cannot redirect it. Redirects are
followed by hand, at most `max_redirects`, each target checked like a key (and https never
downgraded to http). Environment proxies are ignored: a proxy would connect on our behalf
unchecked. A refused target is `InvalidKey` (the URL would escape what the store may reach).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urljoin

import anyio
import httpcore
import httpx

from glimpse.stores.base import Capabilities, ObjectInfo, Writer
from glimpse.stores.errors import (
    InvalidKey,
    InvalidRange,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
    WriteDenied,
)

#: The longest URL taken as a key.
MAX_URL = 2048
READ_CHUNK = 256 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.ASCII)


@dataclass(frozen=True)
class HttpOptions:
    """The driver's configuration (`[stores.<id>]` options of driver `http`)."""

    allow_private_networks: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_redirects: int = 5
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = 60.0
    connect_timeout: float = 10.0
    max_connections: int = 32

    def __post_init__(self) -> None:
        hosts = self.allowed_hosts
        if not isinstance(hosts, (list, tuple)) or not all(
                isinstance(h, str) and h for h in hosts):
            raise ValueError("allowed_hosts must be a list of host names ('host' or 'host:port')")
        object.__setattr__(self, "allowed_hosts", tuple(h.lower() for h in hosts))
        if not 0 <= self.max_redirects <= 20:
            raise ValueError("max_redirects must be in 0..20")
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.ca_file is not None and not self.verify_tls:
            raise ValueError("ca_file needs verify_tls = true")


def _shown(url: str) -> str:
    """The URL for messages: without its query (signed URLs carry tokens there)."""
    return url.split("?", 1)[0].split("#", 1)[0][:200]


def _refusal(address: str, allow_private: bool) -> str | None:
    """Why connecting to `address` is refused, or None."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # an IPv4 address inside an IPv6 one reaches the IPv4 host: judge that one
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            ip = embedded
    if allow_private:
        return None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows: it
    resolves, checks, and connects to the address it checked."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def _resolve(self, host: str, port: int, seconds: float | None) -> list[str]:
        try:
            with anyio.fail_after(seconds):
                found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host}: timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"resolving {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(entry[4][0]) for entry in found))
        for address in addresses:
            why = _refusal(address.split("%", 1)[0], self._allow_private)
            if why is not None:
                raise self._refused(host, why)
        return addresses

    def _refused(self, host: str, why: str) -> StoreError:
        """The error for a host that resolves to a forbidden address (`why` says which)."""
        return InvalidKey(f"{host}: {why}, refused (allow_private_networks is off)")

    # the signatures are httpcore's: `timeout` is its parameter, not ours
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in await self._resolve(host, port, timeout):
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address,
                                                     socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host}: no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise InvalidKey("unix sockets are not HTTP locations")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise StoreUnavailable(f"{_shown(str(response.url))}: bad {name} {value!r}")
    return int(value)


def _content_range(response: httpx.Response) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of `Content-Range` (None where the server gave `*`)."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if match is None:
        raise StoreUnavailable(f"{_shown(str(response.url))}: answered "
                               f"{response.status_code} without a valid Content-Range")
    first, last, total = match.groups()
    return (None if first is None else int(first), None if last is None else int(last),
            None if total == "*" else int(total))


def _failure(response: httpx.Response, url: str) -> StoreError:
    status = response.status_code
    if status in (404, 410):
        return ObjectNotFound(f"{_shown(url)}: the server answered {status}")
    return StoreUnavailable(f"{_shown(url)}: the server answered {status}")


class HttpReader:
    """`count` bytes of `response`'s body after skipping `skip` (a server that ignored
    `Range`); `size` is the whole object's."""

    def __init__(self, response: httpx.Response | None, size: int, skip: int,
                 count: int, url: str) -> None:
        self.size = size
        self._response = response
        self._skip = skip
        self._count = count
        self._url = url

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            if self._response is None or self._count == 0:
                return
            skip, left = self._skip, self._count
            try:
                async for part in self._response.aiter_raw(READ_CHUNK):
                    if skip:
                        dropped = min(skip, len(part))
                        skip -= dropped
                        part = part[dropped:]
                    part = part[:left]
                    if part:
                        left -= len(part)
                        yield part
                    if not left:
                        return
            except httpx.TransportError as exc:
                raise StoreUnavailable(f"read of {_shown(self._url)} broke "
                                       f"({type(exc).__name__}: {exc})") from exc
            raise StoreUnavailable(f"read of {_shown(self._url)}: the body ended "
                                   f"{left} bytes short")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._response is not None:
            response, self._response = self._response, None
            await response.aclose()


class HttpDriver:
    capabilities = Capabilities(read=True, write=False, ranged_read=True)
    #: Keys are the location URLs themselves.
    url_prefix = None

    def __init__(self, options: HttpOptions | None = None, **settings: Any) -> None:
        """Either `HttpOptions`, or its fields as keywords (as configuration gives them).
        Raises `ValueError` for options that cannot work."""
        if options is None:
            options = HttpOptions(**settings)
        elif settings:
            raise TypeError("give HttpOptions or keywords, not both")
        self.options = options
        self._client: httpx.AsyncClient | None = None

    # -- keys and policy -------------------------------------------------------------------

    def check_key(self, key: str) -> str:
        """Return `key` if it is a URL this store may read, else raise `InvalidKey`."""
        if not isinstance(key, str) or not key or len(key) > MAX_URL:
            raise InvalidKey(f"an HTTP location is a URL of 1 to {MAX_URL} characters")
        if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in key):
            raise InvalidKey("an HTTP location has no spaces or control characters")
        try:
            url = httpx.URL(key)
        except httpx.InvalidURL as exc:
            raise InvalidKey(f"not a URL ({exc})") from exc
        if url.scheme not in ("http", "https") or not url.host or not key.lower().startswith(
                url.scheme + "://"):
            raise InvalidKey(f"{_shown(key)}: an HTTP location is an absolute http(s) URL")
        if url.userinfo or "@" in key.split("://", 1)[1].split("/", 1)[0]:
            raise InvalidKey(f"{url.scheme}://{url.host}/…: credentials in a location URL are "
                             "refused (they belong in configuration)")
        allowed = self.options.allowed_hosts
        if allowed:
            port = url.port or (443 if url.scheme == "https" else 80)
            host = f"[{url.host}]" if ":" in url.host else url.host
            if host not in allowed and f"{host}:{port}" not in allowed:
                raise InvalidKey(f"{host}:{port} is not one of this store's allowed_hosts")
        return key

    def _ssl_context(self) -> ssl.SSLContext:
        if not self.options.verify_tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        # with ca_file, that file's CAs are the only ones trusted
        return ssl.create_default_context(cafile=self.options.ca_file)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            options = self.options
            limits = httpx.Limits(max_connections=options.max_connections,
                                  max_keepalive_connections=min(16, options.max_connections))
            context = self._ssl_context()
            transport = httpx.AsyncHTTPTransport(verify=context, limits=limits, trust_env=False)
            # httpx has no parameter for httpcore's network backend: the pool is rebuilt with
            # the guard (same settings as httpx's own), so no connection escapes the check
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=context, max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=_GuardedBackend(options.allow_private_networks))
            self._client = httpx.AsyncClient(
                transport=transport, trust_env=False, follow_redirects=False,
                timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout))
        return self._client

    async def _request(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        """The answer to `method url` after following redirects (each target checked), its body
        not read yet (the caller closes it). Transport failures are `StoreUnavailable`."""
        current = self.check_key(url)
        headers = {"Accept-Encoding": "identity", **headers}
        for _ in range(self.options.max_redirects + 1):
            request = self.client.build_request(method, current, headers=headers)
            try:
                response = await self.client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise StoreUnavailable(f"{method} {_shown(current)}: cannot be reached "
                                       f"({type(exc).__name__}: {exc})") from exc
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or location is None:
                return response
            await response.aclose()
            target = urljoin(current, location)
            try:
                self.check_key(target)
            except InvalidKey as exc:
                raise InvalidKey(f"redirect from {_shown(current)}: {exc.message}") from exc
            if current.lower().startswith("https:") and not target.lower().startswith("https:"):
                raise InvalidKey(f"redirect from {_shown(current)} to {_shown(target)}: "
                                 "https is never downgraded to http")
            current = target
        raise StoreUnavailable(f"{method} {_shown(url)}: more than "
                               f"{self.options.max_redirects} redirects")

    # -- the driver contract ---------------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo:
        response = await self._request("HEAD", key, {})
        async with contextlib.aclosing(response):
            if response.status_code in (404, 410):
                raise _failure(response, key)
            etag = response.headers.get("etag")
            size = _int_header(response, "content-length")
            if response.status_code == 200 and size is not None:
                return ObjectInfo(size, etag)
            if response.status_code not in (200, 204, 403, 405, 501):
                raise _failure(response, key)
        # no length from HEAD (or no HEAD): the total of a one-byte range
        response = await self._request("GET", key, {"Range": "bytes=0-0"})
        async with contextlib.aclosing(response):
            status = response.status_code
            if status in (206, 416):
                total = _content_range(response)[2]
            elif status == 200:
                total = _int_header(response, "content-length")
            else:
                raise _failure(response, key)
            if total is None:
                raise StoreUnavailable(f"{_shown(key)}: the server gives no size")
            return ObjectInfo(total, response.headers.get("etag") or etag)

    async def open_reader(self, key: str, offset: int = 0,
                          length: int | None = None) -> HttpReader:
        if offset < 0 or (length is not None and length < 0):
            raise InvalidRange(f"bad range {offset}+{length}", 0)
        if length == 0:
            size = (await self.stat(key)).size
            self._check_offset(offset, size)
            return HttpReader(None, size, 0, 0, key)
        headers = {}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{last}"
        response = await self._request("GET", key, headers)
        try:
            return await self._reader(key, response, offset, length)
        except BaseException:
            await response.aclose()
            raise

    async def _reader(self, key: str, response: httpx.Response, offset: int,
                      length: int | None) -> HttpReader:
        status = response.status_code
        announced = _int_header(response, "content-length")
        if status == 206:
            first, last, total = _content_range(response)
            if total is None:
                total = (await self.stat(key)).size
            if first is None or last is None or first != offset or last < first:
                raise StoreUnavailable(f"{_shown(key)}: asked for bytes from {offset}, the "
                                       f"server sent {response.headers['content-range']!r}")
            count = last - first + 1
            wanted = total - offset if length is None else min(length, total - offset)
            if count != wanted or (announced is not None and announced != count):
                raise StoreUnavailable(f"{_shown(key)}: asked for {wanted} bytes, the server "
                                       f"announced {count}")
            return HttpReader(response, total, 0, count, key)
        if status == 200:
            size = announced if announced is not None else (await self.stat(key)).size
            self._check_offset(offset, size)
            left = size - offset
            return HttpReader(response, size, offset,
                              left if length is None else min(length, left), key)
        if status == 416:
            total = _content_range(response)[2]
            size = total if total is not None else (await self.stat(key)).size
            self._check_offset(offset, size)
            if size:
                raise StoreUnavailable(f"{_shown(key)}: the server refused a range inside "
                                       f"its {size} bytes (416)")
            return HttpReader(None, size, 0, 0, key)  # offset 0 of an empty object
        raise _failure(response, key)

    @staticmethod
    def _check_offset(offset: int, size: int) -> None:
        if offset >= size and not offset == size == 0:
            raise InvalidRange(f"offset {offset} outside object of {size} bytes", size)

    def _read_only(self) -> NoReturn:
        raise WriteDenied("the HTTP store is read-only")

    async def open_writer(self, key: str, size_hint: int | None = None) -> Writer:
        self._read_only()

    async def delete(self, key: str) -> None:
        self._read_only()

    async def discard(self, key: str) -> None:
        self._read_only()

    async def check(self) -> None:
        """Prove the configuration at start-up, without the network: the options were checked
        when the driver was built; this loads the TLS trust (`ca_file`)."""
        try:
            self._ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise StoreUnavailable(f"ca_file {self.options.ca_file!r}: {exc}") from exc

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
