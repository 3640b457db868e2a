"""Listing parameters (`GET /v2/images?...`) parsed into a `ListQuery`, with Glance's rules."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

from glimpse.domain.errors import Invalid
from glimpse.domain.query import Condition, ListQuery, Op, Scope, SortDir, SortKey

SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id", "created_at",
             "updated_at")
_IN_KEYS = frozenset({"id", "name", "status", "container_format", "disk_format"})
_TIME_KEYS = frozenset({"created_at", "updated_at"})
_TIME_OPS = frozenset({"gt", "gte", "eq", "neq", "lt", "lte"})
_STRING_KEYS = frozenset({"id", "name", "status", "container_format", "disk_format", "owner",
                          "checksum", "os_hash_value", "os_hash_algo"})
_INT_KEYS = frozenset({"min_ram", "min_disk", "size", "virtual_size"})
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


def parse_int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise Invalid(f"{name} param must be an integer, not {value!r}.") from exc
    if number < minimum:
        raise Invalid(f"{name} param must be >= {minimum}.")
    return number


def parse_time(value: str) -> datetime:
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(f"Invalid time format for {value!r}: use ISO 8601.") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _split_in(value: str) -> list[str]:
    """`in:a,"b,c",d` → ["a", "b,c", "d"] (quoted items may hold commas)."""
    try:
        row = next(csv.reader([value], skipinitialspace=True, strict=True))
    except (csv.Error, StopIteration) as exc:
        raise Invalid(f"Invalid 'in' filter value {value!r}.") from exc
    return row


def _sort(params: Sequence[tuple[str, str]]) -> tuple[SortKey, ...]:
    sort = [v for k, v in params if k == "sort"]
    keys = [v for k, v in params if k == "sort_key"]
    dirs = [v for k, v in params if k == "sort_dir"]
    result: list[SortKey] = []
    if sort and (keys or dirs):
        raise Invalid("The 'sort' parameter cannot be combined with 'sort_key' or 'sort_dir'.")
    if sort:
        for item in ",".join(sort).split(","):
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
        raise Invalid(f"Invalid sort key: {key!r}. It must be one of: {', '.join(SORT_KEYS)}.")
    return key


def _sort_dir(direction: str) -> SortDir:
    if direction not in ("asc", "desc"):
        raise Invalid(f"Invalid sort direction: {direction!r}. It must be 'asc' or 'desc'.")
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
        return Condition(key, "eq", parse_int(key, value))
    if key in _BOOL_KEYS:
        return Condition(key, "eq", parse_bool(key, value))
    if key in ("created_at", "updated_at", "self", "file", "schema", "direct_url", "locations",
               "stores", "tags"):
        raise Invalid(f"Filtering on {key!r} is not supported.")
    return Condition(key, "eq", value, prop=True)


def parse_list_params(
    params: Sequence[tuple[str, str]], default_limit: int, max_limit: int
) -> ListQuery:
    """Turn query-string pairs into a `ListQuery`; any invalid parameter raises `Invalid`."""
    single: dict[str, str] = {}
    conditions: list[Condition] = []
    tags: list[str] = []
    for key, value in params:
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
    limit = min(default_limit, max_limit)
    if "limit" in single:
        limit = min(parse_int("limit", single["limit"]), max_limit)
    if "size_min" in single:
        conditions.append(Condition("size", "gte", parse_int("size_min", single["size_min"])))
    if "size_max" in single:
        conditions.append(Condition("size", "lte", parse_int("size_max", single["size_max"])))
    if not any(c.field == "os_hidden" for c in conditions):
        conditions.append(Condition("os_hidden", "eq", False))
    visibility = single.get("visibility")
    scope = Scope.DEFAULT
    if visibility is not None:
        if visibility not in _VISIBILITIES:
            raise Invalid(f"Invalid visibility value: {visibility!r}.")
        scope = Scope(visibility)
    member_status = single.get("member_status", "accepted")
    if member_status not in ("accepted", "pending", "rejected", "all"):
        raise Invalid(f"Invalid status value: {member_status!r}.")
    return ListQuery(
        conditions=tuple(conditions),
        tags=tuple(tags),
        scope=scope,
        sort=_sort(params),
        limit=limit,
        marker=single.get("marker"),
    )
