"""Conversion of imported image data with qemu-img, under the rules of Glance's conversion plugin.

    convert(source, input_format, settings, workdir) -> Converted

1. oslo.utils' format inspectors read `source` (all of them, one pass) before qemu-img touches
   it: the content must be `input_format` (a raw declaration also accepts a GPT/MBR disk or a
   LUKS container, which qemu reads as raw) and pass the inspector's safety checks (a GPT/MBR
   that fails them is only logged, as in the upload inspection), and a VHD must not be a
   differencing disk.
2. `qemu-img info -f <input> --output=json` under the process limits must agree on the format
   and report no backing file, no data file, no encryption, no VMDK extent other than the file
   itself and a VMDK create type in `vmdk_allowed_types`.
3. `qemu-img convert -f <input> -O <output>` (never a probed format) writes a new file in
   `workdir`; steps 1 and 2 run again on it, which must be exactly the output format and at
   least as large a disk as the input.

Formats are Glance `disk_format` names (`vhd` is qemu's `vpc`). qemu-img always runs as a child
process without a shell, through util-linux `prlimit` (address space, CPU time: set before
qemu-img starts), with stdin closed, absolute paths (a relative name with a colon would be read
as a qemu protocol), a wall-clock timeout, and is killed if the caller is cancelled. Any failure
removes the partial output; the source is never changed or removed.

Errors:

    RefusedData        the data breaks a rule; the message names it
    ConversionFailed   qemu-img could not do the job: not installed, killed by a limit, timed
                       out, exited with an error (its stderr is in the message)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oslo_utils.imageutils import format_inspector

from glimpse.domain.errors import DomainError, RefusedData

log = logging.getLogger(__name__)

__all__ = [
    "CONVERTIBLE",
    "ConversionFailed",
    "ConversionSettings",
    "Converted",
    "check_info",
    "convert",
    "find_qemu_img",
]

GiB = 1 << 30
# Glance disk_format -> qemu-img format name, for the formats both sides can read and write.
CONVERTIBLE: Mapping[str, str] = {
    "raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi",
}
# What a raw declaration accepts, as the upload inspection (services/inspection.py) does: a
# partitioned disk (GPT/MBR) or a LUKS container, which qemu reads as raw with `-f raw`.
RAW_CONTENT = frozenset({"raw", "gpt", "luks"})
_VHD_DIFFERENCING = 4  # the disk type at byte 60 of a VHD footer (and of its header copy)
CHUNK = 1 << 20
OUTPUT_CAP = 1 << 20  # bytes of stdout / stderr kept from one qemu-img run
THREAD_STACK = 2 << 20  # RLIMIT_STACK of qemu-img: the stack of each of its threads


class ConversionFailed(DomainError):
    """qemu-img could not inspect or convert the data (see the module docstring)."""


@dataclass(frozen=True)
class ConversionSettings:
    """How imports convert. A bad value raises ValueError at construction (start-up)."""

    output_format: str | None = None  # a CONVERTIBLE name; None: no conversion
    cpu_seconds: int = 30  # CPU time of one `qemu-img info` (Glance's limit)
    address_space: int = GiB  # address space of every qemu-img run (Glance's limit)
    timeout: float = 60.0  # wall-clock seconds of one `qemu-img info`
    convert_cpu_seconds: int = 600  # CPU time of one `qemu-img convert`
    convert_timeout: float = 3600.0  # wall-clock seconds of one `qemu-img convert`
    compress: bool = False  # `qemu-img convert -c` (qcow2 output only)
    vmdk_allowed_types: tuple[str, ...] = ("streamOptimized", "monolithicSparse")
    qemu_img: str = "qemu-img"  # a program name looked up on PATH, or a path

    def __post_init__(self) -> None:
        if self.output_format is not None and self.output_format not in CONVERTIBLE:
            raise ValueError(f"output_format: {self.output_format!r} is not one of "
                             f"{', '.join(CONVERTIBLE)}")
        for name in ("cpu_seconds", "address_space", "timeout", "convert_cpu_seconds",
                     "convert_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.compress and self.output_format != "qcow2":
            raise ValueError("compress: only with output_format qcow2")


@dataclass(frozen=True)
class Converted:
    """The data to store. `path` is `source` itself when no conversion was needed (no
    `output_format`, or the input is already in it); otherwise a new file in `workdir` that
    the caller owns and removes."""

    path: Path
    disk_format: str
    size: int
    virtual_size: int | None


def find_qemu_img(settings: ConversionSettings) -> str:
    """The absolute path of qemu-img; ConversionFailed when it (or prlimit) is missing."""
    found = shutil.which(settings.qemu_img)
    if found is None:
        raise ConversionFailed(f"qemu-img not found ({settings.qemu_img!r}); "
                               "install Debian's qemu-utils")
    _prlimit()
    return os.path.abspath(found)


def _prlimit() -> str:
    found = shutil.which("prlimit")
    if found is None:
        raise ConversionFailed("prlimit (util-linux) not found; qemu-img never runs without "
                               "limits")
    return found


async def convert(source: Path, input_format: str, settings: ConversionSettings,
                  workdir: Path) -> Converted:
    """Check `source` (declared `input_format`) and convert it to `settings.output_format`.

    Raises RefusedData (also for an input format that cannot be converted) or ConversionFailed.
    """
    if input_format not in CONVERTIBLE:
        raise RefusedData(f"cannot convert from disk_format {input_format!r}")
    qemu = find_qemu_img(settings)
    source, workdir = await asyncio.to_thread(_absolute, source, workdir)
    virtual_size = await _check(qemu, source, input_format, settings)
    output_format = settings.output_format
    if output_format is None or output_format == input_format:
        size = await asyncio.to_thread(os.path.getsize, source)
        return Converted(source, input_format, size, virtual_size)
    target = workdir / f".{source.name}.{uuid.uuid4().hex}.{output_format}"
    try:
        args = ["convert", "-f", CONVERTIBLE[input_format], "-O", CONVERTIBLE[output_format]]
        if settings.compress:
            args.append("-c")
        await _run(qemu, [*args, str(source), str(target)], settings.convert_cpu_seconds,
                   settings.address_space, settings.convert_timeout)
        out_virtual = await _check(qemu, target, output_format, settings, converted=True)
        if out_virtual < virtual_size:
            raise ConversionFailed(f"the converted disk is smaller ({out_virtual} bytes) than "
                                   f"the input ({virtual_size} bytes)")
        size = await asyncio.to_thread(os.path.getsize, target)
        return Converted(target, output_format, size, out_virtual)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _absolute(*paths: Path) -> tuple[Path, ...]:
    return tuple(path.resolve() for path in paths)


async def _check(qemu: str, path: Path, disk_format: str, settings: ConversionSettings,
                 converted: bool = False) -> int:
    """Steps 1 and 2 on one file; returns its virtual size as qemu-img reports it."""
    what = "the converted image" if converted else "the image"
    detected = await asyncio.to_thread(_inspect, path, what)
    allowed = RAW_CONTENT if disk_format == "raw" else {disk_format}
    if detected not in allowed:
        raise RefusedData(f"{what} was declared {disk_format} but its content is {detected}")
    out = await _run(qemu, ["info", "-f", CONVERTIBLE[disk_format], "--output=json", str(path)],
                     settings.cpu_seconds, settings.address_space, settings.timeout)
    try:
        info = json.loads(out)
    except ValueError as exc:
        raise ConversionFailed(f"qemu-img info printed no JSON: {exc}") from None
    return check_info(info, disk_format, path, settings.vmdk_allowed_types, what)


def _inspect(path: Path, what: str) -> str:
    """The one format oslo's inspectors find in `path` (safety checks passed); RefusedData."""
    try:
        with path.open("rb") as f:
            wrapper = format_inspector.InspectWrapper(f)
            try:
                while wrapper.formats is None and wrapper.read(CHUNK):
                    pass
            finally:
                wrapper.close()
            matches = wrapper.formats or []
            names = sorted(str(m) for m in matches)
            if names == ["gpt", "iso"]:  # a hybrid ISO carries an MBR: it is an ISO
                matches = [m for m in matches if str(m) == "iso"]
            elif len(matches) != 1:
                raise RefusedData(f"{what} matches several formats: {', '.join(names)}")
    except format_inspector.ImageFormatError as exc:
        raise RefusedData(f"{what} cannot be inspected: {exc}") from None
    inspector = matches[0]
    if str(inspector) == "vhd":
        header = bytes(inspector.region("header").data)
        if int.from_bytes(header[60:64], "big") == _VHD_DIFFERENCING:
            raise RefusedData(f"{what} is a differencing VHD: it names a parent image")
    try:
        inspector.safety_check()
    except format_inspector.SafetyCheckFailed as exc:
        reasons = "; ".join(f"{name}: {why}" for name, why in sorted(exc.failures.items()))
        if str(inspector) == "gpt":  # odd MBRs are common and harmless under `-f raw`
            log.warning("%s: GPT/MBR safety checks failed (accepted): %s", what, reasons)
            return "gpt"
        raise RefusedData(f"{what} ({inspector}) is unsafe: {reasons}") from None
    except format_inspector.ImageFormatError as exc:
        raise RefusedData(f"{what} ({inspector}) cannot be checked: {exc}") from None
    return str(inspector)


def check_info(info: Any, disk_format: str, path: Path, vmdk_allowed_types: Sequence[str],
               what: str = "the image") -> int:
    """Glance's rules on `qemu-img info --output=json` of `path` read as `disk_format`;
    returns the virtual size, raises RefusedData."""
    if not isinstance(info, dict):
        raise RefusedData(f"qemu-img info on {what} printed {type(info).__name__}, not an object")
    if info.get("format") != CONVERTIBLE[disk_format]:
        raise RefusedData(f"{what} was declared {disk_format} but qemu-img reads it as "
                          f"{info.get('format')}")
    if "backing-filename" in info or "full-backing-filename" in info:
        raise RefusedData(f"{what} has a backing file ({info.get('backing-filename')!r})")
    if info.get("encrypted"):
        raise RefusedData(f"{what} is encrypted")
    specific = info.get("format-specific")
    data = specific.get("data") if isinstance(specific, dict) else None
    data = data if isinstance(data, dict) else {}
    if data.get("data-file") is not None:
        raise RefusedData(f"{what} has an external data file ({data['data-file']!r})")
    if disk_format == "vmdk":
        create_type = data.get("create-type")
        if create_type not in vmdk_allowed_types:
            raise RefusedData(f"{what} is a VMDK of create type {create_type!r}; allowed: "
                              f"{', '.join(vmdk_allowed_types) or 'none'}")
        extents = data.get("extents")
        for extent in extents if isinstance(extents, list) else [None]:
            name = extent.get("filename") if isinstance(extent, dict) else None
            if name != str(path):
                raise RefusedData(f"{what} is a VMDK with an extent in another file ({name!r})")
    size = info.get("virtual-size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RefusedData(f"qemu-img reports no virtual size for {what}")
    return size


async def _run(qemu: str, args: list[str], cpu_seconds: int, address_space: int,
               wall_seconds: float) -> bytes:
    """Run qemu-img under the limits; returns its stdout, raises ConversionFailed."""
    prlimit = _prlimit()
    limits = f"address space {address_space} bytes, CPU {cpu_seconds} s"
    command = f"qemu-img {args[0]}"
    # qemu's block-layer thread pool grows with I/O latency (up to 64 threads), and each thread
    # took an 8 MiB stack and a 64 MiB malloc arena of address space: under load a convert of
    # a small, valid image passed the address-space limit and aborted. So: 2 MiB thread stacks
    # (RLIMIT_STACK, which glibc uses for them; qemu's coroutines have 1 MiB stacks of their
    # own) and one malloc arena.
    argv = [prlimit, f"--as={address_space}", f"--cpu={cpu_seconds}:{cpu_seconds + 1}",
            f"--stack={THREAD_STACK}", "--", qemu, *args]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           "MALLOC_ARENA_MAX": "1"}
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(wall_seconds):
            out, err = await asyncio.gather(_read_capped(proc.stdout),
                                            _read_capped(proc.stderr))
            code = await proc.wait()
    except TimeoutError:
        raise ConversionFailed(f"{command} took longer than {wall_seconds} s; killed") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
    message = err.decode("utf-8", "replace").strip()[-2000:]
    if code < 0:
        name = signal.Signals(-code).name
        why = " (its CPU time limit)" if -code == signal.SIGXCPU else ""
        raise ConversionFailed(f"{command} was killed by {name}{why}; limits: {limits}"
                               + (f"; it said: {message}" if message else ""))
    if code != 0:
        raise ConversionFailed(f"{command} failed (exit status {code}; limits: {limits}): "
                               f"{message or 'no message'}")
    if len(out) > OUTPUT_CAP:
        raise ConversionFailed(f"{command} printed more than {OUTPUT_CAP} bytes")
    return out


async def _read_capped(stream: asyncio.StreamReader) -> bytes:
    """Everything up to OUTPUT_CAP + 1 bytes; the rest is read and dropped (the child must
    never block on a full pipe)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) <= OUTPUT_CAP:
            kept += chunk[: OUTPUT_CAP + 1 - len(kept)]
    return bytes(kept)
