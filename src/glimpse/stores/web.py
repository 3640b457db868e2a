"""The byte source of the `web-download` import method: one GET of an `http(s)://` URL that a
user gave, guarded against server-side request forgery.

`ImportFilter` is the policy (Glance's `[import_filtering_opts]` plus Glimpse's address and time
limits); `ImportFilter.check(url)` judges a URL without the network (for the import call's 400),
and `open_download(url, filters, size_limit)` opens the download, eagerly: the URL, every
redirect target and every address a host resolves to are checked before any connection is made
to them, and the answer's status and `Content-Length` before it returns. Then `chunks()` streams
the body, counted.

Filtering follows Glance, level by level (scheme, host, port): an allow-list that is not empty
is the only rule of its level and its deny-list twin is ignored; otherwise the deny-list refuses
what it names. The port is judged only when the URL names one (a URL without a port uses its
scheme's default port and passes). Beyond Glance: credentials in the URL are refused; https is
never redirected to http; and unless `allow_private_networks`, every address a host resolves to
must be a public unicast address (no loopback, private, link-local such as 169.254.169.254,
shared, multicast, unspecified or reserved address), checked after DNS resolution on every
connection, which then goes to the very address checked (see `stores/http.py`). Environment
proxies are never used.

Errors (all `StoreError`s, their messages naming the URL, what was refused and why):

    DownloadRefused (InvalidKey)   the filter refused the URL or a redirect target
    DownloadTooLarge (StoreError)  Content-Length or the body exceeds `size_limit`
    ObjectNotFound                 the server answered 404 or 410
    StoreUnavailable               any other status, too many redirects, unreachable, no data
                                   for `timeout` seconds, a broken or short body
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from glimpse.stores.errors import InvalidKey, ObjectNotFound, StoreError, StoreUnavailable
from glimpse.stores.http import MAX_URL, _GuardedBackend, _refusal
from glimpse.stores.http import _shown as _without_query

#: The schemes the downloader speaks; others are refused whatever the lists say.
SCHEMES = ("http", "https")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class DownloadRefused(InvalidKey):
    """The import filter refused the URL, or a target it redirected to."""


class DownloadTooLarge(StoreError):
    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


def _shown(url: str) -> str:
    """The URL for messages: without its query (signed URLs carry tokens there) and without
    credentials (`user:password@` becomes `…@`)."""
    text = _without_query(url)
    scheme, sep, rest = text.partition("://")
    authority, slash, path = rest.partition("/")
    if sep and "@" in authority:
        text = f"{scheme}://…@{authority.rsplit('@', 1)[1]}{slash}{path}"
    return text


def _names(values: tuple[object, ...]) -> str:
    return ", ".join(str(v) for v in values)


@dataclass(frozen=True)
class ImportFilter:
    """Where web-download may connect, and how long it waits. The fields are the settings
    `import_<field>` (`timeout`: `web_download_timeout`, `max_redirects`:
    `web_download_max_redirects`). Raises `ValueError` naming the setting for a value that
    cannot work; schemes and hosts are compared in lower case, IPv6 hosts without brackets."""

    allowed_schemes: tuple[str, ...] = SCHEMES
    disallowed_schemes: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    disallowed_hosts: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = (80, 443)
    disallowed_ports: tuple[int, ...] = ()
    allow_private_networks: bool = False
    #: Seconds without progress (connecting, or between two reads of the body) before failing.
    timeout: float = 60.0
    max_redirects: int = 5

    def __post_init__(self) -> None:
        for name in ("allowed_schemes", "disallowed_schemes", "allowed_hosts",
                     "disallowed_hosts"):
            values = getattr(self, name)
            if not all(isinstance(v, str) and v.strip() for v in values):
                raise ValueError(f"import_{name}: must be a list of non-empty names")
            normal = tuple(v.strip().lower().removeprefix("[").removesuffix("]")
                           for v in values)
            object.__setattr__(self, name, normal)
        for scheme in self.allowed_schemes:
            if scheme not in SCHEMES:
                raise ValueError("import_allowed_schemes: web-download reads only http and "
                                 f"https URLs, not {scheme!r}")
        for name in ("allowed_ports", "disallowed_ports"):
            for port in getattr(self, name):
                if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                    raise ValueError(f"import_{name}: {port!r} is not a port (1-65535)")
        if not 0 <= self.max_redirects <= 20:
            raise ValueError("web_download_max_redirects: must be in 0..20")
        if not self.timeout > 0:
            raise ValueError("web_download_timeout: must be a positive number of seconds")

    def check(self, url: str) -> str:
        """Return `url` if the filter lets web-download fetch it, else raise `DownloadRefused`.

        Needs no network: a host given as a name is judged by its addresses when connecting
        (`open_download`); a host given as an address is judged here too."""
        why = self._reason(url)
        if why is not None:
            raise DownloadRefused(f"web-download of {_shown(url)} refused: {why}")
        return url

    def _reason(self, url: str) -> str | None:
        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            return f"a URL has 1 to {MAX_URL} characters"
        if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
            return "a URL has no spaces, control characters or backslashes"
        try:
            parts = urlsplit(url)
            explicit_port = parts.port
            parsed = httpx.URL(url)
        except (ValueError, httpx.InvalidURL) as exc:
            return f"not a valid URL ({exc})"
        scheme = parts.scheme.lower()
        if not scheme:
            return "the URL has no scheme"
        if self.allowed_schemes:
            if scheme not in self.allowed_schemes:
                return (f"scheme {scheme!r} is not in import_allowed_schemes "
                        f"({_names(self.allowed_schemes)})")
        elif scheme in self.disallowed_schemes:
            return f"scheme {scheme!r} is in import_disallowed_schemes"
        if scheme not in SCHEMES:
            return "web-download reads only http and https URLs"
        if "@" in parts.netloc:
            return "credentials in the URL are refused"
        host = (parts.hostname or "").lower()
        if not host:
            return "the URL has no host"
        if parsed.host.lower() != host or parsed.scheme != scheme:
            return "the URL is ambiguous (its parts read differently by different parsers)"
        if self.allowed_hosts:
            if host not in self.allowed_hosts:
                return f"host {host} is not in import_allowed_hosts"
        elif host in self.disallowed_hosts:
            return f"host {host} is in import_disallowed_hosts"
        if explicit_port is not None:
            if self.allowed_ports:
                if explicit_port not in self.allowed_ports:
                    return (f"port {explicit_port} is not in import_allowed_ports "
                            f"({_names(self.allowed_ports)})")
            elif explicit_port in self.disallowed_ports:
                return f"port {explicit_port} is in import_disallowed_ports"
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: its addresses are checked when connecting
        why = _refusal(host, self.allow_private_networks)
        return None if why is None else f"{why}; set import_allow_private_networks to allow it"


class _ImportBackend(_GuardedBackend):
    def _refused(self, host: str, why: str) -> StoreError:
        return DownloadRefused(f"{host}: {why}; set import_allow_private_networks to allow it")


def _client(filters: ImportFilter) -> httpx.AsyncClient:
    context = ssl.create_default_context()
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False)
    # as in stores/http.py: the pool is rebuilt with the guarded network backend
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context, max_connections=4, max_keepalive_connections=4,
        network_backend=_ImportBackend(filters.allow_private_networks))
    return httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False,
                             timeout=httpx.Timeout(filters.timeout))


def _unreachable(url: str, exc: httpx.TransportError, timeout: float) -> StoreUnavailable:
    if isinstance(exc, httpx.TimeoutException):
        return StoreUnavailable(f"web-download of {_shown(url)} failed: no progress for "
                                f"{timeout:g} s ({type(exc).__name__}; web_download_timeout)")
    return StoreUnavailable(f"web-download of {_shown(url)} failed: cannot be reached "
                            f"({type(exc).__name__}: {exc})")


class StreamedBody:
    """A response body streamed from an `httpx` client this object owns: `chunks()` yields it
    as it arrives, counted (more than `limit` bytes, or a body that breaks or ends before its
    `Content-Length`, raises: never a silently short stream), then closes the response and the
    client. Subclasses word the errors."""

    def __init__(self, client: httpx.AsyncClient, response: httpx.Response, size: int | None,
                 limit: int | None = None) -> None:
        self.size = size
        self._client: httpx.AsyncClient | None = client
        self._response = response
        self._limit = limit

    def too_large(self) -> Exception:
        return StoreUnavailable(f"the body exceeds the limit of {self._limit} bytes")

    def broken(self, exc: httpx.TransportError) -> Exception:
        return StoreUnavailable(f"reading the body failed ({type(exc).__name__}: {exc})")

    def short(self, received: int) -> Exception:
        return StoreUnavailable(f"the body ended after {received} of its {self.size} bytes")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, in chunks as they arrive (at most 64 KiB)."""
        try:
            received = 0
            try:
                async for part in self._response.aiter_raw():
                    received += len(part)
                    if self._limit is not None and received > self._limit:
                        raise self.too_large()
                    yield part
            except httpx.TransportError as exc:
                raise self.broken(exc) from exc
            if self.size is not None and received != self.size:
                raise self.short(received)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the response and its connections; idempotent."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await self._response.aclose()
            finally:
                await client.aclose()


class WebDownload(StreamedBody):
    """An open download. `size` is the announced `Content-Length`, None when the server sent
    none (a chunked or close-delimited body); `url` is the one answered, after redirects.
    `chunks()` raises `DownloadTooLarge` as soon as the bytes exceed `size_limit`,
    `StoreUnavailable` for a body that breaks, stalls past the timeout or ends short."""

    def __init__(self, client: httpx.AsyncClient, response: httpx.Response, url: str,
                 size: int | None, size_limit: int, timeout: float) -> None:
        super().__init__(client, response, size, size_limit)
        self.url = url
        self._timeout = timeout

    def too_large(self) -> Exception:
        return DownloadTooLarge(f"web-download of {_shown(self.url)} failed: the body exceeds "
                                f"the limit of {self._limit} bytes", self._limit or 0)

    def broken(self, exc: httpx.TransportError) -> Exception:
        return _unreachable(self.url, exc, self._timeout)

    def short(self, received: int) -> Exception:
        return StoreUnavailable(f"web-download of {_shown(self.url)} failed: the body ended "
                                f"after {received} of its {self.size} bytes")


async def open_download(url: str, filters: ImportFilter, size_limit: int) -> WebDownload:
    """Open a one-time download of `url`: check it with `filters`, follow redirects (at most
    `filters.max_redirects`, each target checked the same way), and return once a 200 answer
    has come whose `Content-Length`, if any, is at most `size_limit` bytes. Raises what the
    module docstring lists; the caller must `aclose()` the download (`chunks()` does when it
    ends)."""
    current = filters.check(url)
    client = _client(filters)
    try:
        for _ in range(filters.max_redirects + 1):
            request = client.build_request("GET", current, headers={
                "Accept-Encoding": "identity"})
            try:
                response = await client.send(request, stream=True)
            except DownloadRefused as exc:
                raise DownloadRefused(f"web-download of {_shown(url)} refused: "
                                      + (exc.message if current == url else
                                         f"its redirect to {_shown(current)}: {exc.message}")
                                      ) from exc
            except httpx.TransportError as exc:
                raise _unreachable(current, exc, filters.timeout) from exc
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location is not None:
                await response.aclose()
                current = _redirect(url, current, location, filters)
                continue
            try:
                return _answer(client, response, current, size_limit, filters)
            except BaseException:
                await response.aclose()
                raise
        raise StoreUnavailable(f"web-download of {_shown(url)} failed: more than "
                               f"{filters.max_redirects} redirects (web_download_max_redirects)")
    except BaseException:
        await client.aclose()
        raise


def _redirect(url: str, current: str, location: str, filters: ImportFilter) -> str:
    target = urljoin(current, location)
    try:
        filters.check(target)
    except DownloadRefused as exc:
        why = exc.message.split(" refused: ", 1)[-1]
        raise DownloadRefused(f"web-download of {_shown(url)} refused: its redirect to "
                              f"{_shown(target)}: {why}") from exc
    if current.lower().startswith("https:") and not target.lower().startswith("https:"):
        raise DownloadRefused(f"web-download of {_shown(url)} refused: its redirect from "
                              f"{_shown(current)} to {_shown(target)} would downgrade https "
                              "to http")
    return target


def _answer(client: httpx.AsyncClient, response: httpx.Response, url: str, size_limit: int,
            filters: ImportFilter) -> WebDownload:
    status = response.status_code
    if status in (404, 410):
        raise ObjectNotFound(f"web-download of {_shown(url)} failed: the server answered "
                             f"{status}")
    if status != 200:
        raise StoreUnavailable(f"web-download of {_shown(url)} failed: the server answered "
                               f"{status}")
    value = response.headers.get("content-length")
    size: int | None = None
    if value is not None:
        if not value.strip().isdigit():
            raise StoreUnavailable(f"web-download of {_shown(url)} failed: bad Content-Length "
                                   f"{value!r}")
        size = int(value)
        if size > size_limit:
            raise DownloadTooLarge(f"web-download of {_shown(url)} refused: its Content-Length "
                                   f"{size} exceeds the limit of {size_limit} bytes", size_limit)
    return WebDownload(client, response, url, size, size_limit, filters.timeout)
