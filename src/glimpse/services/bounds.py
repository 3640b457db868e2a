"""What a request may hold: text every registry database stores, integers its columns hold, caps.

One place for the limits that the API edge (`glimpse.api.inputs`), the listing parser
(`services.query`) and the served schemas (`services.schemas`) apply. A value past a bound is
refused with `Invalid` (400) naming where it was, before any database sees it.

Text: SQLite, PostgreSQL and MariaDB (utf8mb4) all store any sequence of Unicode scalar values
except NUL, which PostgreSQL refuses in `text`; an unpaired UTF-16 surrogate (`"\\ud800"` in JSON)
is no scalar value and cannot be encoded as UTF-8 at all.
"""

from __future__ import annotations

import re

from glimpse.domain.errors import Invalid

#: min_ram and min_disk are 32-bit signed INTEGER columns.
INT32_MAX = 2**31 - 1
#: size and virtual_size are BIGINT columns (also the bound of size filters and size headers).
INT64_MAX = 2**63 - 1

#: Levels of arrays and objects in one JSON body (an image document needs three).
MAX_JSON_DEPTH = 32
#: Names of extra properties and of filters on them (Glance: property keys are at most 255).
MAX_KEY_LENGTH = 255
#: Project ids, user ids and roles taken from headers (the owner column holds 255).
MAX_IDENTITY_LENGTH = 255

#: Query parameters of one listing, all kinds together.
MAX_QUERY_PARAMS = 300
#: Filter conditions of one listing (an image has at most 128 extra properties by default).
MAX_FILTERS = 128
#: Items of one `in:` list (the SQL statement grows with each).
MAX_IN_ITEMS = 100
#: `tag=` repeats (Glance's image_tag_quota: no image carries more tags than this by default).
MAX_TAG_FILTERS = 128

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(value: str) -> bool:
    """Exactly a UUID in its 8-4-4-4-12 hex form, nothing before or after (no final newline)."""
    return _UUID.fullmatch(value) is not None


def shown(text: str, limit: int = 64) -> str:
    """`text` safe to quote in an error message: unprintable characters escaped, long cut."""
    cut = text[:limit]
    rendered = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in cut)
    return rendered + ("..." if len(text) > limit else "")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text on every registry database, or None if it can."""
    if value.isascii():
        return "it contains a NUL character (\\u0000)" if "\x00" in value else None
    if "\x00" in value:
        return "it contains a NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"it is not valid Unicode (unpaired surrogate {ascii(value[exc.start])[1:-1]})"
    return None


def check_text(where: str, value: str) -> str:
    """`value` unchanged if it can be stored as text; otherwise `Invalid` naming `where`."""
    problem = text_problem(value)
    if problem is not None:
        raise Invalid(f"Invalid value for {where}: {problem}.")
    return value


def check_name(where: str, value: str) -> str:
    """A key (property or filter name): storable text of at most `MAX_KEY_LENGTH` characters."""
    check_text(where, value)
    if len(value) > MAX_KEY_LENGTH:
        raise Invalid(f"Invalid name {shown(value, 32)!r}: longer than {MAX_KEY_LENGTH} "
                      "characters.")
    return value
