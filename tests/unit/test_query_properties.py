"""Properties of the listing parser: any query string gives a `ListQuery` or `Invalid`, nothing
else; valid sorts, integers, times and `in:` lists parse to what they say."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glimpse.domain.errors import Invalid
from glimpse.domain.query import ListQuery
from glimpse.services import bounds
from glimpse.services.query import SORT_KEYS, parse_int, parse_list_params, parse_time

T = TypeVar("T")
BOUNDED = settings(derandomize=True, max_examples=150, deadline=None, database=None)
#: Fixed offsets (zone rules would make some local times ambiguous).
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


def attempt(call: Callable[[], T], *errors: type[Exception]) -> tuple[T | None, Exception | None]:
    """`(value, None)`, or `(None, error)` if `call` raised one of `errors` (others propagate)."""
    try:
        return call(), None
    except errors as exc:
        return None, exc

KEYS = [*SORT_KEYS, "limit", "marker", "sort", "sort_key", "sort_dir", "tag", "visibility",
        "member_status", "size_min", "size_max", "min_ram", "min_disk", "virtual_size",
        "protected", "os_hidden", "owner", "checksum", "changes-since", "self", "tags",
        "os_distro", "in"]
NUMBERS = st.one_of(st.integers(-(2**70), 2**70).map(str),
                    st.text("0123456789-_ +٣²", max_size=25))
TIMES = st.one_of(
    st.datetimes(timezones=OFFSETS).map(lambda d: d.isoformat()),
    st.tuples(st.sampled_from(["gt", "gte", "eq", "neq", "lt", "lte", "xx"]),
              st.datetimes(timezones=OFFSETS)).map(lambda t: f"{t[0]}:{t[1].isoformat()}"),
)
VALUES = st.one_of(
    st.text(max_size=30), NUMBERS, TIMES,
    st.lists(st.text(max_size=8), max_size=6).map(lambda xs: "in:" + ",".join(xs)),
    st.sampled_from(["true", "false", "asc", "desc", "name:asc", "size,id:desc", "all",
                     "public", "pending", 'in:"a,b",c', 'in:"open', "\x00", "\ud800"]),
)
PARAMS = st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), VALUES),
                  max_size=12)


@BOUNDED
@given(PARAMS)
def test_any_params_give_a_query_or_invalid(params: list[tuple[str, str]]) -> None:
    query, error = attempt(lambda: parse_list_params(params, 25, 1000).query, Invalid)
    if error is not None:
        assert str(error)
        return
    assert isinstance(query, ListQuery)
    assert 0 <= query.limit <= 1000
    assert len(query.sort) <= len(SORT_KEYS) + 2
    assert query.marker is None or bounds.is_uuid(query.marker)


@BOUNDED
@given(st.lists(st.tuples(st.sampled_from(SORT_KEYS), st.sampled_from(["asc", "desc"])),
                min_size=1, max_size=len(SORT_KEYS)))
def test_sort_round_trips(keys: list[tuple[str, str]]) -> None:
    text = ",".join(f"{k}:{d}" for k, d in keys)
    sort = parse_list_params([("sort", text)], 25, 1000).query.sort
    assert [(s.field, s.direction) for s in sort[: len(keys)]] == keys


@BOUNDED
@given(st.lists(st.sampled_from(SORT_KEYS), min_size=len(SORT_KEYS) + 1, max_size=40))
def test_more_sort_keys_than_there_are_is_invalid(keys: list[str]) -> None:
    with pytest.raises(Invalid, match="Too many sort keys"):
        parse_list_params([("sort", ",".join(keys))], 25, 1000)


@BOUNDED
@given(st.integers(-(2**80), 2**80), st.sampled_from([bounds.INT32_MAX, bounds.INT64_MAX]))
def test_parse_int_round_trips_within_the_column(number: int, maximum: int) -> None:
    if 0 <= number <= maximum:
        assert parse_int("n", str(number), maximum=maximum) == number
    else:
        with pytest.raises(Invalid, match="n param must be"):
            parse_int("n", str(number), maximum=maximum)


@BOUNDED
@given(st.text(max_size=30))
def test_parse_int_takes_ascii_digits_only(text: str) -> None:
    try:
        number = parse_int("n", text)
    except Invalid:
        return
    assert text.lstrip("-").isascii() and text.lstrip("-").isdigit()
    assert number == int(text)


@BOUNDED
@given(st.datetimes(timezones=OFFSETS))
def test_times_round_trip_in_utc(moment: datetime) -> None:
    try:
        parsed = parse_time(moment.isoformat())
    except Invalid:  # only when the moment in UTC leaves the years 1..9999
        with pytest.raises(OverflowError):
            moment.astimezone(UTC)
        return
    assert parsed == moment and parsed.tzinfo == UTC


def _csv(items: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(items)
    return out.getvalue()


@BOUNDED
@given(st.lists(st.text(st.characters(blacklist_categories=["Cs"],
                                      blacklist_characters="\x00\r\n"), min_size=1,
                        max_size=10).filter(lambda s: not s.startswith(" ")),
                min_size=1, max_size=bounds.MAX_IN_ITEMS))
def test_in_lists_round_trip(items: list[str]) -> None:
    """Quoted as a CSV row (as Glance reads `in:` values), any items come back as they were
    (leading spaces aside: they are skipped, as Glance skips them)."""
    query = parse_list_params([("name", "in:" + _csv(items))], 25, 1000).query
    condition = next(c for c in query.conditions if c.field == "name")
    assert (condition.op, condition.value) == ("in", tuple(items))


@BOUNDED
@given(st.text(max_size=40))
def test_text_rule(text: str) -> None:
    storable = "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    assert (bounds.text_problem(text) is None) == storable
    if storable:
        assert text.encode("utf-8").decode("utf-8") == text
