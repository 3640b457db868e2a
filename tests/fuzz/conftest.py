"""Schemathesis over `GET /v2/openapi.json` against a real `glimpse serve` of its own.

Bounded and reproducible: a fixed seed, no example database (nothing is written into the repo),
`GLIMPSE_FUZZ_EXAMPLES` examples per operation (default `DEFAULT_EXAMPLES`, sized for CI on two
cores) and as many stateful scenarios. A longer nightly run only raises that number (see
docs/testing.md). `GLIMPSE_FUZZ_URL` points the suite at a server already running elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.fuzz import hooks  # noqa: F401  # registers the JSON-patch serializers
from tests.fuzz.document import local_document
from tests.servers import Server, start_server

DEFAULT_EXAMPLES = 100
EXAMPLES = int(os.environ.get("GLIMPSE_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
SEED = int(os.environ.get("GLIMPSE_FUZZ_SEED", "5"))
#: Seconds one request may take before it counts as a hang.
REQUEST_TIMEOUT = 10.0

#: The properties the fuzz suite holds the server to. Each is a Schemathesis check:
#: no 5xx; the status, content type, headers and body are those the document gives for the
#: operation; other methods get 405 with a true `Allow`; in stateful runs, a deleted image is
#: gone and a created one can be fetched.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
)


def config() -> schemathesis.Config:
    checks: dict[str, Any] = {"enabled": False}
    checks.update({name: {"enabled": True} for name in CHECKS})
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "request-timeout": REQUEST_TIMEOUT,
        "checks": checks,
        "generation": {
            "mode": "all",
            "max-examples": EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"max-steps": 12}},
    })


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server | None]:
    """A server only the fuzzer writes to, so its garbage reaches no other test; None when
    `GLIMPSE_FUZZ_URL` names a running server to fuzz instead."""
    if os.environ.get("GLIMPSE_FUZZ_URL"):
        yield None
        return
    srv = start_server(tmp_path_factory.mktemp("fuzz") / "data")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def fuzz_url(fuzz_server: Server | None) -> str:
    """Where the requests go (no trailing slash)."""
    return fuzz_server.url if fuzz_server else os.environ["GLIMPSE_FUZZ_URL"].rstrip("/")


#: Loaded at import: Schemathesis parametrizes tests at collection, before the server starts.
#: Requests go to `fuzz_server` through `base_url`.
SCHEMA: OpenApiSchema = schemathesis.openapi.from_dict(local_document(), config=config())


def assert_still_serves(url: str, server: Server | None) -> None:
    """The server survived: it is running, `/versions` answers and an image round-trips."""
    if server is not None:
        assert server.process is not None and server.process.poll() is None, server.log()[-4000:]
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT,
                      headers={"Accept": "application/json"}) as client:
        assert client.get("/versions").status_code == 200
        created = client.post("/v2/images", json={"name": "after-fuzz",
                                                  "disk_format": "raw",
                                                  "container_format": "bare"})
        assert created.status_code == 201, created.text
        shown = client.get(f"/v2/images/{created.json()['id']}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["name"] == "after-fuzz"
