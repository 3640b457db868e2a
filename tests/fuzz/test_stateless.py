"""Every operation of the OpenAPI document, fuzzed one request at a time (valid and invalid
inputs: Schemathesis' examples, coverage and fuzzing phases)."""

from __future__ import annotations

import httpx
import pytest
import schemathesis

from tests.fuzz.conftest import REQUEST_TIMEOUT, SCHEMA, assert_still_serves
from tests.fuzz.document import local_document
from tests.servers import Server

pytestmark = pytest.mark.fuzz


def test_fuzzed_document_is_served(fuzz_url: str) -> None:
    served = httpx.get(f"{fuzz_url}/v2/openapi.json", timeout=REQUEST_TIMEOUT).json()
    assert served == local_document(f"{fuzz_url}/")


@SCHEMA.parametrize()
def test_operation(case: schemathesis.Case, fuzz_url: str) -> None:
    case.call_and_validate(base_url=fuzz_url)


def test_server_survived_stateless(fuzz_url: str, fuzz_server: Server | None) -> None:
    assert_still_serves(fuzz_url, fuzz_server)
