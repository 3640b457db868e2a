"""Format inspection over real image files made by qemu-img (Debian's qemu-utils, installed by
scripts/test through scripts/debian-packages): each format detected with the virtual size
qemu-img reports, hostile images refused naming the reason. Files are streamed into the stage
as the upload pipeline does (~4 MiB batches of 64 KiB chunks) and in small odd chunks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from glimpse.domain.errors import RefusedData
from glimpse.services.inspection import FormatInspection, Inspected, InspectionSettings
from glimpse.stores.slabs import SLAB_SIZE, SlabPool

MiB = 1024 * 1024
SIZE = "16M"
CHUNKS = [65536, 4093]  # the pipeline's chunks; odd small ones (boundaries must not matter)


def qemu_img(*args: str) -> str:
    if shutil.which("qemu-img") is None:
        pytest.fail("qemu-img is missing: bash scripts/debian-packages qemu-utils")
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True).stdout


def create(path: Path, fmt: str, *options: str) -> Path:
    qemu_img("create", "-q", "-f", fmt, *options, str(path), SIZE)
    return path


def qemu_virtual_size(path: Path, fmt: str) -> int:
    return int(json.loads(qemu_img("info", "--output=json", "-f", fmt, str(path)))["virtual-size"])


def stream(path: Path, disk_format: str, chunk: int = 65536,
           settings: InspectionSettings | None = None) -> Inspected:
    stage = FormatInspection(disk_format, "bare", settings or InspectionSettings())
    with path.open("rb") as f:
        batch: list[bytes] = []
        batched = 0
        while data := f.read(chunk):
            batch.append(data)
            batched += len(data)
            if batched >= 4 * MiB:
                stage.update(batch)
                batch, batched = [], 0
        stage.update(batch)
    return stage.finish()


def stream_slabs(path: Path, disk_format: str) -> Inspected:
    """As `stream`, the data in slabs handed over as memoryviews, as the HTTP layer receives
    a large body; a slab is refilled as soon as nothing refers to it."""
    stage = FormatInspection(disk_format, "bare", InspectionSettings())
    pool = SlabPool(size=SLAB_SIZE, keep=2)
    with path.open("rb") as f:
        while True:
            batch: list[memoryview] = []
            for _ in range(4):
                view = memoryview(pool.take())
                count = f.readinto(view)
                if count:
                    batch.append(view[:count])
                if count < len(view):
                    break
            if batch:
                stage.update(batch)  # type: ignore[arg-type]  # memoryviews, as the pipeline gives
            if len(batch) < 4 or count < SLAB_SIZE:
                break
    return stage.finish()


def refused(path: Path, disk_format: str, chunk: int = 65536) -> str:
    with pytest.raises(RefusedData) as caught:
        stream(path, disk_format, chunk)
    return caught.value.message


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


def _filled_raw(path: Path) -> Path:
    with path.open("wb") as f:
        f.write(bytes(range(256)) * (16 * MiB // 256))
    return path


IMAGES = {  # name: (disk_format, qemu's format, qemu-img create options)
    "qcow2": ("qcow2", "qcow2", ()),
    "qcow2-v2": ("qcow2", "qcow2", ("-o", "compat=0.10")),
    "stream-optimized": ("vmdk", "vmdk", ("-o", "subformat=streamOptimized")),
    "monolithic-sparse": ("vmdk", "vmdk", ("-o", "subformat=monolithicSparse")),
    "vpc-dynamic": ("vhd", "vpc", ()),
    "vpc-fixed": ("vhd", "vpc", ("-o", "subformat=fixed")),
    "vhdx": ("vhdx", "vhdx", ()),
    "vdi": ("vdi", "vdi", ()),
    "luks": ("luks", "luks", ("--object", "secret,id=s0,data=secret",
                              "-o", "key-secret=s0,iter-time=10")),
    "raw": ("raw", "raw", ()),
}


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_qemu_images_are_detected_with_qemu_virtual_size(work: Path, name: str,
                                                         chunk: int) -> None:
    disk_format, fmt, options = IMAGES[name]
    path = work / f"{name}.img"
    if not path.exists():
        create(path, fmt, *options)
    expected = {"luks": "luks", "vpc": "vhd"}.get(fmt, fmt)
    assert stream(path, disk_format, chunk) == Inspected(expected, qemu_virtual_size(path, fmt))


def test_converted_images_with_data_are_detected(work: Path) -> None:
    source = _filled_raw(work / "filled.raw")
    for fmt, disk_format in (("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vhdx", "vhdx")):
        target = work / f"filled.{fmt}"
        options = ("-o", "subformat=streamOptimized") if fmt == "vmdk" else ()
        qemu_img("convert", "-f", "raw", "-O", fmt, *options, str(source), str(target))
        assert stream(target, disk_format) == Inspected(disk_format, 16 * MiB)
        assert stream(target, disk_format, 4093) == Inspected(disk_format, 16 * MiB)
    assert stream(source, "raw") == Inspected("raw", 16 * MiB)


def test_an_iso_made_by_a_mastering_tool_is_detected(work: Path) -> None:
    tool = shutil.which("genisoimage") or shutil.which("xorriso")
    if tool is None:
        pytest.fail("no genisoimage/xorriso here: `bash scripts/debian-packages xorriso`")
    (work / "tree").mkdir(exist_ok=True)
    (work / "tree" / "hello.txt").write_text("hello\n")
    path = work / "disc.iso"
    args = ["-o", str(path), str(work / "tree")]
    cmd = [tool, "-quiet", *args] if "genisoimage" in tool else [tool, "-as", "mkisofs", *args]
    subprocess.run(cmd, check=True, capture_output=True)
    assert stream(path, "iso") == Inspected("iso", path.stat().st_size)


def test_a_gpt_disk_made_by_sgdisk_is_raw_or_gpt(work: Path) -> None:
    if shutil.which("sgdisk") is None:
        pytest.fail("no sgdisk here: `bash scripts/debian-packages gdisk`")
    path = create(work / "gpt.raw", "raw")
    subprocess.run(["sgdisk", "-n", "1:2048:0", str(path)], check=True, capture_output=True)
    assert stream(path, "raw") == Inspected("gpt", 16 * MiB)


def test_qed_is_refused(work: Path) -> None:
    assert "QED images are refused" in refused(create(work / "x.qed", "qed"), "qed")


def test_qcow2_with_a_backing_file_is_refused(work: Path) -> None:
    base = create(work / "base.raw", "raw")
    path = create(work / "child.qcow2", "qcow2", "-b", str(base), "-F", "raw")
    for chunk in CHUNKS:
        assert "backing file" in refused(path, "qcow2", chunk)


def test_qcow2_with_an_external_data_file_is_refused(work: Path) -> None:
    path = create(work / "external.qcow2", "qcow2", "-o", f"data_file={work / 'external.data'}")
    assert "data_file" in refused(path, "qcow2")


@pytest.mark.parametrize("subformat", ["monolithicFlat", "twoGbMaxExtentSparse"])
def test_vmdk_descriptors_naming_other_files_are_refused(work: Path, subformat: str) -> None:
    path = create(work / f"{subformat}.vmdk", "vmdk", "-o", f"subformat={subformat}")
    for chunk in CHUNKS:
        assert f"create type '{subformat.lower()}' is not allowed" in refused(path, "vmdk",
                                                                             chunk)
        assert "vmdk" in refused(path, "raw", chunk)


def test_a_sparse_vmdk_whose_extent_names_a_host_file_is_refused(work: Path) -> None:
    path = create(work / "x.vmdk", "vmdk", "-o", "subformat=monolithicSparse")
    data = path.read_bytes()
    assert b'SPARSE "x.vmdk"' in data
    hostile = work / "hostile.vmdk"
    hostile.write_bytes(data.replace(b'SPARSE "x.vmdk"', b'FLAT "/etc/passwd" 0', 1))
    assert "not SPARSE" in refused(hostile, "vmdk")
    hostile.write_bytes(data.replace(b'SPARSE "x.vmdk"', b'SPARSE "/etc/pw"', 1))
    assert "with a path" in refused(hostile, "vmdk")


def test_vmdk_create_types_follow_the_settings(work: Path) -> None:
    path = create(work / "only.vmdk", "vmdk", "-o", "subformat=monolithicSparse")
    settings = InspectionSettings(vmdk_allowed_types=("streamOptimized",))
    with pytest.raises(RefusedData, match="not allowed"):
        stream(path, "vmdk", settings=settings)


@pytest.mark.parametrize(("declared", "fmt"), [("raw", "qcow2"), ("raw", "vmdk"),
                                               ("vhd", "vhdx"), ("qcow2", "raw"),
                                               ("vmdk", "qcow2"), ("iso", "vdi")])
def test_format_mismatches_are_refused_both_ways(work: Path, declared: str, fmt: str) -> None:
    path = create(work / f"mismatch.{fmt}", fmt)
    assert "does not match the declared format" in refused(path, declared)


@pytest.mark.parametrize(("fmt", "keep"), [("qcow2", 100), ("vmdk", 700), ("vhdx", 300 * 1024),
                                           ("vdi", 200)])
def test_truncated_images_are_refused(work: Path, fmt: str, keep: int) -> None:
    whole = create(work / f"whole.{fmt}", fmt).read_bytes()
    path = work / f"cut.{fmt}"
    path.write_bytes(whole[:keep])
    for declared in (fmt, "raw"):
        message = refused(path, declared, 4093)
        assert f"truncated {fmt}" in message or "does not match" in message, message
    assert f"truncated {fmt}" in refused(path, "raw")


def test_an_iso_qcow2_polyglot_is_refused(work: Path) -> None:
    data = bytearray(create(work / "poly.qcow2", "qcow2").read_bytes())
    pvd = bytearray(2048)
    pvd[0:7] = b"\x01CD001\x01"
    data[32768:34816] = pvd  # inside qcow2's header cluster: still a valid qcow2
    path = work / "poly.img"
    path.write_bytes(bytes(data))
    qemu_img("check", "-f", "qcow2", str(path))
    for declared in ("qcow2", "iso"):
        assert "several formats at once (iso, qcow2)" in refused(path, declared)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_images_in_slabs_are_detected(work: Path, name: str) -> None:
    disk_format, fmt, options = IMAGES[name]
    path = work / f"{name}.img"
    if not path.exists():
        create(path, fmt, *options)
    expected = {"luks": "luks", "vpc": "vhd"}.get(fmt, fmt)
    assert stream_slabs(path, disk_format) == stream(path, disk_format)
    assert stream_slabs(path, disk_format).format == expected
