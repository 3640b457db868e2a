"""The status machine: one transition table, and the methods that walk it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from glimpse.domain.errors import Conflict, Forbidden, Invalid
from glimpse.domain.images import TRANSITIONS, Digest, Image, ImageStatus, Location

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DIGEST = Digest(3, "md5hex", "sha512", "sha512hex")


def image(status: ImageStatus = ImageStatus.QUEUED, formats: bool = True) -> Image:
    img = Image(id="i", owner="p", created_at=NOW, updated_at=NOW, status=status)
    if formats:
        img.disk_format, img.container_format = "raw", "bare"
    return img


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(ImageStatus)


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("queued", {"saving", "uploading", "importing", "active", "deleted"}),
        ("saving", {"active", "killed", "deleted", "queued"}),
        ("active", {"pending_delete", "deleted", "deactivated"}),
        ("deactivated", {"active", "deleted"}),
        ("killed", {"deleted"}),
        ("deleted", set()),
    ],
)
def test_glance_transitions(source: str, allowed: set[str]) -> None:
    assert {s.value for s in TRANSITIONS[ImageStatus(source)]} == allowed


def test_upload_round_trip() -> None:
    img = image()
    img.begin_upload("u1")
    assert img.status == ImageStatus.SAVING and img.upload_id == "u1"
    img.finish_upload("u1", DIGEST, Location("file", "k"))
    assert img.status == ImageStatus.ACTIVE
    assert (img.size, img.checksum, img.os_hash_value) == (3, "md5hex", "sha512hex")
    assert img.locations == [Location("file", "k")] and img.upload_id is None


def test_begin_upload_needs_formats() -> None:
    with pytest.raises(Invalid, match="disk_format"):
        image(formats=False).begin_upload("u1")


@pytest.mark.parametrize("status", [s for s in ImageStatus if s != ImageStatus.QUEUED])
def test_begin_upload_only_from_queued(status: ImageStatus) -> None:
    with pytest.raises(Conflict):
        image(status).begin_upload("u1")


def test_finish_upload_needs_the_claim() -> None:
    img = image()
    img.begin_upload("u1")
    with pytest.raises(Conflict):
        img.finish_upload("someone-else", DIGEST, Location("file", "k"))
    assert img.status == ImageStatus.SAVING


def test_fail_upload_returns_to_queued_and_clears_size() -> None:
    img = image()
    img.begin_upload("u1")
    img.size = 10
    assert img.fail_upload("u1") is True
    assert img.status == ImageStatus.QUEUED and img.size is None and img.upload_id is None
    assert img.fail_upload("u1") is False  # claim already gone: nothing to do


def test_deactivate_reactivate() -> None:
    img = image(ImageStatus.ACTIVE)
    img.deactivate()
    img.deactivate()  # idempotent
    assert img.status == ImageStatus.DEACTIVATED
    img.reactivate()
    img.reactivate()
    assert img.status == ImageStatus.ACTIVE


@pytest.mark.parametrize("status", [ImageStatus.QUEUED, ImageStatus.SAVING, ImageStatus.KILLED])
def test_deactivate_refused_outside_active(status: ImageStatus) -> None:
    with pytest.raises(Forbidden):
        image(status).deactivate()
    with pytest.raises(Forbidden):
        image(status).reactivate()


def test_delete_protected_is_forbidden() -> None:
    img = image(ImageStatus.ACTIVE)
    img.protected = True
    with pytest.raises(Forbidden):
        img.delete()


def test_deleting_during_upload_keeps_the_claim() -> None:
    img = image()
    img.begin_upload("u1")
    img.delete()
    assert img.upload_id == "u1"  # the late finish of that upload then fails
    assert not img.fail_upload("u1")


def test_delete_hands_back_locations() -> None:
    img = image(ImageStatus.ACTIVE)
    img.locations = [Location("file", "k")]
    assert img.delete() == [Location("file", "k")]
    assert img.status == ImageStatus.DELETED and img.locations == []
    with pytest.raises(Conflict):
        img.delete()


def test_drop_store_keeps_the_last_copy() -> None:
    img = image(ImageStatus.ACTIVE)
    img.locations = [Location("fast", "k1"), Location("cheap", "k2"), Location("fast", "k3")]
    assert img.drop_store("fast") == [Location("fast", "k1"), Location("fast", "k3")]
    assert img.locations == [Location("cheap", "k2")]
    with pytest.raises(Conflict):
        img.drop_store("cheap")  # the last copy
    from glimpse.domain.errors import NotFound

    with pytest.raises(NotFound):
        img.drop_store("fast")
    queued = image()
    queued.locations = [Location("a", "x"), Location("b", "y")]
    with pytest.raises(Conflict):
        queued.drop_store("a")
