"""Listing parameters (`GET /v2/images?...`) parsed into a `ListQuery`, with Glance's rules.

Every name and value is checked as text the registry can store, and the query's size is bounded
(`services.bounds`: parameters, filters, `in:` items, tags; at most as many sort keys as there are
sortable attributes), so any query string gives a `ListQuery` or `Invalid`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from glimpse.domain.errors import Invalid
from glimpse.domain.query import Condition, ListQuery, Op, SortDir, SortKey
from glimpse.services.bounds import (
    INT32_MAX,
    INT64_MAX,
    MAX_FILTERS,
    MAX_IN_ITEMS,
    MAX_QUERY_PARAMS,
    MAX_TAG_FILTERS,
    check_name,
    check_text,
    is_uuid,
    shown,
)

SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id", "created_at",
             "updated_at")
_IN_KEYS = frozenset({"id", "name", "status", "container_format", "disk_format"})
_TIME_KEYS = frozenset({"created_at", "updated_at"})
_TIME_OPS = frozenset({"gt", "gte", "eq", "neq", "lt", "lte"})
_STRING_KEYS = frozenset({"id", "name", "status", "container_format", "disk_format", "owner",
                          "checksum", "os_hash_value", "os_hash_algo"})
#: Integer columns and the largest value each holds.
_INT_KEYS = {"min_ram": INT32_MAX, "min_disk": INT32_MAX, "size": INT64_MAX,
             "virtual_size": INT64_MAX}
_BOOL_KEYS = frozenset({"protected", "os_hidden"})
_VISIBILITIES = ("public", "private", "shared", "community", "all")
_PAGING = frozenset({"limit", "marker", "sort", "sort_key", "sort_dir", "tag", "visibility",
                     "member_status", "size_min", "size_max"})


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise Invalid(f"Invalid value {value!r} for boolean filter '{name}'.")


def parse_int(name: str, value: str, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """`value` as an integer in `minimum..maximum`: ASCII digits, an optional leading '-'.

    (Python's int() would also take spaces, underscores and other scripts' digits.)
    """
    digits = value[1:] if value.startswith("-") else value
    if not (digits.isascii() and digits.isdigit()):
        raise Invalid(f"{name} param must be an integer, not {shown(value)!r}.")
    # Compared by length first: int() of thousands of digits is slow and refused anyway.
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(max(abs(minimum), abs(maximum)))):
        raise Invalid(f"{name} param must be between {minimum} and {maximum}.")
    number = int(significant) * (-1 if value.startswith("-") else 1)
    if number < minimum:
        raise Invalid(f"{name} param must be >= {minimum}.")
    if number > maximum:
        raise Invalid(f"{name} param must be <= {maximum}.")
    return number


def parse_time(value: str) -> datetime:
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # In UTC here, so that no later conversion can leave the years 1..9999.
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise Invalid(f"Invalid time format for {shown(value)!r}: use ISO 8601 (years "
                      "1 to 9999, in UTC).") from exc


def _split_in(value: str) -> list[str]:
    """`in:a,"b,c",d` → ["a", "b,c", "d"] (quoted items may hold commas)."""
    try:
        row = next(csv.reader([value], skipinitialspace=True, strict=True))
    except (csv.Error, StopIteration) as exc:
        raise Invalid(f"Invalid 'in' filter value {shown(value)!r}.") from exc
    if len(row) > MAX_IN_ITEMS:
        raise Invalid(f"Too many items in an 'in' filter: at most {MAX_IN_ITEMS}.")
    return row


def _sort(params: Sequence[tuple[str, str]]) -> tuple[SortKey, ...]:
    sort = [v for k, v in params if k == "sort"]
    keys = [v for k, v in params if k == "sort_key"]
    dirs = [v for k, v in params if k == "sort_dir"]
    result: list[SortKey] = []
    if sort and (keys or dirs):
        raise Invalid("The 'sort' parameter cannot be combined with 'sort_key' or 'sort_dir'.")
    items = ",".join(sort).split(",") if sort else keys
    if len(items) > len(SORT_KEYS) or len(dirs) > len(SORT_KEYS):
        raise Invalid(f"Too many sort keys: at most {len(SORT_KEYS)}.")
    if sort:
        for item in items:
            key, _, direction = item.strip().partition(":")
            result.append(SortKey(_sort_key(key), _sort_dir(direction or "desc")))
    elif keys:
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise Invalid("The number of sort_dir values must match the number of sort_key "
                          "values, or be one.")
        for i, key in enumerate(keys):
            direction = dirs[i] if len(dirs) > 1 else (dirs[0] if dirs else "desc")
            result.append(SortKey(_sort_key(key), _sort_dir(direction)))
    else:
        result.append(SortKey("created_at", _sort_dir(dirs[0] if dirs else "desc")))
        if len(dirs) > 1:
            raise Invalid("Several sort_dir values need as many sort_key values.")
    default_dir = result[-1].direction if result else "desc"
    fields = {k.field for k in result}
    for tiebreak in ("created_at", "id"):
        if tiebreak not in fields:
            result.append(SortKey(tiebreak, default_dir))
    return tuple(result)


def _sort_key(key: str) -> str:
    if key not in SORT_KEYS:
        raise Invalid(f"Invalid sort key: {shown(key)!r}. It must be one of: "
                      f"{', '.join(SORT_KEYS)}.")
    return key


def _sort_dir(direction: str) -> SortDir:
    if direction not in ("asc", "desc"):
        raise Invalid(f"Invalid sort direction: {shown(direction)!r}. It must be 'asc' or 'desc'.")
    return cast(SortDir, direction)


def _condition(key: str, value: str) -> Condition:
    if key in _TIME_KEYS:
        op, sep, rest = value.partition(":")
        if not sep or op not in _TIME_OPS:
            op, rest = "eq", value
        return Condition(key, cast(Op, op), parse_time(rest))
    if key in _IN_KEYS and value.startswith("in:"):
        return Condition(key, "in", tuple(_split_in(value[3:])))
    if key in _STRING_KEYS:
        return Condition(key, "eq", value)
    if key in _INT_KEYS:
        return Condition(key, "eq", parse_int(key, value, maximum=_INT_KEYS[key]))
    if key in _BOOL_KEYS:
        return Condition(key, "eq", parse_bool(key, value))
    if key in ("created_at", "updated_at", "self", "file", "schema", "direct_url", "locations",
               "stores", "tags"):
        raise Invalid(f"Filtering on {shown(key)!r} is not supported.")
    return Condition(key, "eq", value, prop=True)


@dataclass(frozen=True)
class Listing:
    """A parsed listing request: the query, and the two parameters that decide which images
    the caller may list at all (turned into `query.access` by the policy, which knows who asks).
    """

    query: ListQuery
    #: public, private, shared, community or all; None for the default set.
    visibility: str | None = None
    #: accepted (the default), pending, rejected or all.
    member_status: str = "accepted"


def parse_list_params(
    params: Sequence[tuple[str, str]], default_limit: int, max_limit: int
) -> Listing:
    """Turn query-string pairs into a `Listing`; any invalid parameter raises `Invalid`."""
    if len(params) > MAX_QUERY_PARAMS:
        raise Invalid(f"Too many query parameters: at most {MAX_QUERY_PARAMS}.")
    single: dict[str, str] = {}
    conditions: list[Condition] = []
    tags: list[str] = []
    for key, value in params:
        check_name("the query parameter name", key)
        check_text(f"query parameter {shown(key)!r}", value)
        if key == "changes-since":
            raise Invalid("The 'changes-since' filter is no longer available on the v2 API.")
        if key == "tag":
            tags.append(value)
        elif key in ("sort", "sort_key", "sort_dir"):
            continue
        elif key in _PAGING:
            single[key] = value
        else:
            conditions.append(_condition(key, value))
    if len(conditions) > MAX_FILTERS:
        raise Invalid(f"Too many filters: at most {MAX_FILTERS}.")
    if len(tags) > MAX_TAG_FILTERS:
        raise Invalid(f"Too many tag filters: at most {MAX_TAG_FILTERS}.")
    limit = min(default_limit, max_limit)
    if "limit" in single:
        limit = min(parse_int("limit", single["limit"]), max_limit)
    marker = single.get("marker")
    if marker is not None and not is_uuid(marker):
        raise Invalid(f"Invalid marker. Image {shown(marker)} could not be found.")
    if "size_min" in single:
        conditions.append(Condition("size", "gte", parse_int("size_min", single["size_min"])))
    if "size_max" in single:
        conditions.append(Condition("size", "lte", parse_int("size_max", single["size_max"])))
    if not any(c.field == "os_hidden" for c in conditions):
        conditions.append(Condition("os_hidden", "eq", False))
    visibility = single.get("visibility")
    if visibility is not None and visibility not in _VISIBILITIES:
        raise Invalid(f"Invalid visibility value: {shown(visibility)!r}.")
    member_status = single.get("member_status", "accepted")
    if member_status not in ("accepted", "pending", "rejected", "all"):
        raise Invalid(f"Invalid status value: {shown(member_status)!r}.")
    query = ListQuery(
        conditions=tuple(conditions),
        tags=tuple(tags),
        sort=_sort(params),
        limit=limit,
        marker=marker,
    )
    return Listing(query, visibility, member_status)
