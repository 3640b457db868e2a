"""Listing parameters → ListQuery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from glimpse.domain.errors import Invalid
from glimpse.domain.query import Condition, SortKey
from glimpse.services.query import parse_list_params


def parse(*pairs: tuple[str, str]):  # type: ignore[no-untyped-def]
    return parse_list_params(list(pairs), 25, 1000).query


def test_visibility_and_member_status_are_kept_for_the_policy() -> None:
    listing = parse_list_params([("visibility", "shared"), ("member_status", "all")], 25, 1000)
    assert (listing.visibility, listing.member_status) == ("shared", "all")
    default = parse_list_params([], 25, 1000)
    assert (default.visibility, default.member_status) == (None, "accepted")


def test_defaults() -> None:
    q = parse()
    assert q.limit == 25 and q.marker is None
    assert q.sort == (SortKey("created_at", "desc"), SortKey("id", "desc"))
    assert Condition("os_hidden", "eq", False) in q.conditions


def test_limit_capped_and_validated() -> None:
    assert parse(("limit", "5000")).limit == 1000
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(Invalid):
            parse(("limit", bad))


def test_equality_on_base_and_extra_properties() -> None:
    q = parse(("name", "cirros"), ("os_distro", "ubuntu"), ("min_ram", "512"))
    assert Condition("name", "eq", "cirros") in q.conditions
    assert Condition("os_distro", "eq", "ubuntu", prop=True) in q.conditions
    assert Condition("min_ram", "eq", 512) in q.conditions


def test_in_operator_with_quotes() -> None:
    q = parse(("name", 'in:a,"b,c",d'))
    assert Condition("name", "in", ("a", "b,c", "d")) in q.conditions
    assert Condition("os_distro", "eq", "in:a,b", prop=True) in parse(
        ("os_distro", "in:a,b")).conditions


def test_time_operators() -> None:
    q = parse(("created_at", "gte:2024-01-02T03:04:05Z"), ("updated_at", "lt:2024-01-02T00:00:00"))
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert Condition("created_at", "gte", moment) in q.conditions
    assert Condition("updated_at", "lt", datetime(2024, 1, 2, tzinfo=UTC)) in q.conditions
    with pytest.raises(Invalid):
        parse(("created_at", "gt:yesterday"))


def test_sizes_tags_booleans_visibility() -> None:
    q = parse(("size_min", "10"), ("size_max", "20"), ("tag", "a"), ("tag", "b"),
              ("protected", "true"), ("os_hidden", "true"), ("visibility", "community"))
    assert Condition("size", "gte", 10) in q.conditions
    assert Condition("size", "lte", 20) in q.conditions
    assert q.tags == ("a", "b")
    assert Condition("protected", "eq", True) in q.conditions
    assert Condition("os_hidden", "eq", True) in q.conditions
    assert Condition("os_hidden", "eq", False) not in q.conditions


@pytest.mark.parametrize(
    "pair",
    [("size_min", "-1"), ("protected", "maybe"), ("visibility", "everyone"),
     ("visibility", "default"), ("changes-since", "2020-01-01"), ("member_status", "x"),
     ("sort_key", "owner"), ("sort_dir", "up"), ("sort", "name:up")],
)
def test_rejected(pair: tuple[str, str]) -> None:
    with pytest.raises(Invalid):
        parse(pair)


def test_sorting_forms() -> None:
    assert parse(("sort", "name:asc,size")).sort == (
        SortKey("name", "asc"), SortKey("size", "desc"), SortKey("created_at", "desc"),
        SortKey("id", "desc"))
    assert parse(("sort_key", "name"), ("sort_key", "size"), ("sort_dir", "asc")).sort[:2] == (
        SortKey("name", "asc"), SortKey("size", "asc"))
    with pytest.raises(Invalid):
        parse(("sort", "name"), ("sort_key", "size"))
