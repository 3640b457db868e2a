"""Fixtures of the identity tests: one real Keystone for the whole session.

`GLIMPSE_TEST_KEYSTONE` may name the `keystone.json` of a Keystone already running (started with
`scripts/keystone start DIR`, e.g. once for a whole CI run or for xdist workers to share); the
session then uses it and leaves it running. Otherwise the session starts its own and stops it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.keystone import Keystone, start_keystone


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    """A running Keystone with the accounts and catalog of scripts/keystone_accounts.py."""
    shared = os.environ.get("GLIMPSE_TEST_KEYSTONE")
    if shared:
        yield Keystone.from_facts(Path(shared))
        return
    ks = start_keystone(tmp_path_factory.mktemp("keystone"))
    yield ks
    ks.stop()
