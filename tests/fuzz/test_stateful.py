"""Sequences of operations chained by the document's links (create → show, patch, upload,
download, tags, deactivate, delete on the created id), run as a Hypothesis state machine.

Every request and every response check is recorded as it happens. A scenario's steps depend on
what the server answered before (a create with a given id succeeds once, then conflicts), so
Hypothesis may find a replay inconsistent and raise `Flaky`: that is the server's state, not a
bug, and only the recorded failures decide the test.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis.errors import Flaky

from tests.fuzz.conftest import EXAMPLES, SCHEMA, SEED, assert_still_serves
from tests.servers import Server

pytestmark = pytest.mark.fuzz

#: Operations on an image id that succeeded: only an id a link carried from a created image
#: gets those (a generated id names no image). The links work if several kinds are reached.
MIN_CHAINED = 3


def _replay_diverged(exc: BaseException) -> bool:
    """Hypothesis' own consistency errors: `Flaky`, or the assertion its data tree makes."""
    if isinstance(exc, Flaky):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return (isinstance(exc, AssertionError) and tb is not None
            and tb.tb_frame.f_globals.get("__name__", "").startswith("hypothesis.internal"))


#: A run that a replay divergence cut short is followed by one with the next seed, at most
#: this many in all, until the links were seen to chain.
RUNS = 3


def _chained(answered: set[tuple[str, int]]) -> set[str]:
    return {label for label, status in answered if "{id}" in label and 200 <= status < 300}


def test_stateful(fuzz_url: str, fuzz_server: Server | None) -> None:
    answered: set[tuple[str, int]] = set()
    failures: list[str] = []

    class Machine(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": fuzz_url}

        def call(self, case: schemathesis.Case, **kwargs: Any) -> schemathesis.Response:
            try:
                return super().call(case, **kwargs)  # type: ignore[no-any-return]
            except Exception as exc:  # no answer: a timeout, a dropped connection
                failures.append(f"{case.as_curl_command(base_url=fuzz_url)}\n{exc!r}")
                raise

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            answered.add((case.operation.label, response.status_code))

        def validate_response(self, response: schemathesis.Response, case: schemathesis.Case,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            try:
                super().validate_response(response, case, additional_checks, **kwargs)
            except Exception as exc:
                failures.append(str(exc))
                raise

    settings = SCHEMA.config.get_hypothesis_settings(apply_ci_profile=False)
    for run in range(RUNS):
        # the state machine runs outside Schemathesis' seeding
        seeded = hypothesis.seed(SEED + run)(type("Seeded", (Machine,), {}))
        try:
            seeded.run(settings=hypothesis.settings(settings, max_examples=EXAMPLES))
        except Exception as exc:
            if not _replay_diverged(exc):
                raise
        if failures or len(_chained(answered)) >= MIN_CHAINED:
            break
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    assert len(_chained(answered)) >= MIN_CHAINED, sorted(answered)
    assert_still_serves(fuzz_url, fuzz_server)
