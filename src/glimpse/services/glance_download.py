"""The source of the `glance-download` import method: an image of another Glance (or Glimpse),
found through the Keystone catalog and read with the caller's own token.

`GlanceDownloader.find(token, region, interface, image_id)` asks Keystone for the caller's
catalog (`GET <keystone_auth_url>/v3/auth/catalog`), takes the endpoint of service type
`image` in that region with that interface, and reads the remote image's record
(`GET <endpoint>/v2/images/{id}`), which must be active. `open_data(found, token)` then opens
`GET <endpoint>/v2/images/{id}/file` and streams it (never buffered; a body shorter than its
`Content-Length` is an error, never a silently short image). TLS certificates are verified;
environment proxies are not used. The catalog is the operator's, so its endpoints are not put
through web-download's address filters (as in Glance).

What is copied to the local image (`RemoteImage.properties`): the remote `disk_format` and
`container_format`, and the properties whose names start with one of the configured prefixes
(Glance's `[glance_download_properties] extra_properties`, by default `hw_`, `trait:`,
`os_distro`, `os_secure_boot`, `os_type`), never a base attribute nor an `os_glance*` one.

Every failure is a `StoreError` whose message says what went wrong for the user:

    ObjectNotFound     no such endpoint in the catalog, or no such remote image (404)
    StoreUnavailable   Keystone or the remote service refused the token, answered otherwise,
                       cannot be reached, stalled, or broke the body off
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from glimpse.stores.errors import ObjectNotFound, StoreError, StoreUnavailable
from glimpse.stores.web import StreamedBody

#: Glance's default `[glance_download_properties] extra_properties` (name prefixes).
PROPERTY_PREFIXES = ("hw_", "trait:", "os_distro", "os_secure_boot", "os_type")

#: What an image document carries besides its extra properties: never copied.
_BASE = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "owner", "checksum",
    "os_hash_algo", "os_hash_value", "size", "virtual_size", "disk_format", "container_format",
    "min_disk", "min_ram", "created_at", "updated_at", "tags", "self", "file", "schema",
    "direct_url", "locations", "stores", "location", "deleted", "deleted_at"})
_RESERVED_PREFIX = "os_glance"


@dataclass(frozen=True)
class RemoteImage:
    """A remote image found for a glance-download: where its data is and what to copy."""

    endpoint: str
    image_id: str
    disk_format: str | None
    container_format: str | None
    size: int | None
    properties: dict[str, str]

    @property
    def data_url(self) -> str:
        return f"{self.endpoint}/v2/images/{self.image_id}/file"


def copied_properties(document: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, str]:
    """The properties of a remote image document that a glance-download copies."""
    return {key: value for key, value in document.items()
            if isinstance(value, str) and key not in _BASE
            and not key.startswith(_RESERVED_PREFIX)
            and any(key.startswith(prefix) for prefix in prefixes)}


def _catalog_url(keystone_url: str) -> str:
    base = keystone_url.rstrip("/")
    if not base.endswith("/v3"):
        base += "/v3"
    return base + "/auth/catalog"


class RemoteData(StreamedBody):
    """An open download of a remote image's data; `size` is its Content-Length, if sent."""

    def __init__(self, client: httpx.AsyncClient, response: httpx.Response, what: str,
                 size: int | None) -> None:
        super().__init__(client, response, size)
        self._what = what

    def broken(self, exc: httpx.TransportError) -> Exception:
        return StoreUnavailable(f"reading the data of {self._what} failed "
                                f"({type(exc).__name__}: {exc})")

    def short(self, received: int) -> Exception:
        return StoreUnavailable(f"the data of {self._what} ended after {received} of its "
                                f"{self.size} bytes")


class GlanceDownloader:
    """Reads images of other image services for glance-download (see the module docstring)."""

    def __init__(self, keystone_url: str, timeout: float = 60.0,
                 prefixes: tuple[str, ...] = PROPERTY_PREFIXES) -> None:
        self._catalog = _catalog_url(keystone_url)
        self._timeout = timeout
        self.prefixes = prefixes

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=ssl.create_default_context(), trust_env=False,
                                 follow_redirects=False, timeout=httpx.Timeout(self._timeout))

    async def find(self, token: str, region: str, interface: str,
                   image_id: str) -> RemoteImage:
        """The remote image `image_id` behind the catalog's image endpoint in `region` with
        `interface`, as the owner of `token` sees it; it must be active."""
        async with self._client() as client:
            endpoint = await self._endpoint(client, token, region, interface)
            what = f"image {image_id} at {endpoint}"
            response = await self._get(client, f"{endpoint}/v2/images/{image_id}", token, what)
            try:
                document = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise StoreUnavailable(f"{what}: the answer is not JSON") from exc
        if not isinstance(document, dict):
            raise StoreUnavailable(f"{what}: the answer is not an image")
        status = document.get("status")
        if status != "active":
            raise StoreUnavailable(f"{what} is {status}, not active: it has no data to "
                                   "download")
        size = document.get("size")
        return RemoteImage(
            endpoint, image_id,
            _text(document.get("disk_format")), _text(document.get("container_format")),
            size if isinstance(size, int) and size >= 0 else None,
            copied_properties(document, self.prefixes))

    async def open_data(self, found: RemoteImage, token: str) -> RemoteData:
        """Open the download of `found`'s data; the caller must `aclose()` it (`chunks()`
        does when it ends)."""
        what = f"image {found.image_id} at {found.endpoint}"
        client = self._client()
        try:
            request = client.build_request("GET", found.data_url, headers={
                "X-Auth-Token": token, "Accept-Encoding": "identity"})
            try:
                response = await client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise _unreachable(what, exc) from exc
            try:
                _check(response, what)
                value = response.headers.get("content-length")
                size = int(value) if value is not None and value.strip().isdigit() else None
                return RemoteData(client, response, what, size)
            except BaseException:
                await response.aclose()
                raise
        except BaseException:
            await client.aclose()
            raise

    async def _endpoint(self, client: httpx.AsyncClient, token: str, region: str,
                        interface: str) -> str:
        response = await self._get(client, self._catalog, token, "Keystone's catalog",
                                   keystone=True)
        try:
            catalog = response.json().get("catalog", [])
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise StoreUnavailable("Keystone's catalog answer is not a catalog") from exc
        for service in catalog if isinstance(catalog, list) else []:
            if not isinstance(service, dict) or service.get("type") != "image":
                continue
            for endpoint in service.get("endpoints") or []:
                if not isinstance(endpoint, dict):
                    continue
                if region in (endpoint.get("region_id"), endpoint.get("region")) \
                        and endpoint.get("interface") == interface \
                        and isinstance(endpoint.get("url"), str):
                    return str(endpoint["url"]).rstrip("/")
        raise ObjectNotFound(f"the catalog has no image endpoint in region {region!r} with "
                             f"interface {interface!r}")

    async def _get(self, client: httpx.AsyncClient, url: str, token: str, what: str,
                   keystone: bool = False) -> httpx.Response:
        try:
            response = await client.get(url, headers={"X-Auth-Token": token,
                                                      "Accept": "application/json"})
        except httpx.TransportError as exc:
            raise _unreachable(what, exc) from exc
        _check(response, what, keystone)
        return response


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _unreachable(what: str, exc: httpx.TransportError) -> StoreError:
    if isinstance(exc, httpx.TimeoutException):
        return StoreUnavailable(f"{what}: no answer in time ({type(exc).__name__})")
    return StoreUnavailable(f"{what} cannot be reached ({type(exc).__name__}: {exc})")


def _check(response: httpx.Response, what: str, keystone: bool = False) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 401:
        whose = "Keystone" if keystone else "the remote image service"
        raise StoreUnavailable(f"{what}: {whose} refused the token of the user who asked for "
                               "the import (expired or revoked?)")
    if status == 404 and not keystone:
        raise ObjectNotFound(f"{what} was not found (404)")
    if status == 403:
        raise StoreUnavailable(f"{what}: access refused (403)")
    raise StoreUnavailable(f"{what}: the server answered {status}")
