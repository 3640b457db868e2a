"""Byte ranges of a download: parsing the `Range` (and legacy `Content-Range`) request header."""

from __future__ import annotations

import re
from dataclasses import dataclass

from glimpse.domain.errors import Invalid, RangeNotSatisfiable

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class ByteRange:
    """Inclusive `start`..`end`, already clamped to the data."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str, size: int) -> ByteRange:
    """Resolve a single-range `Range` header against `size` bytes of data.

    `bytes=a-b`, `bytes=a-` and `bytes=-n` are accepted. Several ranges or a malformed header
    raise `Invalid`; a range wholly past the end raises `RangeNotSatisfiable`.
    """
    spec = header.strip()
    if "," in spec:
        raise Invalid("Multiple ranges are not supported; request a single byte range.")
    match = _RANGE.fullmatch(spec.replace(" ", ""))
    if not match or match.group(1) == match.group(2) == "":
        raise Invalid(f"Invalid Range header {header!r}: expected 'bytes=start-end'.")
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable("A zero-length suffix range selects no bytes.", size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last != "" and int(last) < start:
        raise Invalid(f"Invalid Range header {header!r}: end is before start.")
    if start >= size:
        raise RangeNotSatisfiable(f"Range starts at {start} but the image has {size} bytes.",
                                  size)
    end = size - 1 if last == "" else min(int(last), size - 1)
    return ByteRange(start, end)


def parse_content_range(header: str, size: int) -> ByteRange:
    """The legacy form some clients send: `Content-Range: bytes a-b/total`."""
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if not match:
        raise Invalid(f"Invalid Content-Range header {header!r}.")
    return parse_range(f"bytes={match.group(1)}-{match.group(2)}", size)
