"""A real Swift for the store tests: started by `scripts/swift`, or one already running.

`with running_swift(dir) as facts:` starts one in `dir` (a few seconds warm; see docs/stores.md,
"Testing"), gives what `scripts/swift start` wrote in `dir/swift.json`, and stops it after.
`GLIMPSE_TEST_SWIFT`, the path of a swift.json, names one to reuse instead.

`running_swift(dir, "--keystone", keystone_json)` also starts the Keystone-authenticated proxy:
its facts (Keystone v3 account, region, proxy) are under `"keystone"` in swift.json, and
`keystone_driver` makes drivers for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from glimpse.stores.swift import SwiftDriver, SwiftOptions

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "swift"
ENV = "GLIMPSE_TEST_SWIFT"


def start_swift(folder: Path, *extra: str) -> dict[str, Any]:
    result = subprocess.run(["bash", str(SCRIPT), "start", str(folder), *extra],
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode:
        raise RuntimeError(f"scripts/swift start failed:\n{result.stdout}\n{result.stderr}")
    facts: dict[str, Any] = json.loads((folder / "swift.json").read_text())
    return facts


def stop_swift(folder: Path) -> None:
    subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True,
                   timeout=120, check=False)


@contextmanager
def running_swift(folder: Path, *extra: str) -> Iterator[dict[str, Any]]:
    """A Swift in `folder` for the `with` block (its facts), stopped after it."""
    facts = start_swift(folder, *extra)
    try:
        yield facts
    finally:
        stop_swift(folder)


def reused_facts() -> dict[str, Any] | None:
    named = os.environ.get(ENV)
    if not named:
        return None
    facts: dict[str, Any] = json.loads(Path(named).read_text())
    return facts


def driver(facts: dict[str, Any], **options: Any) -> SwiftDriver:
    """A driver on its own fresh container, so that tests never see each other's objects."""
    settings: dict[str, Any] = {"container": f"t-{uuid.uuid4().hex[:12]}", **options}
    return SwiftDriver(SwiftOptions(auth_url=facts["auth_url"], user=facts["user"],
                                    key=facts["key"], **settings))


def keystone_driver(account: dict[str, Any], **options: Any) -> SwiftDriver:
    """A Keystone v3 driver (auth_version "3") for the Keystone proxy that `account` (the
    `"keystone"` facts of swift.json) describes, on its own fresh container."""
    login = {name: options.pop(name, account[name]) for name in ("auth_url", "user", "key")}
    settings: dict[str, Any] = {
        "auth_version": "3", "project_name": account["project_name"],
        "user_domain_name": account["user_domain_name"],
        "project_domain_name": account["project_domain_name"],
        "region_name": account["region_name"], **options}
    return driver(login, **settings)
