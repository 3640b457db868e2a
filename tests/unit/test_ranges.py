"""Byte range parsing for downloads."""

from __future__ import annotations

import pytest

from glimpse.domain.errors import Invalid, RangeNotSatisfiable
from glimpse.services.ranges import ByteRange, parse_content_range, parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-1000", ByteRange(0, 99)),
        ("bytes=90-1000", ByteRange(90, 99)),
        ("bytes=99-99", ByteRange(99, 99)),
        (" bytes=1-2 ", ByteRange(1, 2)),
    ],
)
def test_valid(header: str, expected: ByteRange) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=a-b", "items=0-1", "bytes=-",
                                    "bytes=5-1", "0-1"])
def test_invalid(header: str) -> None:
    with pytest.raises(Invalid):
        parse_range(header, 100)


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=0-", 0),
                                               ("bytes=-0", 100)])
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.size == size


def test_lengths_and_content_range() -> None:
    r = parse_range("bytes=10-19", 100)
    assert r.length == 10 and r.content_range(100) == "bytes 10-19/100"


def test_legacy_content_range() -> None:
    assert parse_content_range("bytes 5-9/100", 100) == ByteRange(5, 9)
    assert parse_content_range("bytes 5-9/*", 100) == ByteRange(5, 9)
    with pytest.raises(Invalid):
        parse_content_range("bytes=5-9", 100)
