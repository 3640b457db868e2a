"""Properties of JSON-patch parsing: any decoded body gives changes or `Invalid`; applying any
change to an image document gives a changed document or a domain error, nothing else; JSON
pointers round-trip through their escapes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from glimpse.domain.errors import DomainError, Invalid
from glimpse.domain.images import Image
from glimpse.services import patch
from glimpse.services.schemas import Schemas
from glimpse.services.views import image_document

T = TypeVar("T")
BOUNDED = settings(derandomize=True, max_examples=150, deadline=None, database=None)


def attempt(call: Callable[[], T], *errors: type[Exception]) -> tuple[T | None, Exception | None]:
    """`(value, None)`, or `(None, error)` if `call` raised one of `errors` (others propagate)."""
    try:
        return call(), None
    except errors as exc:
        return None, exc

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False), st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
NAMES = st.one_of(st.sampled_from(sorted(patch.EDITABLE | patch.READ_ONLY | patch.RESERVED
                                         | {"locations", "os_glance_x", "custom", "kernel_id"})),
                  st.text(max_size=12))
POINTERS = st.one_of(NAMES.map(lambda n: "/" + n), st.text(max_size=16),
                     st.lists(NAMES, min_size=1, max_size=3).map(lambda ns: "/" + "/".join(ns)))
OPERATION = st.one_of(
    st.fixed_dictionaries({"op": st.sampled_from([*patch.OPS, "move", "test", 1]),
                           "path": POINTERS}, optional={"value": JSON}),
    st.fixed_dictionaries({"op": st.sampled_from(patch.OPS)}),
    st.sampled_from(patch.OPS).flatmap(
        lambda op: st.fixed_dictionaries({op: POINTERS}, optional={"value": JSON})),
    JSON,
)
BODIES = st.one_of(st.lists(OPERATION, max_size=5), JSON)


def _document() -> dict[str, Any]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    image = Image(id="6d1a2b7e-0c1f-4d2e-9a7b-3c4d5e6f7a8b", owner="p", created_at=now,
                  updated_at=now)
    image.properties = {"custom": "x"}
    return image_document(image)


SCHEMAS = Schemas(["raw", "qcow2"], ["bare"])


@BOUNDED
@given(st.sampled_from(patch.MEDIA_TYPES), BODIES)
def test_any_body_gives_changes_or_invalid(media: str, body: Any) -> None:
    changes, error = attempt(lambda: patch.parse(media, body), Invalid)
    if changes is None:
        assert str(error)
        return
    assert isinstance(body, list) and len(changes) == len(body)
    for change in changes:
        assert change.op in patch.OPS and isinstance(change.path, str)


@BOUNDED
@given(st.sampled_from(patch.MEDIA_TYPES), st.lists(OPERATION, max_size=5))
def test_applying_any_changes_gives_a_document_or_a_domain_error(media: str,
                                                                body: list[Any]) -> None:
    document = _document()

    def run() -> None:
        for change in patch.parse(media, body):
            patch.apply(document, change)
        SCHEMAS.validate_image(document)

    _, error = attempt(run, DomainError)
    if error is not None:
        assert str(error)
        return
    assert document["id"] == _document()["id"]  # read-only attributes never change


@BOUNDED
@given(st.text(max_size=30))
def test_any_pointer_decodes_or_is_invalid(pointer: str) -> None:
    try:
        segments = patch.decode_pointer(pointer)
    except Invalid:
        return
    assert segments and all(isinstance(s, str) for s in segments)


def _encode(segments: list[str]) -> str:
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segments)


@BOUNDED
@given(st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=4))
def test_pointers_round_trip(segments: list[str]) -> None:
    assert patch.decode_pointer(_encode(segments)) == segments


@BOUNDED
@given(st.dictionaries(NAMES, JSON, max_size=6))
def test_schema_validation_gives_none_or_invalid(document: dict[str, Any]) -> None:
    _, error = attempt(lambda: SCHEMAS.validate_image(document), Invalid)
    assert error is None or str(error).startswith("Provided object does not match schema 'image'")
