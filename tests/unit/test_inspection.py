"""Format inspection on crafted images (no I/O): detection, virtual sizes, every refusal naming
its reason, and verdicts that do not depend on how the stream is cut. Real images made by
qemu-img are in tests/services/test_inspection_images.py."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Iterator

import pytest

from glimpse.domain.errors import RefusedData
from glimpse.services.inspection import (
    HEAD_SIZE,
    FormatInspection,
    Inspected,
    InspectionSettings,
)

MiB = 1024 * 1024
BATCH = 4 * MiB
CHUNKINGS = [1, 7, 4093, 65536, BATCH]  # byte-by-byte-ish to whole batches


def batches(data: bytes, chunk: int) -> Iterator[list[bytes]]:
    """Cuts `data` into chunks of `chunk` bytes grouped in ~4 MiB batches, as the pipeline does."""
    batch: list[bytes] = []
    size = 0
    for start in range(0, len(data), chunk):
        batch.append(data[start:start + chunk])
        size += len(batch[-1])
        if size >= BATCH:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def inspect(data: bytes, disk_format: str | None, chunk: int = 65536,
            settings: InspectionSettings | None = None) -> Inspected:
    stage = FormatInspection(disk_format, "bare", settings or InspectionSettings())
    for batch in batches(data, chunk):
        stage.update(batch)
    return stage.finish()


def refused(data: bytes, disk_format: str | None, chunk: int = 65536) -> str:
    with pytest.raises(RefusedData) as caught:
        inspect(data, disk_format, chunk)
    return caught.value.message


def pad(data: bytes, size: int) -> bytes:
    return data + bytes(size - len(data))


# -- crafted headers ---------------------------------------------------------------------------

def qcow2(virtual: int = 1 << 30, version: int = 3, backing_offset: int = 0,
          incompatible: int = 0, size: int = 3 * 65536) -> bytes:
    header = struct.pack(">4sIQIIQIIQQIIQ", b"QFI\xfb", version, backing_offset, 0, 16,
                         virtual, 0, 1, 0x30000, 0x10000, 1, 0, 0)
    if version == 3:
        header += struct.pack(">QQQII", incompatible, 0, 0, 4, 104)
    return pad(header, size)


def iso(blocks: int = 64, block_size: int = 2048) -> bytes:
    pvd = bytearray(2048)
    pvd[0:7] = b"\x01CD001\x01"
    pvd[80:88] = struct.pack("<I", blocks) + struct.pack(">I", blocks)
    pvd[128:132] = struct.pack("<H", block_size) + struct.pack(">H", block_size)
    return pad(bytes(32768) + bytes(pvd), blocks * block_size)


def mbr(gpt: bool = True) -> bytes:
    sector = bytearray(512)
    if gpt:  # one protective partition covering the disk
        sector[446:462] = struct.pack("<B3BB3BII", 0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, 0xFFFF)
    else:
        sector[446:462] = struct.pack("<B3BB3BII", 0x80, 0, 2, 0, 0x83, 0xFF, 0xFF, 0xFF, 2048,
                                      4096)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def gpt_disk(size: int = 4 * MiB) -> bytes:
    return pad(mbr() + pad(b"EFI PART", 512), size)


def vmdk_text(create_type: str, extent: str) -> bytes:
    return (f'# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
            f'createType="{create_type}"\n\n# Extent description\n{extent}\n\n'
            f'# The Disk Data Base\n#DDB\nddb.virtualHWVersion = "4"\n').encode()


def vmdk_sparse(extent: str = 'RW 2048 SPARSE "disk.vmdk"',
                create_type: str = "monolithicSparse") -> bytes:
    header = struct.pack("<4sIIQQQQIQQQ?cccc", b"KDMV", 1, 3, 2048, 128, 1, 20, 512, 21, 25,
                         64, False, b"\n", b" ", b"\r", b"\n")
    return pad(pad(header, 512) + vmdk_text(create_type, extent), 64 * 1024)


def vhd_footer(virtual: int, disk_type: int) -> bytes:
    footer = bytearray(512)
    footer[0:8] = b"conectix"
    footer[40:48] = struct.pack(">Q", virtual)
    footer[48:56] = struct.pack(">Q", virtual)
    footer[60:64] = struct.pack(">I", disk_type)
    return bytes(footer)


# -- detection ---------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_qcow2_is_detected_with_its_virtual_size_however_the_stream_is_cut(chunk: int) -> None:
    assert inspect(qcow2(5 << 30), "qcow2", chunk) == Inspected("qcow2", 5 << 30)


@pytest.mark.parametrize("chunk", CHUNKINGS[1:])
def test_raw_data_is_raw_with_its_byte_size(chunk: int) -> None:
    data = bytes(range(256)) * (HEAD_SIZE // 256 + 300)
    assert inspect(data, "raw", chunk) == Inspected("raw", len(data))


def test_short_and_empty_raw_data_is_raw() -> None:
    assert inspect(b"hello", "raw") == Inspected("raw", 5)
    assert inspect(b"", "raw") == Inspected("raw", 0)


@pytest.mark.parametrize("chunk", [7, 65536, BATCH])
def test_iso_is_detected_with_its_volume_size(chunk: int) -> None:
    assert inspect(iso(blocks=300), "iso", chunk) == Inspected("iso", 300 * 2048)


@pytest.mark.parametrize("declared", ["raw", "gpt"])
def test_a_gpt_disk_is_accepted_as_raw_or_gpt(declared: str) -> None:
    data = gpt_disk()
    assert inspect(data, declared, 4093) == Inspected("gpt", len(data))


def test_an_iso_with_a_gpt_is_an_iso_as_glance_says() -> None:
    data = bytearray(iso(blocks=100))
    data[0:1024] = mbr() + pad(b"EFI PART", 512)
    assert inspect(bytes(data), "iso") == Inspected("iso", 100 * 2048)


def test_a_fixed_vhd_is_found_by_its_footer_at_the_end() -> None:
    data = bytes(MiB) + vhd_footer(MiB, 2)
    assert inspect(data, "vhd", 4093) == Inspected("vhd", MiB)


def test_formats_without_an_inspector_take_harmless_data() -> None:
    data = bytes(MiB)
    for declared in ("ami", "aki", "ari", "ploop", None):
        assert inspect(data, declared) == Inspected("raw", MiB)


def test_inspection_can_be_switched_off() -> None:
    settings = InspectionSettings(enabled=False)
    assert inspect(qcow2(backing_offset=512), "raw", settings=settings) == Inspected("raw", None)


# -- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 4093, BATCH])
def test_qcow2_with_a_backing_file_is_refused(chunk: int) -> None:
    data = qcow2(backing_offset=0x200, size=65536)
    assert "backing file" in refused(data, "qcow2", chunk)


def test_qcow2_with_an_external_data_file_is_refused() -> None:
    assert "data_file" in refused(qcow2(incompatible=1 << 2), "qcow2")


def test_qcow2_with_unknown_incompatible_features_is_refused() -> None:
    assert "Unknown QCOW2 features" in refused(qcow2(incompatible=1 << 9), "qcow2")


def test_qcow2_version_1_is_refused() -> None:
    assert "Unsupported qcow2 version" in refused(qcow2(version=1), "qcow2")


def test_qcow2_declared_raw_is_refused() -> None:
    message = refused(qcow2(), "raw")
    assert "qcow2" in message and "'raw'" in message and "does not match" in message


def test_raw_declared_qcow2_is_refused() -> None:
    message = refused(bytes(MiB), "qcow2")
    assert "raw data" in message and "'qcow2'" in message


@pytest.mark.parametrize("declared", ["ami", "ploop", None])
def test_dangerous_formats_are_refused_where_no_inspector_checks(declared: str | None) -> None:
    assert "only raw, GPT or ISO" in refused(qcow2(backing_offset=0x200), declared)


def test_qed_is_refused_whatever_it_is_declared() -> None:
    data = pad(b"QED\x00" + struct.pack("<III", 65536, 16, 1), 65536 * 3)
    assert "QED images are refused" in refused(data, "qed")
    assert "qed" in refused(data, "raw")


@pytest.mark.parametrize("chunk", [1, 4093])
def test_a_flat_vmdk_descriptor_naming_a_host_file_is_refused(chunk: int) -> None:
    data = vmdk_text("monolithicFlat", 'RW 2048 FLAT "/etc/passwd" 0')
    assert "create type 'monolithicflat' is not allowed" in refused(data, "vmdk", chunk)
    assert "vmdk" in refused(data, "raw", chunk)  # never raw, however it is cut


def test_a_sparse_vmdk_whose_extent_is_flat_is_refused() -> None:
    data = vmdk_text("monolithicSparse", 'RW 2048 FLAT "passwd" 0')
    assert "not SPARSE" in refused(data, "vmdk")


def test_an_embedded_vmdk_descriptor_naming_a_path_is_refused() -> None:
    assert "with a path" in refused(vmdk_sparse('RW 2048 SPARSE "/etc/shadow"'), "vmdk")


def test_a_sparse_vmdk_with_a_safe_descriptor_is_accepted() -> None:
    assert inspect(vmdk_sparse(), "vmdk", 7) == Inspected("vmdk", 2048 * 512)


def test_vmdk_create_types_are_configurable() -> None:
    settings = InspectionSettings(vmdk_allowed_types=("streamOptimized",))
    with pytest.raises(RefusedData, match="'monolithicsparse' is not allowed"):
        inspect(vmdk_sparse(), "vmdk", settings=settings)


def test_a_differencing_vhd_is_refused() -> None:
    data = pad(vhd_footer(MiB, 4) + b"cxsparse", 4096)
    assert "differencing" in refused(data, "vhd")


@pytest.mark.parametrize(("data", "name"), [
    (qcow2()[:60], "qcow2"),
    (qcow2()[:300], "qcow2"),
    (b"LUKS\xba\xbe\x00\x01", "luks"),
    (b"vhdxfile" + bytes(100 * 1024), "vhdx"),
    (iso()[:33000], "iso"),
    (vmdk_sparse()[:40], "vmdk"),
])
@pytest.mark.parametrize("declared", ["raw", "qcow2"])
def test_truncated_headers_are_refused(data: bytes, name: str, declared: str) -> None:
    assert f"truncated {name}" in refused(data, declared, 7)


def test_a_malformed_header_is_refused() -> None:
    data = bytearray(vmdk_sparse())
    data[28:36] = struct.pack("<Q", 7)  # descriptor moved away from where qemu reads it
    assert "malformed vmdk header" in refused(bytes(data), "raw")


@pytest.mark.parametrize("declared", ["qcow2", "iso", "raw"])
def test_an_iso_qcow2_polyglot_is_refused(declared: str) -> None:
    data = bytearray(iso(blocks=200))
    data[0:512] = qcow2(size=512)
    message = refused(bytes(data), declared)
    assert "several formats" in message and "iso, qcow2" in message


def test_a_refusal_comes_as_soon_as_the_head_is_seen() -> None:
    stage = FormatInspection("raw", "bare", InspectionSettings())
    data = qcow2(size=HEAD_SIZE + 65536)
    chunks = [data[start:start + 65536] for start in range(0, len(data), 65536)]
    head = HEAD_SIZE // 65536
    for chunk in chunks[:head - 1]:
        stage.update([chunk])
    with pytest.raises(RefusedData, match="qcow2"):
        stage.update([chunks[head - 1]])  # the chunk that completes the head
    with pytest.raises(RefusedData, match="qcow2"):  # and stays refused
        stage.finish()


def test_memory_stays_flat_for_a_large_stream() -> None:
    chunk = bytes(65536)
    stage = FormatInspection("qcow2", "bare", InspectionSettings())
    tracemalloc.start()
    try:
        stage.update([qcow2(size=65536)])
        for _ in range(64):  # 256 MiB
            stage.update([chunk] * 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stage.finish() == Inspected("qcow2", 1 << 30)
    assert peak < 3 * HEAD_SIZE, peak
