"""Properties of the parsers at the HTTP edge, run without I/O: decoded JSON bodies, identity and
integer headers, `Range` and `Content-Range`. Any input gives a value or the error the edge maps
to a 4xx (`Invalid`, `ApiError` 400, `RangeNotSatisfiable`), never another exception; valid
input round-trips."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from glimpse.api.errors import ApiError
from glimpse.api.inputs import check_document, header_integer, identity_problem
from glimpse.domain.errors import Invalid, RangeNotSatisfiable
from glimpse.services.bounds import INT64_MAX, MAX_JSON_DEPTH, text_problem
from glimpse.services.ranges import ByteRange, parse_content_range, parse_range

T = TypeVar("T")
BOUNDED = settings(derandomize=True, max_examples=150, deadline=None, database=None)


def attempt(call: Callable[[], T], *errors: type[Exception]) -> tuple[T | None, Exception | None]:
    """`(value, None)`, or `(None, error)` if `call` raised one of `errors` (others propagate)."""
    try:
        return call(), None
    except errors as exc:
        return None, exc

#: Any text, surrogates and NUL included (as `json.loads` can produce them).
ANY_TEXT = st.text(st.characters(codec=None), max_size=12)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    ANY_TEXT)
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)), max_leaves=16)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@BOUNDED
@given(DOCUMENTS)
def test_documents_pass_unchanged_or_are_invalid(document: Any) -> None:
    storable = all(text_problem(s) is None for s in _strings(document))
    checked, error = attempt(lambda: check_document(document), Invalid)
    if error is not None:
        assert not storable and str(error).startswith("Invalid ")
        return
    assert storable and checked is document
    assert json.loads(json.dumps(document)) == document


@BOUNDED
@given(st.integers(1, 3 * MAX_JSON_DEPTH), st.sampled_from(["[]", "{}"]))
def test_nesting_is_capped(depth: int, kind: str) -> None:
    document: Any = [] if kind == "[]" else {}
    for _ in range(depth - 1):
        document = [document] if kind == "[]" else {"k": document}
    if depth <= MAX_JSON_DEPTH:
        assert check_document(document) is document
    else:
        with pytest.raises(Invalid, match="nests deeper"):
            check_document(document)


def test_nesting_deeper_than_the_interpreter_allows_is_invalid() -> None:
    document: Any = []
    for _ in range(100_000):
        document = [document]
    with pytest.raises(Invalid, match="nests deeper"):
        check_document(document)


HEADER_NAMES = st.sampled_from([b"x-project-id", b"x-tenant-id", b"x-user-id", b"x-roles",
                                b"x-other"])


@BOUNDED
@given(st.lists(st.tuples(HEADER_NAMES, st.binary(max_size=300)), max_size=4))
def test_identity_headers_are_printable_ascii_or_refused(
        headers: list[tuple[bytes, bytes]]) -> None:
    problem = identity_problem(headers)
    identity = [(k, v) for k, v in headers if k != b"x-other"]
    clean = all(all(0x20 <= b <= 0x7E for b in v) for _, v in identity)
    short = all(len(p.strip()) <= 255 for k, v in identity
                for p in (v.split(b",") if k == b"x-roles" else [v]))
    assert (problem is None) == (clean and short), problem
    if problem is not None:
        assert problem.startswith("Invalid value for header X-")


def _request(name: bytes, value: bytes) -> Request:
    return Request({"type": "http", "method": "PUT", "path": "/", "headers": [(name, value)]})


@BOUNDED
@given(st.one_of(st.binary(max_size=30), st.integers(-5, 2**70).map(lambda n: str(n).encode()),
                 st.text("0123456789 \t²٣", max_size=25).map(lambda t: t.encode())))
def test_integer_headers_are_ascii_digits_in_range(raw: bytes) -> None:
    number, error = attempt(lambda: header_integer(_request(b"x-size", raw), "x-size",
                                                   INT64_MAX), ApiError)
    if isinstance(error, ApiError):
        assert error.status == 400 and error.message.startswith("x-size must be")
        return
    text = raw.decode("latin-1").strip()
    if number is None:
        assert text == ""
    else:
        assert text.isascii() and text.isdigit() and number == int(text) <= INT64_MAX


@BOUNDED
@given(st.integers(0, 2**64), st.integers(0, 2**64), st.integers(1, 2**63 - 1))
def test_ranges_round_trip(a: int, b: int, size: int) -> None:
    start, end = min(a, b), max(a, b)
    try:
        parsed = parse_range(f"bytes={start}-{end}", size)
    except RangeNotSatisfiable:
        assert start >= size
        return
    assert parsed == ByteRange(start, min(end, size - 1))
    assert parse_content_range(f"bytes {start}-{end}/{size}", size) == parsed


RANGE_TEXT = st.one_of(
    st.text(max_size=30),
    st.text("bytes=0123456789-, ²٣", max_size=40),
    st.tuples(st.text("0123456789", max_size=6000), st.text("0123456789", max_size=30)).map(
        lambda t: f"bytes={t[0]}-{t[1]}"),
)


@BOUNDED
@given(RANGE_TEXT, st.integers(0, 2**63 - 1))
def test_any_range_header_gives_a_range_or_a_4xx_error(header: str, size: int) -> None:
    for parse in (parse_range, parse_content_range):
        try:
            parsed = parse(header, size)
        except (Invalid, RangeNotSatisfiable):
            continue
        assert 0 <= parsed.start <= parsed.end < size


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=-1", "bytes=0-0", "bytes=-99"])
def test_no_range_of_empty_data_is_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 0)
