"""Configuration: defaults, then a TOML file, then `GLIMPSE_*` environment variables, then flags.

Every setting is optional; with none, Glimpse serves on 127.0.0.1:9292 with SQLite and the
filesystem store under `./data`. A bad value fails at start-up with a message naming the setting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from glimpse.stores.catalog import StoreConfigError, StoreSpec, default_specs, parse

if TYPE_CHECKING:
    from glimpse.services.conversion import ConversionSettings
    from glimpse.stores.web import ImportFilter

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=9292, metadata={"help": "port to listen on"})
    data_dir: str = field(
        default="data", metadata={"help": "folder for the SQLite database and the image files"}
    )
    database_url: str = field(
        default="",
        metadata={"help": "SQLAlchemy URL of the registry (default: SQLite in data_dir)"},
    )
    workers: int = field(
        default=0, metadata={"help": "server processes; 0 means one per CPU core, as Glance"}
    )
    public_endpoint: str = field(
        default="", metadata={"help": "base URL advertised in the versions document"}
    )
    image_size_cap: int = field(
        default=1024**4, metadata={"help": "largest image accepted, in bytes (413 above)"}
    )
    limit_param_default: int = field(default=25, metadata={"help": "default page size"})
    api_limit_max: int = field(default=1000, metadata={"help": "largest page size"})
    hashing_algorithm: str = field(default="sha512", metadata={"help": "os_hash_algo"})
    disk_formats: tuple[str, ...] = field(
        default=DISK_FORMATS, metadata={"help": "accepted disk_format values (comma-separated)"}
    )
    container_formats: tuple[str, ...] = field(
        default=CONTAINER_FORMATS,
        metadata={"help": "accepted container_format values (comma-separated)"},
    )
    image_property_quota: int = field(default=128, metadata={"help": "extra properties per image"})
    image_tag_quota: int = field(default=128, metadata={"help": "tags per image"})
    image_member_quota: int = field(
        default=128, metadata={"help": "members per image (-1: no limit)"}
    )
    image_location_quota: int = field(
        default=10, metadata={"help": "locations per image (-1: no limit)"}
    )
    # -- locations (docs/stores.md) --
    show_multiple_locations: bool = field(
        default=False, metadata={"help": "images show `locations`, and PATCH may change them "
                                         "(Glance's switch; for internal endpoints only)"})
    show_image_direct_url: bool = field(
        default=False, metadata={"help": "images show `direct_url` (their first location)"})
    do_secure_hash: bool = field(
        default=True, metadata={"help": "hash the data of a location added by POST "
                                        "/v2/images/{id}/locations before the image is active"})
    http_retries: int = field(
        default=3, metadata={"help": "attempts to read a new location's data before its task "
                                     "fails"})
    # -- web-download (docs/import.md): Glance's [import_filtering_opts] and limits --
    import_allowed_schemes: tuple[str, ...] = field(
        default=("http", "https"), metadata={"help": "schemes web-download may fetch; when set, "
                                                     "import_disallowed_schemes is ignored"})
    import_disallowed_schemes: tuple[str, ...] = field(
        default=(), metadata={"help": "schemes web-download refuses (if no allowed list)"})
    import_allowed_hosts: tuple[str, ...] = field(
        default=(), metadata={"help": "the only hosts web-download may fetch from (empty: any); "
                                      "when set, import_disallowed_hosts is ignored"})
    import_disallowed_hosts: tuple[str, ...] = field(
        default=(), metadata={"help": "hosts web-download refuses (if no allowed list)"})
    import_allowed_ports: tuple[int, ...] = field(
        default=(80, 443), metadata={"help": "ports a web-download URL may name (a URL without "
                                             "a port passes); when set, "
                                             "import_disallowed_ports is ignored"})
    import_disallowed_ports: tuple[int, ...] = field(
        default=(), metadata={"help": "ports a web-download URL may not name (if no allowed "
                                      "list)"})
    import_allow_private_networks: bool = field(
        default=False, metadata={"help": "let web-download reach loopback, private, link-local "
                                         "(169.254.169.254), shared, multicast and reserved "
                                         "addresses"})
    web_download_timeout: float = field(
        default=60.0, metadata={"help": "seconds a web-download waits without progress "
                                        "(connecting, or for the next bytes) before failing"})
    web_download_max_redirects: int = field(
        default=5, metadata={"help": "redirects a web-download follows (0-20)"})
    staging_dir: str = field(
        default="", metadata={"help": "folder of data staged for imports (default: "
                                      "data_dir/staging); servers of one deployment on several "
                                      "hosts must share it, or set "
                                      "worker_self_reference_url (docs/import.md)"})
    worker_self_reference_url: str = field(
        default="", metadata={"help": "this server's URL as the other servers of the "
                                      "deployment reach it: data staged here is then imported "
                                      "and deleted through it by servers that do not share "
                                      "staging_dir (docs/import.md)"})
    # -- per-project quotas (docs/quotas.md); -1: no limit --
    image_count_total: int = field(
        default=-1, metadata={"help": "images a project may own (-1: no limit)"}
    )
    image_size_total: int = field(
        default=-1, metadata={"help": "bytes of image data a project may store (-1: no limit)"}
    )
    image_stage_total: int = field(
        default=-1, metadata={"help": "bytes a project may hold in staging (-1: no limit)"}
    )
    image_count_uploading: int = field(
        default=-1, metadata={"help": "images of a project uploading at once (-1: no limit)"}
    )
    use_keystone_limits: bool = field(
        default=False, metadata={"help": "take project limits from Keystone unified limits "
                                         "(needs auth = keystone; docs/quotas.md)"}
    )
    keystone_limits_endpoint_id: str = field(
        default="", metadata={"help": "Keystone endpoint id whose limits apply (oslo.limit's "
                                      "endpoint_id; empty: look up by service type)"}
    )
    keystone_limits_endpoint_service_type: str = field(
        default="image", metadata={"help": "service type of the endpoint whose limits apply"}
    )
    keystone_limits_endpoint_region_name: str = field(
        default="", metadata={"help": "region of that endpoint (empty: any, if only one)"}
    )
    keystone_limits_endpoint_interface: str = field(
        default="public", metadata={"help": "interface of that endpoint: public, internal "
                                            "or admin"}
    )
    keystone_limits_cache_time: float = field(
        default=60.0, metadata={"help": "seconds a project's Keystone limits are used without "
                                        "asking again (0: ask every time)"}
    )
    policy_file: str = field(
        default="",
        metadata={"help": "YAML file overriding Glance's default policy rules, by rule name"},
    )
    property_protection_file: str = field(
        default="",
        metadata={"help": "Glance's INI file of property protections (docs/protections.md); "
                          "empty: none"},
    )
    property_protection_rule_format: str = field(
        default="roles",
        metadata={"help": "format of property_protection_file: roles (policies is not "
                          "supported)"},
    )
    enabled_import_methods: tuple[str, ...] = field(
        default=("glance-direct", "web-download", "copy-image"),
        metadata={"help": "import methods offered by POST /v2/images/{id}/import "
                          "(comma-separated; docs/import.md): glance-direct, web-download, "
                          "copy-image, glance-download (offered only with auth = keystone)"})
    glance_download_properties: tuple[str, ...] = field(
        default=("hw_", "trait:", "os_distro", "os_secure_boot", "os_type"),
        metadata={"help": "name prefixes of the properties a glance-download copies from the "
                          "remote image (Glance's [glance_download_properties] "
                          "extra_properties; comma-separated; os_glance* never)"})
    require_image_format_match: bool = field(
        default=True, metadata={"help": "inspect image data on every ingest path and refuse "
                                        "data that is not its disk_format or is unsafe "
                                        "(docs/image-safety.md)"})
    vmdk_allowed_types: tuple[str, ...] = field(
        default=("streamOptimized", "monolithicSparse"),
        metadata={"help": "VMDK create types accepted (comma-separated)"})
    # -- conversion on import (docs/conversion.md): Glance's [image_conversion] --
    image_conversion_output_format: str = field(
        default="", metadata={"help": "convert glance-direct and web-download imports to this "
                                      "disk_format with qemu-img (raw, qcow2, vmdk, vhd, vhdx, "
                                      "vdi); empty: no conversion"})
    image_conversion_address_space: int = field(
        default=1 << 30, metadata={"help": "address space (bytes) of every qemu-img run"})
    image_conversion_info_cpu_seconds: int = field(
        default=30, metadata={"help": "CPU seconds of one qemu-img info"})
    image_conversion_info_timeout: float = field(
        default=60.0, metadata={"help": "wall-clock seconds of one qemu-img info"})
    image_conversion_cpu_seconds: int = field(
        default=600, metadata={"help": "CPU seconds of one qemu-img convert"})
    image_conversion_timeout: float = field(
        default=3600.0, metadata={"help": "wall-clock seconds of one qemu-img convert"})
    image_conversion_qemu_img: str = field(
        default="qemu-img", metadata={"help": "the qemu-img program (on PATH, or a path)"})
    signature_certificates_dir: str = field(
        default="",
        metadata={"help": "folder of PEM certificates named <uuid>.pem that signed images "
                          "name (img_signature_certificate_uuid); empty: signed images are "
                          "refused (docs/signatures.md)"},
    )
    max_request_body_size: int = field(
        default=114688, metadata={"help": "largest JSON request body, in bytes"}
    )
    max_request_line: int = field(
        default=8192, metadata={"help": "longest request line (method and target), in bytes "
                                        "(414 above)"}
    )
    max_header_line: int = field(
        default=16384, metadata={"help": "longest request header line, in bytes (431 above)"}
    )
    max_header_size: int = field(
        default=65536, metadata={"help": "request header lines together, in bytes (431 above)"}
    )
    max_header_count: int = field(
        default=100, metadata={"help": "most request header lines (431 above)"}
    )
    default_store: str = field(
        default="", metadata={"help": "the store uploads go to (default: the only one, or "
                                      "the heaviest [stores.<id>])"})
    #: `[stores.<id>]` tables of the configuration file (TOML only); none: the embedded default.
    stores: tuple[StoreSpec, ...] = field(default=(), metadata={"help": "[stores.<id>] tables "
                                                                "(file only; docs/stores.md)"})
    upload_heartbeat_interval: float = field(
        default=10.0, metadata={"help": "seconds between an upload's liveness marks"}
    )
    upload_stale_after: float = field(
        default=60.0,
        metadata={"help": "seconds without a liveness mark before an upload counts as dead"},
    )
    write_retry_timeout: float = field(
        default=5.0,
        metadata={"help": "seconds a change retries against concurrent writers of the same "
                          "fields before it answers 409"},
    )
    cleanup_interval: float = field(
        default=10.0,
        metadata={"help": "seconds between runs of the recorded data-cleanup jobs"},
    )
    default_project: str = field(
        default="admin", metadata={"help": "project of requests that name none (no-auth mode)"}
    )
    log_level: str = field(
        default="info", metadata={"help": "critical, error, warning, info, debug or trace"}
    )
    access_log: bool = field(
        default=True, metadata={"help": "log one line per request (logger glimpse.access)"}
    )
    # -- identity (docs/identity.md) --
    auth: str = field(
        default="noauth", metadata={"help": "noauth, keystone or tokens (flag --auth)"}
    )
    allow_noauth_on_network: bool = field(
        default=False,
        metadata={"help": "serve noauth on a non-loopback host (flag --insecure-noauth)"},
    )
    token_file: str = field(
        default="", metadata={"help": "API tokens of auth = tokens (default: data_dir/tokens)"}
    )
    keystone_auth_url: str = field(
        default="", metadata={"help": "Keystone v3 URL that validates tokens (auth = keystone)"}
    )
    keystone_www_authenticate_uri: str = field(
        default="", metadata={"help": "Keystone URL sent to clients in WWW-Authenticate "
                                      "(default: keystone_auth_url)"}
    )
    keystone_username: str = field(default="", metadata={"help": "service user of Glimpse"})
    keystone_password: str = field(
        default="", repr=False, metadata={"help": "password of the service user"}
    )
    keystone_project_name: str = field(
        default="", metadata={"help": "project of the service user (e.g. service)"}
    )
    keystone_user_domain_name: str = field(
        default="Default", metadata={"help": "domain of the service user"}
    )
    keystone_project_domain_name: str = field(
        default="Default", metadata={"help": "domain of the service user's project"}
    )
    keystone_token_cache_time: int = field(
        default=300, metadata={"help": "seconds a validated token is trusted without asking "
                                       "Keystone again (a revocation waits as long); -1: no cache"}
    )
    keystone_timeout: float = field(
        default=10.0, metadata={"help": "seconds to wait for Keystone before answering 503"}
    )

    @property
    def import_filter(self) -> ImportFilter:
        """The web-download policy of these settings (`stores/web.py`)."""
        from glimpse.stores.web import ImportFilter

        return ImportFilter(
            allowed_schemes=self.import_allowed_schemes,
            disallowed_schemes=self.import_disallowed_schemes,
            allowed_hosts=self.import_allowed_hosts,
            disallowed_hosts=self.import_disallowed_hosts,
            allowed_ports=self.import_allowed_ports,
            disallowed_ports=self.import_disallowed_ports,
            allow_private_networks=self.import_allow_private_networks,
            timeout=self.web_download_timeout,
            max_redirects=self.web_download_max_redirects)

    @property
    def conversion(self) -> ConversionSettings:
        """The conversion settings of imports (`services/conversion.py`)."""
        from glimpse.services.conversion import ConversionSettings

        return ConversionSettings(
            output_format=self.image_conversion_output_format or None,
            cpu_seconds=self.image_conversion_info_cpu_seconds,
            address_space=self.image_conversion_address_space,
            timeout=self.image_conversion_info_timeout,
            convert_cpu_seconds=self.image_conversion_cpu_seconds,
            convert_timeout=self.image_conversion_timeout,
            vmdk_allowed_types=self.vmdk_allowed_types,
            qemu_img=self.image_conversion_qemu_img)

    @property
    def staging_path(self) -> Path:
        return Path(self.staging_dir) if self.staging_dir else Path(self.data_dir) / "staging"

    @property
    def tokens_path(self) -> Path:
        return Path(self.token_file) if self.token_file else Path(self.data_dir) / "tokens"

    @property
    def www_authenticate_uri(self) -> str:
        return self.keystone_www_authenticate_uri or self.keystone_auth_url

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir).resolve() / 'glimpse.db'}"

    @property
    def processes(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def store_specs(self) -> tuple[StoreSpec, ...]:
        """The configured stores, or the embedded default (one filesystem store)."""
        return self.stores or default_specs(self.images_dir)

    @property
    def upload_store(self) -> str:
        """The store uploads go to."""
        specs = self.store_specs
        return self.default_store or max(specs, key=lambda s: s.weight).id

    @property
    def images_dir(self) -> Path:
        return Path(self.data_dir).resolve() / "images"

    def validate(self) -> Settings:
        ids = [spec.id for spec in self.store_specs]
        if self.default_store and self.default_store not in ids:
            raise ConfigError(f"default_store: no store {self.default_store!r} "
                              f"(stores: {', '.join(ids)})")
        """These settings (with `log_level` in lower case) if every value can work; otherwise
        `ConfigError` naming the first bad setting. Beyond ranges, it checks what would only fail
        later: the hash algorithm, the log level, the database URL and its driver, the host."""
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        for name in _SECONDS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: must be a positive number of seconds, not {value}")
        for name in ("image_property_quota", "image_tag_quota"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be 0 or more")
        for name in ("image_member_quota", *CAN_BE_UNLIMITED):
            if getattr(self, name) < -1:
                raise ConfigError(f"{name}: must be -1 (no limit), 0 or more")
        if self.use_keystone_limits:
            _check_keystone_limits(self)
        if self.policy_file:
            _check_policy(self.policy_file)
        if self.port > 65535:
            raise ConfigError("port: must be at most 65535")
        if self.workers < 0:
            raise ConfigError("workers: must be 0 (one per CPU core) or more")
        if self.upload_stale_after <= self.upload_heartbeat_interval:
            raise ConfigError("upload_stale_after: must exceed upload_heartbeat_interval")
        for name in ("disk_formats", "container_formats"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: must name at least one format")
        if not self.default_project.strip():
            raise ConfigError("default_project: must not be empty")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"log_level: unknown level {self.log_level!r}; use one of "
                              + ", ".join(LOG_LEVELS))
        _check_hash(self.hashing_algorithm)
        _check_database(self.database)
        _check_endpoint("public_endpoint", self.public_endpoint)
        _check_endpoint("worker_self_reference_url", self.worker_self_reference_url)
        _check_host(self.host, self.port)
        _check_identity(self)
        _check_protections(self)
        _check_import_filter(self)
        unknown = set(self.enabled_import_methods) - {"glance-direct", "web-download",
                                                       "copy-image", "glance-download"}
        if unknown:
            raise ConfigError(f"enabled_import_methods: unknown or unsupported "
                              f"{', '.join(sorted(unknown))} (glance-direct, web-download, "
                              "copy-image, glance-download)")
        _check_conversion(self)
        if self.signature_certificates_dir and not Path(self.signature_certificates_dir).is_dir():
            raise ConfigError("signature_certificates_dir: no such folder "
                              f"{self.signature_certificates_dir}")
        return dataclasses.replace(self, log_level=self.log_level.lower())


#: The per-project quotas (Glance's unified-limit names).
PROJECT_QUOTAS = ("image_size_total", "image_stage_total", "image_count_total",
                  "image_count_uploading")
#: Quotas where -1 means no limit.
CAN_BE_UNLIMITED = ("image_location_quota", *PROJECT_QUOTAS)
#: Integer settings that must be above 0.
_POSITIVE = ("port", "http_retries", "image_size_cap", "limit_param_default", "api_limit_max",
             "max_request_body_size", "max_request_line", "max_header_line", "max_header_size",
             "max_header_count")
#: Durations, in seconds.
_SECONDS = ("upload_heartbeat_interval", "upload_stale_after", "write_retry_timeout",
            "cleanup_interval", "keystone_timeout", "web_download_timeout",
            "image_conversion_info_timeout", "image_conversion_timeout")
#: The levels both `logging` and uvicorn know (uvicorn adds "trace").
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _check_hash(algorithm: str) -> None:
    """The upload pipeline must be able to build the hash and take a digest of no set length
    (so not `shake_128`/`shake_256`), as it does: `hashlib.new(name).hexdigest()`."""
    try:
        hasher = (hashlib.md5(usedforsecurity=False) if algorithm == "md5"
                  else hashlib.new(algorithm))
        hasher.hexdigest()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hashing_algorithm: cannot use {algorithm!r}: {exc}") from exc


def _check_database(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"database_url: cannot parse {url!r}") from exc
    try:
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError as exc:
        raise ConfigError(f"database_url: unknown database {parsed.drivername!r}") from exc
    except ImportError as exc:
        raise ConfigError(f"database_url: the driver for {parsed.drivername!r} is not "
                          f"installed ({exc})") from exc


def _check_endpoint(name: str, endpoint: str) -> None:
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{name}: {endpoint!r} is not an http(s) URL with a host")


def _check_host(host: str, port: int) -> None:
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"host: cannot resolve {host!r}: {reason}") from exc


def _check_policy(path: str) -> None:
    """The operator's policy file loads (read at start-up, so a broken one never serves)."""
    if not Path(path).is_file():
        raise ConfigError(f"policy_file: no such file {path}")
    from glimpse.services.policy import Policy, PolicyFileError  # only when one is set

    try:
        Policy(path)
    except PolicyFileError as exc:
        raise ConfigError(f"policy_file: {exc}".replace("\n", " ")) from exc


def _check_import_filter(settings: Settings) -> None:
    """The web-download lists can work (known schemes, real ports): the filter says which
    setting is wrong."""
    try:
        settings.import_filter  # noqa: B018 (built for its checks)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


#: ConversionSettings field -> the setting that fills it.
_CONVERSION_SETTINGS = {
    "output_format": "image_conversion_output_format",
    "cpu_seconds": "image_conversion_info_cpu_seconds",
    "address_space": "image_conversion_address_space",
    "timeout": "image_conversion_info_timeout",
    "convert_cpu_seconds": "image_conversion_cpu_seconds",
    "convert_timeout": "image_conversion_timeout",
}


def _check_conversion(settings: Settings) -> None:
    """The conversion settings can be built, and the output is a disk_format this server
    takes. (`glimpse serve` also checks that qemu-img is installed.)"""
    try:
        settings.conversion  # noqa: B018 (built for its checks)
    except ValueError as exc:
        field_name, _, why = str(exc).partition(": ")
        name = _CONVERSION_SETTINGS.get(field_name, field_name)
        raise ConfigError(f"{name}: {why}") from exc
    output = settings.image_conversion_output_format
    if output and output not in settings.disk_formats:
        raise ConfigError(f"image_conversion_output_format: {output!r} is not one of "
                          f"disk_formats ({', '.join(settings.disk_formats)})")


def _check_protections(settings: Settings) -> None:
    """The rule format must be `roles` (Glance's `policies` is not built), and the file, when
    set, must load: a broken one would otherwise surface per request."""
    rule_format = settings.property_protection_rule_format
    if rule_format == "policies":
        raise ConfigError("property_protection_rule_format: 'policies' is not supported; "
                          "write the file in the roles format (docs/protections.md)")
    if rule_format != "roles":
        raise ConfigError(f"property_protection_rule_format: unknown format {rule_format!r}; "
                          "use roles")
    if settings.property_protection_file:
        # Imported only here: the rules pull in the policy engine, which other commands skip.
        from glimpse.services.protections import PropertyRules, ProtectionFileError

        try:
            PropertyRules.from_file(settings.property_protection_file)
        except ProtectionFileError as exc:
            raise ConfigError(f"property_protection_file: {exc}") from exc


AUTH_MODES = ("noauth", "keystone", "tokens")
#: The service credentials keystone mode cannot work without.
KEYSTONE_REQUIRED = ("keystone_auth_url", "keystone_username", "keystone_password",
                     "keystone_project_name")


def _check_identity(settings: Settings) -> None:
    if settings.auth not in AUTH_MODES:
        raise ConfigError(f"auth: unknown mode {settings.auth!r}; use one of "
                          + ", ".join(AUTH_MODES))
    if settings.auth == "keystone":
        for name in KEYSTONE_REQUIRED:
            if not getattr(settings, name).strip():
                raise ConfigError(f"{name}: required with auth = keystone "
                                  f"(GLIMPSE_{name.upper()})")
        for name in ("keystone_auth_url", "keystone_www_authenticate_uri"):
            url = getattr(settings, name)
            parts = urlsplit(url)
            if url and (parts.scheme not in ("http", "https") or not parts.hostname):
                raise ConfigError(f"{name}: {url!r} is not an http(s) URL with a host")
        if settings.keystone_token_cache_time < 1 and settings.keystone_token_cache_time != -1:
            # 0 would be "forever" in keystonemiddleware's in-process cache.
            raise ConfigError("keystone_token_cache_time: must be -1 (no cache) or at least 1")
    if (settings.auth == "noauth" and not settings.allow_noauth_on_network
            and not is_loopback(settings.host, settings.port)):
        raise ConfigError(
            f"host: {settings.host!r} is reachable from the network, and auth = noauth makes "
            "every caller an admin; use auth = keystone or tokens, listen on 127.0.0.1, or "
            "pass --insecure-noauth (allow_noauth_on_network = true) to serve it anyway")


LIMITS_INTERFACES = ("public", "internal", "admin")


def _check_keystone_limits(settings: Settings) -> None:
    """Keystone unified limits are asked with the service credentials of keystone mode."""
    if settings.auth != "keystone":
        raise ConfigError(
            f"use_keystone_limits: needs auth = keystone (not {settings.auth}): the limits are "
            "read from Keystone with its keystone_* service credentials; otherwise set the "
            "project limits with " + ", ".join(PROJECT_QUOTAS) + " (docs/quotas.md)")
    if not (settings.keystone_limits_endpoint_id.strip()
            or settings.keystone_limits_endpoint_service_type.strip()):
        raise ConfigError("keystone_limits_endpoint_service_type: required with "
                          "use_keystone_limits unless keystone_limits_endpoint_id is set")
    if settings.keystone_limits_endpoint_interface not in LIMITS_INTERFACES:
        raise ConfigError(f"keystone_limits_endpoint_interface: unknown interface "
                          f"{settings.keystone_limits_endpoint_interface!r}; use one of "
                          + ", ".join(LIMITS_INTERFACES))
    cache_time = settings.keystone_limits_cache_time
    if not (math.isfinite(cache_time) and cache_time >= 0):
        raise ConfigError(f"keystone_limits_cache_time: must be 0 or more seconds, "
                          f"not {cache_time}")


def is_loopback(host: str, port: int) -> bool:
    """Whether every address `host` resolves to is a loopback address."""
    import ipaddress

    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in found}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _coerce(name: str, kind: Any, value: Any) -> Any:
    try:
        if kind in (bool, "bool"):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise ValueError
        if kind in (int, "int"):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind in (float, "float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind in ("tuple[str, ...]", "tuple[int, ...]"):
            items = value.split(",") if isinstance(value, str) else list(value)
            texts = tuple(str(i).strip() for i in items if str(i).strip())
            if kind == "tuple[int, ...]":
                if any(isinstance(i, (bool, float)) for i in items):
                    raise ValueError
                return tuple(int(t) for t in texts)
            return texts
        if isinstance(value, (bool, list, dict)):
            raise ValueError  # a TOML value that is no string
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot use {value!r} ({kind})") from exc


def load(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from the file (or `GLIMPSE_CONFIG`), the environment and explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get("GLIMPSE_CONFIG")
    known = {f.name: f.type for f in fields(Settings)}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        for key, value in data.items():
            if key == "stores":
                try:
                    values["stores"] = parse(value if isinstance(value, dict) else {})
                except StoreConfigError as exc:
                    raise ConfigError(str(exc)) from exc
                continue
            if key not in known:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, known[key], value)
    for key, kind in known.items():
        if key == "stores":
            continue  # tables live in the file only
        raw = env.get(f"GLIMPSE_{key.upper()}")
        if raw is not None:
            values[key] = _coerce(key, kind, raw)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, known[key], value)
    return dataclasses.replace(Settings(), **values).validate()


def describe() -> str:
    """One line per setting, for `glimpse serve --help`."""
    lines = []
    for f in fields(Settings):
        default = f.default if f.default is not dataclasses.MISSING else ""
        if isinstance(default, tuple):
            default = ",".join(str(d) for d in default)
        lines.append(f"  {f.name:<26} GLIMPSE_{f.name.upper():<28} {f.metadata.get('help', '')}"
                     f" [{default}]")
    return "\n".join(lines)
