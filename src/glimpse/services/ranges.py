"""Byte ranges of a download: parsing the `Range` (and legacy `Content-Range`) request header."""

from __future__ import annotations

import re
from dataclasses import dataclass

from glimpse.domain.errors import Invalid, RangeNotSatisfiable
from glimpse.services.bounds import shown

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)")
#: No image holds 2**63 bytes (a BIGINT size); longer numbers are read as that, never parsed.
_BEYOND = 2**63


def _number(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    return _BEYOND if len(significant) > 19 else min(int(significant), _BEYOND)


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
        raise Invalid(f"Invalid Range header {shown(header)!r}: expected 'bytes=start-end'.")
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = _number(last)
        if suffix == 0:
            raise RangeNotSatisfiable("A zero-length suffix range selects no bytes.", size)
        if size == 0:
            raise RangeNotSatisfiable("The image has no bytes to select.", size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = _number(first)
    if last != "" and _number(last) < start:
        raise Invalid(f"Invalid Range header {shown(header)!r}: end is before start.")
    if start >= size:
        raise RangeNotSatisfiable(f"Range starts at {start} but the image has {size} bytes.",
                                  size)
    end = size - 1 if last == "" else min(_number(last), size - 1)
    return ByteRange(start, end)


def parse_content_range(header: str, size: int) -> ByteRange:
    """The legacy form some clients send: `Content-Range: bytes a-b/total`."""
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if not match:
        raise Invalid(f"Invalid Content-Range header {shown(header)!r}.")
    return parse_range(f"bytes={match.group(1)}-{match.group(2)}", size)
