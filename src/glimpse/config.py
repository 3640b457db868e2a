"""Configuration: defaults, then a TOML file, then `GLIMPSE_*` environment variables, then flags.

Every setting is optional; with none, Glimpse serves on 127.0.0.1:9292 with SQLite and the
filesystem store under `./data`. A bad value fails at start-up with a message naming the setting.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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
    max_request_body_size: int = field(
        default=114688, metadata={"help": "largest JSON request body, in bytes"}
    )
    upload_heartbeat_interval: float = field(
        default=10.0, metadata={"help": "seconds between an upload's liveness marks"}
    )
    upload_stale_after: float = field(
        default=60.0,
        metadata={"help": "seconds without a liveness mark before an upload counts as dead"},
    )
    default_project: str = field(
        default="admin", metadata={"help": "project of requests that name none (no-auth mode)"}
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir).resolve() / 'glimpse.db'}"

    @property
    def processes(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def images_dir(self) -> Path:
        return Path(self.data_dir).resolve() / "images"

    def validate(self) -> Settings:
        import hashlib

        if self.hashing_algorithm not in hashlib.algorithms_available:
            raise ConfigError(f"hashing_algorithm: unknown algorithm {self.hashing_algorithm!r}")
        for name in ("port", "image_size_cap", "limit_param_default", "api_limit_max"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        if self.workers < 0:
            raise ConfigError("workers: must be 0 (one per CPU core) or more")
        if self.upload_stale_after <= self.upload_heartbeat_interval:
            raise ConfigError("upload_stale_after: must exceed upload_heartbeat_interval")
        return self


def _coerce(name: str, kind: Any, value: Any) -> Any:
    try:
        if kind in (int, "int"):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind in (float, "float"):
            return float(value)
        if kind in ("tuple[str, ...]",):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
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
            if key not in known:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, known[key], value)
    for key, kind in known.items():
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
            default = ",".join(default)
        lines.append(f"  {f.name:<26} GLIMPSE_{f.name.upper():<28} {f.metadata.get('help', '')}"
                     f" [{default}]")
    return "\n".join(lines)
