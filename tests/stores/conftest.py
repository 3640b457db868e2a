"""Every store driver gives a factory here; the conformance suite runs against each of them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.stores.base import Store
from glimpse.stores.filesystem import FilesystemDriver
from glimpse.stores.s3 import S3Driver
from glimpse.stores.swift import SwiftDriver
from tests.keystone import start_keystone
from tests.stores import s3_server, swift_server


@pytest.fixture(scope="session")
def swift_keystone_facts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The Keystone-authenticated proxy of a real Swift (the `"keystone"` facts of swift.json).

    A Swift that `GLIMPSE_TEST_SWIFT` names must have been started with `--keystone` (as
    scripts/test does): else the tests fail, rather than Keystone v3 going untested. Without
    `GLIMPSE_TEST_SWIFT`: a Swift of the session's own, on the Keystone `GLIMPSE_TEST_KEYSTONE`
    names, else on one of its own too."""
    reused = swift_server.reused_facts()
    if reused is not None:
        if "keystone" not in reused:
            pytest.fail(f"{swift_server.ENV} names a Swift without the Keystone proxy: start it "
                        f"with `scripts/swift start DIR --keystone KEYSTONE_JSON`")
        yield reused["keystone"]
        return
    keystone = None
    shared = os.environ.get("GLIMPSE_TEST_KEYSTONE")
    if shared:
        keystone_json = Path(shared)
    else:
        keystone = start_keystone(tmp_path_factory.mktemp("keystone"))
        assert keystone.facts_path is not None
        keystone_json = keystone.facts_path
    folder = tmp_path_factory.mktemp("swift-keystone")
    try:
        with swift_server.running_swift(folder, "--keystone", str(keystone_json)) as facts:
            yield facts["keystone"]
    finally:
        if keystone is not None:
            keystone.stop()


@pytest.fixture
async def swift_drivers() -> AsyncIterator[list[SwiftDriver]]:
    """Swift drivers to close in the test's own event loop (their connections belong to it)."""
    drivers: list[SwiftDriver] = []
    yield drivers
    for driver in drivers:
        await driver.aclose()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3_server.S3Endpoint]:
    """moto's standalone S3 server, in a process of its own for the session."""
    endpoint = s3_server.start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield endpoint
    finally:
        endpoint.stop()


@contextlib.asynccontextmanager
async def s3_store(endpoint: s3_server.S3Endpoint) -> AsyncIterator[Store]:
    """An S3 store on a fresh bucket, its client opened (and checked) before the test and closed
    in the test's own event loop, which its connections belong to."""
    bucket = s3_server.new_bucket(endpoint)
    driver = S3Driver(**endpoint.driver_options(bucket), **s3_server.conformance_options(endpoint))
    try:
        await driver.check()
        yield Store(f"s3-{endpoint.name}", driver)
    finally:
        await driver.aclose()
        s3_server.empty_and_delete_bucket(endpoint, bucket)


@pytest.fixture
async def s3_moto_store(moto_endpoint: s3_server.S3Endpoint) -> AsyncIterator[Store]:
    async with s3_store(moto_endpoint) as store:
        yield store


@pytest.fixture
async def s3_swift_store(swift_facts: dict[str, Any]) -> AsyncIterator[Store]:
    async with s3_store(s3_server.swift_s3_endpoint(swift_facts)) as store:
        yield store


@pytest.fixture(params=["filesystem", "swift", "swift-keystone", "s3-moto", "s3-swift"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "filesystem":
        yield Store("file", FilesystemDriver(tmp_path / "objects"))
    elif request.param == "swift":
        driver = swift_server.driver(request.getfixturevalue("swift_facts"))
        request.getfixturevalue("swift_drivers").append(driver)
        yield Store("swift", driver)
    elif request.param == "swift-keystone":
        driver = swift_server.keystone_driver(request.getfixturevalue("swift_keystone_facts"))
        request.getfixturevalue("swift_drivers").append(driver)
        yield Store("swift-keystone", driver)
    elif request.param == "s3-moto":
        yield request.getfixturevalue("s3_moto_store")
    elif request.param == "s3-swift":
        yield request.getfixturevalue("s3_swift_store")
