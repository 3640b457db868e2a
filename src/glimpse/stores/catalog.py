"""Stores declared in configuration: `[stores.<id>]` tables → `Store`s, one explicit driver table.

    [stores.fast]
    driver = "filesystem"          # filesystem, swift, s3, http
    description = "Local disks"
    weight = 100
    path = "/var/lib/glimpse/images"

Every table names its `driver`; `description` and `weight` are optional; every other key is an
option of that driver, checked here at start-up (an unknown or missing option, a wrong type, names
the store and the option). `default_store` names the store uploads go to. Without any `[stores]`
table there is one filesystem store, `file`, under the data folder: the embedded default.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glimpse.stores.base import Driver, Store
from glimpse.stores.errors import StoreError
from glimpse.stores.filesystem import FilesystemDriver

#: Store ids: a key of the TOML file, and part of image locations; `os_glance_` is Glance's.
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DEFAULT_ID = "file"


class StoreConfigError(ValueError):
    """A store table that cannot work; the message names the store and the problem."""


@dataclass(frozen=True)
class StoreSpec:
    id: str
    driver: str
    description: str = ""
    weight: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)


def _filesystem(options: Mapping[str, Any]) -> Driver:
    return FilesystemDriver(**options)


def _swift(options: Mapping[str, Any]) -> Driver:
    from glimpse.stores.swift import SwiftDriver  # imported only where configured

    return SwiftDriver(**options)


def _s3(options: Mapping[str, Any]) -> Driver:
    from glimpse.stores.s3 import S3Driver

    return S3Driver(**options)


def _http(options: Mapping[str, Any]) -> Driver:
    from glimpse.stores.http import HttpDriver

    return HttpDriver(**options)


def _options_of(driver: str) -> type[Any]:
    """The driver's options dataclass: its fields are the `[stores.<id>]` options, the ones
    without a default are required (one declaration, in the driver)."""
    if driver == "filesystem":
        from glimpse.stores.filesystem import FilesystemOptions

        return FilesystemOptions
    if driver == "swift":
        from glimpse.stores.swift import SwiftOptions

        return SwiftOptions
    if driver == "http":
        from glimpse.stores.http import HttpOptions

        return HttpOptions
    from glimpse.stores.s3 import S3Options

    return S3Options


#: driver name → what builds it from its options.
DRIVERS: dict[str, Callable[[Mapping[str, Any]], Driver]] = {
    "filesystem": _filesystem, "swift": _swift, "s3": _s3, "http": _http,
}
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
}


def _check_options(where: str, driver: str, given: Mapping[str, Any]) -> None:
    known = {f.name: f for f in dataclasses.fields(_options_of(driver))}
    for name, value in given.items():
        found = known.get(name)
        if found is None:
            raise StoreConfigError(f"{where}.{name}: not an option of the {driver} driver "
                                   f"(options: {', '.join(sorted(known))})")
        kind = str(found.type).replace(" | None", "")
        allowed = _TYPES.get(kind, (object,))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise StoreConfigError(f"{where}.{name}: must be {kind}")
    missing = [name for name, f in known.items()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and name not in given]
    if missing:
        raise StoreConfigError(f"{where}: missing {', '.join(missing)}")


def parse(tables: Mapping[str, Any]) -> tuple[StoreSpec, ...]:
    """`StoreSpec`s from the `[stores]` table of the configuration file."""
    specs = []
    for store_id, table in tables.items():
        where = f"stores.{store_id}"
        if not ID_PATTERN.fullmatch(store_id) or store_id.startswith("os_glance_"):
            raise StoreConfigError(f"{where}: a store id is 1-64 lower-case letters, digits, "
                                   "'-' or '_' (and not os_glance_*)")
        if not isinstance(table, Mapping):
            raise StoreConfigError(f"{where}: must be a table")
        rest = dict(table)
        driver = rest.pop("driver", None)
        if driver not in DRIVERS:
            raise StoreConfigError(f"{where}: driver must be one of {', '.join(DRIVERS)}, "
                                   f"not {driver!r}")
        description = rest.pop("description", "")
        weight = rest.pop("weight", 0)
        if not isinstance(description, str):
            raise StoreConfigError(f"{where}.description: must be a string")
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise StoreConfigError(f"{where}.weight: must be an integer")
        _check_options(where, driver, rest)
        try:  # the driver's own checks of values that cannot work
            _options_of(driver)(**rest)
        except (TypeError, ValueError) as exc:
            raise StoreConfigError(f"{where}: {exc}") from exc
        specs.append(StoreSpec(store_id, driver, description, weight, rest))
    return tuple(specs)


def default_specs(images_dir: Path) -> tuple[StoreSpec, ...]:
    """The embedded default: one filesystem store under the data folder."""
    return (StoreSpec(DEFAULT_ID, "filesystem", "Local filesystem",
                      options={"path": str(images_dir)}),)


def build(specs: tuple[StoreSpec, ...]) -> dict[str, Store]:
    """The `Store`s of `specs`, heaviest weight first (the order locations are tried in)."""
    stores = {}
    for spec in sorted(specs, key=lambda s: -s.weight):
        make = DRIVERS[spec.driver]
        try:
            driver = make(spec.options)
        except (TypeError, ValueError, OSError) as exc:
            raise StoreConfigError(f"stores.{spec.id}: {exc}") from exc
        stores[spec.id] = Store(spec.id, driver, spec.description, spec.weight)
    return stores


async def check(stores: Mapping[str, Store]) -> None:
    """Prove every store at start-up; raises `StoreConfigError` naming the store and the
    problem. Closes the drivers' connections afterwards (workers open their own)."""
    try:
        for store in stores.values():
            try:
                await store.check()
            except StoreError as exc:
                raise StoreConfigError(f"stores.{store.id}: {exc.message}") from exc
    finally:
        for store in stores.values():
            await store.aclose()
