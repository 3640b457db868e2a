"""Conversion with the real qemu-img (Debian's qemu-utils) on real images made by qemu-img:
every input format to raw and raw to every output format, with sizes, virtual sizes, the
re-detected format and the guest bytes checked; hostile inputs refused; the process limits,
the timeout and cancellation shown to stop qemu-img and leave nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest
from oslo_utils.imageutils import format_inspector

from glimpse.domain.errors import RefusedData
from glimpse.services.conversion import (
    ConversionFailed,
    ConversionSettings,
    check_info,
    convert,
)

pytestmark = pytest.mark.anyio
MiB = 1 << 20
SIZE = 8 * MiB
QEMU = {"raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx",
        "vdi": "vdi"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True).stdout


def info(path: Path, fmt: str) -> dict[str, object]:
    out = json.loads(qemu_img("info", "-f", QEMU[fmt], "--output=json", str(path)))
    assert isinstance(out, dict)
    return out


@pytest.fixture
def guest(tmp_path: Path) -> Path:
    """A sparse raw disk with recognisable bytes at the start, the middle and the end."""
    path = tmp_path / "guest.raw"
    with path.open("wb") as f:
        f.truncate(SIZE)
        for offset in (0, SIZE // 2 + 4096, SIZE - 65536):
            f.seek(offset)
            f.write(f"glimpse guest data at {offset}\n".encode() * 100)
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def made(guest: Path, fmt: str, *options: str) -> Path:
    path = guest.with_suffix(f".{fmt}")
    qemu_img("convert", "-f", "raw", "-O", QEMU[fmt], *options, str(guest), str(path))
    return path


def detected(path: Path) -> str:
    return str(format_inspector.detect_file_format(str(path)))


def same_guest(a: Path, a_fmt: str, b: Path, b_fmt: str) -> bool:
    result = subprocess.run(["qemu-img", "compare", "-f", QEMU[a_fmt], "-F", QEMU[b_fmt],
                             str(a), str(b)], capture_output=True, text=True)
    return result.returncode == 0


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vhd", "vdi", "vhdx"])
async def test_each_format_converts_to_raw(guest: Path, workdir: Path, fmt: str) -> None:
    source = made(guest, fmt)
    declared_virtual = info(source, fmt)["virtual-size"]

    result = await convert(source, fmt, ConversionSettings(output_format="raw"), workdir)

    assert result.disk_format == "raw"
    assert result.path.parent == workdir and result.path.exists()
    assert result.virtual_size == declared_virtual
    assert result.size == result.path.stat().st_size == result.virtual_size
    assert detected(result.path) == "raw"
    with guest.open("rb") as original, result.path.open("rb") as converted:
        assert converted.read(SIZE) == original.read()  # vhd may round the disk up
    assert source.exists()


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vhd", "vdi", "vhdx"])
async def test_raw_converts_to_each_format(guest: Path, workdir: Path, fmt: str) -> None:
    result = await convert(guest, "raw", ConversionSettings(output_format=fmt), workdir)

    assert result.disk_format == fmt
    assert detected(result.path) == fmt
    assert result.size == result.path.stat().st_size
    assert result.size < SIZE or fmt == "vhdx"  # vhdx lays out 16 MiB of (sparse) metadata
    assert result.virtual_size == info(result.path, fmt)["virtual-size"]
    assert result.virtual_size is not None and result.virtual_size >= SIZE
    assert same_guest(guest, "raw", result.path, fmt) or fmt == "vhd"
    assert entries(workdir) == [result.path]


async def test_partitioned_raw_disk_round_trips(guest: Path, workdir: Path) -> None:
    with guest.open("r+b") as f:  # a GPT protective MBR: one 0xEE partition from LBA 1
        f.seek(446)
        f.write(struct.pack("<B3BB3BII", 0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1,
                            SIZE // 512 - 1))
        f.seek(510)
        f.write(b"\x55\xaa")
    assert detected(guest) == "gpt"
    packed = await convert(guest, "raw", ConversionSettings(output_format="qcow2"), workdir)
    back = await convert(packed.path, "qcow2", ConversionSettings(output_format="raw"), workdir)
    assert (back.disk_format, back.size, detected(back.path)) == ("raw", SIZE, "gpt")
    assert same_guest(guest, "raw", back.path, "raw")


async def test_compressed_qcow2_output(guest: Path, workdir: Path) -> None:
    plain = await convert(guest, "raw", ConversionSettings(output_format="qcow2"), workdir)
    packed = await convert(guest, "raw", ConversionSettings(output_format="qcow2",
                                                            compress=True), workdir)
    assert packed.size < plain.size
    assert same_guest(guest, "raw", packed.path, "qcow2")


async def test_no_conversion_checks_and_returns_the_source(guest: Path, workdir: Path) -> None:
    source = made(guest, "qcow2")
    for settings in (ConversionSettings(), ConversionSettings(output_format="qcow2")):
        result = await convert(source, "qcow2", settings, workdir)
        assert result.path == source.resolve()
        assert (result.disk_format, result.size, result.virtual_size) == (
            "qcow2", source.stat().st_size, SIZE)
    assert entries(workdir) == []
    with pytest.raises(RefusedData, match="declared raw but its content is qcow2"):
        await convert(source, "raw", ConversionSettings(), workdir)


async def test_backing_file_refused(guest: Path, workdir: Path) -> None:
    base = made(guest, "qcow2")
    top = guest.with_name("top.qcow2")
    qemu_img("create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top))
    with pytest.raises(RefusedData, match="backing_file"):
        await convert(top, "qcow2", ConversionSettings(output_format="raw"), workdir)
    assert entries(workdir) == []


async def test_data_file_refused(guest: Path, workdir: Path) -> None:
    image = guest.with_name("external.qcow2")
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={guest}", str(image), str(SIZE))
    with pytest.raises(RefusedData, match="data_file"):
        await convert(image, "qcow2", ConversionSettings(output_format="raw"), workdir)
    assert entries(workdir) == []


@pytest.mark.parametrize(("fmt", "declared"), [("qcow2", "vmdk"), ("qcow2", "raw"),
                                               ("vmdk", "qcow2"), ("raw", "qcow2"),
                                               ("vhd", "vhdx")])
async def test_format_mismatch_refused(guest: Path, workdir: Path, fmt: str,
                                       declared: str) -> None:
    source = guest if fmt == "raw" else made(guest, fmt)
    content = "raw" if fmt == "raw" else fmt
    with pytest.raises(RefusedData, match=f"declared {declared} but its content is {content}"):
        await convert(source, declared, ConversionSettings(output_format="vdi"), workdir)
    assert entries(workdir) == []


async def test_flat_vmdk_refused(guest: Path, workdir: Path) -> None:
    descriptor = guest.with_name("flat.vmdk")
    qemu_img("create", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(descriptor),
             str(SIZE))
    with pytest.raises(RefusedData, match="unsafe: descriptor: Unsupported subformat"):
        await convert(descriptor, "vmdk", ConversionSettings(output_format="raw"), workdir)


async def test_vmdk_create_type_must_be_allowed(guest: Path, workdir: Path) -> None:
    sparse = made(guest, "vmdk")  # monolithicSparse: the inspector accepts it, qemu-img names it
    settings = ConversionSettings(output_format="raw", vmdk_allowed_types=("streamOptimized",))
    with pytest.raises(RefusedData, match="create type 'monolithicSparse'; allowed: stream"):
        await convert(sparse, "vmdk", settings, workdir)
    optimized = made(guest, "vmdk", "-o", "subformat=streamOptimized")
    result = await convert(optimized.rename(guest.with_name("s.vmdk")), "vmdk", settings, workdir)
    assert result.virtual_size == SIZE


async def test_differencing_vhd_refused(guest: Path, workdir: Path) -> None:
    image = made(guest, "vhd")
    with image.open("r+b") as f:  # the disk type in the footer copy at the start
        f.seek(60)
        f.write((4).to_bytes(4, "big"))
    with pytest.raises(RefusedData, match="differencing VHD"):
        await convert(image, "vhd", ConversionSettings(output_format="raw"), workdir)


async def test_unconvertible_input_refused(guest: Path, workdir: Path) -> None:
    with pytest.raises(RefusedData, match="cannot convert from disk_format 'iso'"):
        await convert(guest, "iso", ConversionSettings(output_format="raw"), workdir)


def test_qemu_info_rules(tmp_path: Path) -> None:
    path = tmp_path / "x"
    good = {"format": "qcow2", "virtual-size": 5,
            "format-specific": {"type": "qcow2", "data": {"compat": "1.1"}}}
    assert check_info(good, "qcow2", path, ()) == 5
    refusals = {
        "reads it as vmdk": {**good, "format": "vmdk"},
        "backing file": {**good, "backing-filename": "/etc/passwd"},
        "external data file": {**good, "format-specific": {"data": {"data-file": "/dev/sda"}}},
        "encrypted": {**good, "encrypted": True},
        "no virtual size": {**good, "virtual-size": "5"},
    }
    for reason, facts in refusals.items():
        with pytest.raises(RefusedData, match=reason):
            check_info(facts, "qcow2", path, ())
    vmdk = {"format": "vmdk", "virtual-size": 5, "format-specific": {"data": {
        "create-type": "monolithicSparse", "extents": [{"filename": str(path)}]}}}
    assert check_info(vmdk, "vmdk", path, ("monolithicSparse",)) == 5
    vmdk["format-specific"]["data"]["extents"].append({"filename": "/etc/shadow"})  # type: ignore[index]
    with pytest.raises(RefusedData, match="extent in another file"):
        check_info(vmdk, "vmdk", path, ("monolithicSparse",))
    with pytest.raises(RefusedData, match="declared vhd but qemu-img reads it as qcow2"):
        check_info(good, "vhd", path, ())


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="output_format"):
        ConversionSettings(output_format="vpc")
    with pytest.raises(ValueError, match="compress"):
        ConversionSettings(output_format="raw", compress=True)
    with pytest.raises(ValueError, match="cpu_seconds"):
        ConversionSettings(cpu_seconds=0)


@pytest.fixture
def busy(tmp_path: Path) -> Path:
    """128 MiB of compressible, non-zero data: several CPU-seconds of `convert -c`."""
    path = tmp_path / "busy.raw"
    block = b"".join(b"line %08d of data that compresses well\n" % i for i in range(30000))
    with path.open("wb") as f:
        for n in range(128):
            f.write(b"%08d" % n + block[8:MiB])
    return path


async def test_cpu_time_limit_kills_qemu_img(busy: Path, workdir: Path) -> None:
    settings = ConversionSettings(output_format="qcow2", compress=True, convert_cpu_seconds=1)
    with pytest.raises(ConversionFailed, match=r"convert was killed by SIGXCPU \(its CPU time"):
        await convert(busy, "raw", settings, workdir)
    assert entries(workdir) == []


async def test_address_space_limit_fails_clearly(guest: Path, workdir: Path) -> None:
    settings = ConversionSettings(output_format="qcow2", address_space=16 * MiB)
    with pytest.raises(ConversionFailed,
                       match=r"qemu-img info .*limits: address space 16777216 bytes"):
        await convert(guest, "raw", settings, workdir)


async def test_a_tight_address_space_holds_for_a_valid_convert(workdir: Path,
                                                                tmp_path: Path) -> None:
    """qemu-img's I/O threads each took an 8 MiB stack and a 64 MiB malloc arena of address
    space; how many ran depended on I/O latency, so a convert of a valid vmdk failed at random
    under the limit (a quarter of the time at 400 MB on an idle machine, once at 1 GiB in a
    loaded CI run)."""
    disk = tmp_path / "random.raw"
    with disk.open("wb") as f:
        f.write(os.urandom(2 * MiB))
        f.truncate(16 * MiB)
    source = made(disk, "vmdk")
    settings = ConversionSettings(output_format="raw", address_space=400_000_000)
    for _ in range(10):
        result = await convert(source, "vmdk", settings, workdir)
        result.path.unlink()


async def test_timeout_kills_qemu_img(busy: Path, workdir: Path) -> None:
    settings = ConversionSettings(output_format="qcow2", compress=True, convert_timeout=0.5)
    with pytest.raises(ConversionFailed, match=r"qemu-img convert took longer than 0.5 s"):
        await convert(busy, "raw", settings, workdir)
    assert entries(workdir) == []
    assert not running_on(workdir)


async def test_cancellation_kills_qemu_img(busy: Path, workdir: Path) -> None:
    settings = ConversionSettings(output_format="qcow2", compress=True)
    task = asyncio.create_task(convert(busy, "raw", settings, workdir))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if running_on(workdir):
            break
    assert running_on(workdir)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not running_on(workdir)
    assert entries(workdir) == []


async def test_missing_qemu_img_is_clear(guest: Path, workdir: Path) -> None:
    settings = ConversionSettings(output_format="qcow2", qemu_img="/nowhere/qemu-img")
    with pytest.raises(ConversionFailed, match=r"qemu-img not found.*qemu-utils"):
        await convert(guest, "raw", settings, workdir)


def entries(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def running_on(workdir: Path) -> bool:
    """Whether some process has `workdir` in its command line."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(workdir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            pass
    return False
