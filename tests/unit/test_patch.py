"""JSON-patch parsing and per-attribute rules, without I/O."""

from __future__ import annotations

from typing import Any

import pytest

from glimpse.domain.errors import Conflict, Forbidden, Invalid
from glimpse.services import patch
from glimpse.services.patch import V20, V21, Change


def doc() -> dict[str, Any]:
    return {"name": "n", "visibility": "shared", "tags": [], "min_ram": 0, "os_distro": "x",
            "owner": "p", "disk_format": None}


@pytest.mark.parametrize(
    ("pointer", "segments"),
    [("/name", ["name"]), ("/a~1b", ["a/b"]), ("/a~0b", ["a~b"]), ("/~01", ["~1"]),
     ("/locations/0", ["locations", "0"])],
)
def test_pointer_decoding(pointer: str, segments: list[str]) -> None:
    assert patch.decode_pointer(pointer) == segments


@pytest.mark.parametrize("pointer", ["name", "/name/", "//name", "/a~2b", "/a~", ""])
def test_bad_pointers(pointer: str) -> None:
    with pytest.raises(Invalid):
        patch.decode_pointer(pointer)


def test_parse_v21_and_v20_forms() -> None:
    assert patch.parse(V21, [{"op": "replace", "path": "/name", "value": "x"}]) == [
        Change("replace", "/name", "x", False)
    ]
    assert patch.parse(V20, [{"replace": "/name", "value": "x"}]) == [
        Change("replace", "/name", "x", True)
    ]


@pytest.mark.parametrize(
    ("media", "body"),
    [
        (V21, {"op": "add"}),
        (V21, [{"op": "move", "path": "/name", "from": "/x"}]),
        (V21, [{"op": "test", "path": "/name", "value": "x"}]),
        (V21, [{"path": "/name", "value": "x"}]),
        (V21, [{"op": "add", "path": "/name"}]),
        (V21, [{"op": "add", "path": 5, "value": "x"}]),
        (V21, ["add"]),
        (V20, [{"add": "/x", "replace": "/y", "value": 1}]),
        (V20, [{"op": "add", "path": "/x", "value": 1}]),
    ],
)
def test_parse_rejects(media: str, body: Any) -> None:
    with pytest.raises(Invalid):
        patch.parse(media, body)


def apply(op: str, path: str, value: Any = None, legacy: bool = False) -> dict[str, Any]:
    d = doc()
    patch.apply(d, Change(op, path, value, legacy))  # type: ignore[arg-type]
    return d


def test_add_replaces_existing_in_v21() -> None:
    assert apply("add", "/os_distro", "y")["os_distro"] == "y"
    assert apply("add", "/name", "y")["name"] == "y"


def test_add_existing_conflicts_in_v20() -> None:
    with pytest.raises(Conflict):
        apply("add", "/os_distro", "y", legacy=True)
    with pytest.raises(Conflict):
        apply("add", "/name", "y", legacy=True)
    assert apply("add", "/new_prop", "y", legacy=True)["new_prop"] == "y"


def test_replace_missing_extra_conflicts() -> None:
    with pytest.raises(Conflict):
        apply("replace", "/nope", "y")
    assert apply("replace", "/min_ram", 5)["min_ram"] == 5


def test_remove_rules() -> None:
    assert "os_distro" not in apply("remove", "/os_distro")
    with pytest.raises(Conflict):
        apply("remove", "/nope")
    with pytest.raises(Forbidden):
        apply("remove", "/name")


@pytest.mark.parametrize("path", ["/status", "/checksum", "/size", "/id", "/created_at",
                                  "/self", "/file", "/schema", "/os_hash_value"])
def test_read_only(path: str) -> None:
    with pytest.raises(Forbidden, match="read-only"):
        apply("replace", path, "x")


@pytest.mark.parametrize("path", ["/os_glance_import_task", "/deleted", "/location",
                                  "/deleted_at"])
def test_reserved(path: str) -> None:
    with pytest.raises(Forbidden, match="reserved"):
        apply("add", path, "x")


def test_locations_and_nested_paths() -> None:
    with pytest.raises(Forbidden):
        apply("replace", "/locations", [])
    with pytest.raises(Invalid):
        apply("add", "/tags/-", "x")
