"""Format inspection: a pipeline stage that finds out what image data really is, and refuses it
when it is not what its `disk_format` says or is unsafe to hand to qemu (docs/image-safety.md).

The detection and most safety checks are the maintained inspectors of oslo.utils
(`oslo_utils.imageutils.format_inspector`), driven here chunk by chunk instead of through its
`InspectWrapper`, so that:

- the result does not depend on how the stream is cut: the first `HEAD_SIZE` bytes reach every
  inspector in one piece (oslo's VMDK inspector decides on a text descriptor from whatever the
  first chunk holds), and an inspector still capturing header regions gets later data in slices
  of at most `SLICE_SIZE` (oslo's VHDX inspector finds its virtual size only when the metadata
  table and the size record arrive in different chunks);
- inspectors that do not match are dropped once the head is seen, and a complete one is fed
  no more, so the steady state costs little (1-3% of an MD5 over the same bytes);
- memory stays flat: the head (2 MiB, once), the inspectors' capture regions (bounded by oslo)
  and the last 512 bytes (a fixed VHD's footer).

Checks added where oslo's inspector falls short: a header that is cut short (oslo calls it
"not a match" and the data would pass as raw), an inspector that fails on data carrying its
format's magic (a malformed header), VMDK create types (configurable) and extents that are not
SPARSE or name paths, VHD differencing disks (a parent path), fixed VHDs (footer only at the
end), and the ISO+GPT rule of Glance.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from oslo_utils.imageutils import format_inspector as fi

from glimpse.domain.errors import RefusedData
from glimpse.stores.base import Chunk

log = logging.getLogger(__name__)

HEAD_SIZE = 2 * 1024 * 1024  # > VMDK's descriptor (1 MiB at 0x200), VHDX's headers, ISO's PVD
SLICE_SIZE = 64 * 1024
_TAIL_SIZE = 512
_PREFIX_SIZE = 34 * 1024  # enough for every magic below

# Glance's disk_format names → the inspector that must match (None: no inspector exists).
INSPECTED_AS: dict[str, str | None] = {
    "raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vhd", "vhdx": "vhdx",
    "vdi": "vdi", "iso": "iso", "gpt": "gpt", "luks": "luks", "qed": "qed",
    "ami": None, "aki": None, "ari": None, "ploop": None,
}
# What each declared format accepts. A raw disk may carry a partition table (GPT/MBR, as Glance
# treats it) or be a LUKS container (Cinder's encrypted volumes are uploaded as raw).
_ACCEPTS: dict[str, frozenset[str]] = {"raw": frozenset({"raw", "gpt", "luks"})}
# Formats without an inspector (and an unset disk_format) accept only formats that neither
# qemu nor a hypervisor interprets as references to other data.
_HARMLESS = frozenset({"raw", "gpt", "iso"})

# Where each format's signature sits; data carrying one is judged as that format even when its
# inspector gives up (truncated or malformed).
_MAGIC: dict[str, tuple[int, tuple[bytes, ...]]] = {
    "qcow2": (0, (b"QFI\xfb",)),
    "qed": (0, (b"QED\x00",)),
    "vhd": (0, (b"conectix",)),
    "vhdx": (0, (b"vhdxfile",)),
    "vmdk": (0, (b"KDMV",)),
    "vdi": (0x40, (b"\x7f\x10\xda\xbe",)),
    "luks": (0, (b"LUKS\xba\xbe",)),
    "iso": (32 * 1024 + 1, (b"CD001", b"NSR02", b"NSR03")),
}
_VHD_DIFFERENCING = 4
_SAFE_VMDK_EXTENT = "sparse"


@dataclass(frozen=True)
class InspectionSettings:
    """`enabled`: inspect at all. `vmdk_allowed_types`: VMDK create types accepted (oslo's
    inspector knows only monolithicSparse and streamOptimized and refuses any other).
    `gpt_safety_checks_fatal`: refuse a GPT/MBR disk whose partition table fails oslo's checks
    (off by default, as Glance's `gpt_safety_checks_nonfatal`: many real disks have odd MBRs)."""

    enabled: bool = True
    vmdk_allowed_types: tuple[str, ...] = ("streamOptimized", "monolithicSparse")
    gpt_safety_checks_fatal: bool = False


@dataclass(frozen=True)
class Inspected:
    """What the data is: `format` in Glance's names ("raw" when nothing else matched, "gpt",
    "iso", "qcow2", ...) and its `virtual_size` in bytes (None when unknown)."""

    format: str
    virtual_size: int | None


class FormatInspection:
    """A pipeline stage: `update` takes the batches in order (in a worker thread) and may raise
    `RefusedData` as soon as the data is known bad; `finish` gives the verdict after the last
    batch, or raises `RefusedData` with a message naming the reason. `container_format` does not
    change the verdict (a qcow2 inside "bare" or "ova" alike is judged by its bytes)."""

    def __init__(self, disk_format: str | None, container_format: str | None,
                 settings: InspectionSettings) -> None:
        self._declared = disk_format
        self._container = container_format
        self._settings = settings
        self._size = 0
        self._head: list[Chunk] | None = []
        self._head_size = 0
        self._prefix = b""
        self._tail = b""
        self._live: dict[str, fi.FileInspector] = {
            name: cls() for name, cls in fi.ALL_FORMATS.items() if name != "raw"}
        self._malformed: dict[str, str] = {}
        self._refused: RefusedData | None = None
        self._result: Inspected | None = None

    def update(self, chunks: Sequence[Chunk]) -> None:
        if not self._settings.enabled:
            return
        if self._refused is not None:
            raise self._refused
        try:
            for chunk in chunks:
                if chunk:
                    self._take(chunk)
        except RefusedData as exc:
            self._refused = exc
            raise

    def finish(self) -> Inspected:
        if not self._settings.enabled:
            return Inspected(self._declared or "raw", None)
        if self._refused is not None:
            raise self._refused
        if self._result is None:
            try:
                if self._head is not None:
                    self._end_head()
                for inspector in self._live.values():
                    inspector.finish()
                result = self._judge(final=True)
                assert result is not None
                self._result = result
            except RefusedData as exc:
                self._refused = exc
                raise
        return self._result

    # -- feeding ----------------------------------------------------------------------------

    def _take(self, chunk: Chunk) -> None:
        self._size += len(chunk)
        self._tail = (self._tail + chunk[-_TAIL_SIZE:])[-_TAIL_SIZE:]
        if self._head is not None:
            self._head.append(chunk)
            self._head_size += len(chunk)
            if self._head_size >= HEAD_SIZE:
                self._end_head()
                self._judge(final=False)
            return
        for name, inspector in list(self._live.items()):
            # A complete inspector has captured all it reads; only LUKS's virtual size (the
            # payload after its header) still counts bytes.
            if not inspector.complete or name == "luks":
                self._feed(name, inspector, chunk)

    def _end_head(self) -> None:
        assert self._head is not None
        head = b"".join(self._head)
        self._head = None
        self._prefix = head[:_PREFIX_SIZE]
        for name, inspector in list(self._live.items()):
            self._feed(name, inspector, head, whole=HEAD_SIZE)
        for name, inspector in list(self._live.items()):
            if not self._matches(name, inspector):
                del self._live[name]

    def _feed(self, name: str, inspector: fi.FileInspector, data: Chunk, whole: int = 0) -> None:
        """Gives `data` to one inspector: its first `whole` bytes in one piece, the rest in
        slices while the inspector still has regions to capture."""
        # oslo's inspectors are typed for bytes but only measure a chunk, slice it and add the
        # slices to bytes of their own: a memoryview serves as well, uncopied
        # (tests/services/test_inspection_images.py feeds them slabs).
        eat = cast(Callable[[Chunk], None], inspector.eat_chunk)
        try:
            if whole:
                eat(data[:whole])
                data = data[whole:]
            if inspector.complete or len(data) <= SLICE_SIZE:
                if data:
                    eat(data)
                return
            for start in range(0, len(data), SLICE_SIZE):
                eat(data[start:start + SLICE_SIZE])
        except Exception as exc:  # oslo raises assorted errors on data not of its format
            del self._live[name]
            if self._has_magic(name):
                self._malformed[name] = str(exc) or type(exc).__name__

    def _matches(self, name: str, inspector: fi.FileInspector) -> bool:
        try:
            return bool(inspector.format_match)
        except Exception as exc:  # e.g. a VMDK whose descriptor never decoded
            if self._has_magic(name):
                self._malformed[name] = str(exc) or type(exc).__name__
            return False

    def _has_magic(self, name: str) -> bool:
        if name not in _MAGIC:
            return False
        offset, magics = _MAGIC[name]
        return any(self._prefix[offset:offset + len(m)] == m for m in magics)

    # -- judging ----------------------------------------------------------------------------

    def _judge(self, final: bool) -> Inspected | None:
        """Refuses what is already known bad; with `final`, returns the verdict."""
        if self._malformed:
            name, reason = next(iter(self._malformed.items()))
            raise RefusedData(f"The image data has a malformed {name} header ({reason}).")
        matched = [n for n, i in self._live.items() if self._matches(n, i)]
        if final:
            for name in _MAGIC:
                if self._has_magic(name) and (name not in matched
                                              or not self._live[name].complete):
                    raise RefusedData(f"The image data is a truncated {name} image: the "
                                      "data ends before its headers do.")
        if set(matched) == {"iso", "gpt"}:
            matched = ["iso"]  # a bootable (hybrid) ISO carries an MBR; Glance calls it ISO
        if len(matched) > 1:
            raise RefusedData("The image data matches several formats at once "
                              f"({', '.join(sorted(matched))}); polyglot images are refused.")
        detected = matched[0] if matched else "raw"
        if detected == "raw" and self._declared == "vhd":
            if not final:
                return None  # a fixed VHD has its only footer at the end
            if self._tail.startswith(b"conectix") and len(self._tail) == _TAIL_SIZE:
                return self._fixed_vhd()
        self._check_declared(detected)
        if detected == "raw":
            return Inspected("raw", self._size)
        inspector = self._live[detected]
        if not final and not inspector.complete:
            return None
        self._check_safety(detected, inspector)
        size = inspector.virtual_size if detected not in ("gpt", "qed") else self._size
        return Inspected(detected, size or None)

    def _check_declared(self, detected: str) -> None:
        declared = self._declared
        wanted = INSPECTED_AS.get(declared) if declared is not None else None
        if wanted is None:
            if detected not in _HARMLESS:
                what = (f"disk_format {declared!r} has no format inspector" if declared
                        else "the image has no disk_format")
                raise RefusedData(f"The image data is {detected}, which is refused: {what}, "
                                  "so only raw, GPT or ISO data is accepted.")
            return
        if detected not in _ACCEPTS.get(wanted, frozenset({wanted})):
            found = "raw data (no known format header)" if detected == "raw" else detected
            raise RefusedData(f"The image data is {found}, but its disk_format is "
                              f"{declared!r}: the content does not match the declared format.")

    def _check_safety(self, detected: str, inspector: fi.FileInspector) -> None:
        if detected == "qed":
            raise RefusedData("QED images are refused: the format is deprecated, no hypervisor "
                              "supports it, and it can name a backing file.")
        if detected == "vmdk":
            self._check_vmdk(inspector)
        if detected == "vhd":
            self._check_vhd(bytes(inspector.region("header").data))
        try:
            inspector.safety_check()
        except fi.SafetyCheckFailed as exc:
            reasons = "; ".join(f"{name}: {failure}" for name, failure in exc.failures.items())
            if detected == "gpt" and not self._settings.gpt_safety_checks_fatal:
                log.warning("GPT/MBR safety checks failed (accepted): %s", reasons)
                return
            raise RefusedData(f"The {detected} image is unsafe ({reasons}).") from exc
        except fi.ImageFormatError as exc:
            raise RefusedData(f"The {detected} image could not be checked: {exc}.") from exc

    def _check_vmdk(self, inspector: fi.FileInspector) -> None:
        create_type = str(getattr(inspector, "vmdktype", "formatnotfound"))
        allowed = {t.lower(): t for t in self._settings.vmdk_allowed_types}
        if create_type not in allowed:
            raise RefusedData(f"The VMDK create type {create_type!r} is not allowed "
                              f"(allowed: {', '.join(self._settings.vmdk_allowed_types)}).")
        text = str(getattr(inspector, "desc_text", "") or "")
        extents = [line.split() for line in (x.strip() for x in text.split("\n"))
                   if line.split(" ")[0] in ("rw", "rdonly", "noaccess")]
        if len(extents) != 1:
            raise RefusedData(f"The VMDK descriptor names {len(extents)} extents; a monolithic "
                              "image has exactly one.")
        extent = extents[0]
        if len(extent) < 4 or extent[2] != _SAFE_VMDK_EXTENT:
            raise RefusedData("The VMDK descriptor names an extent that is not SPARSE "
                              f"({' '.join(extent[:3])}): it would read another file.")
        name = " ".join(extent[3:])
        if "/" in name or "\\" in name:
            raise RefusedData("The VMDK descriptor names an extent with a path; it would "
                              "read a file of the host.")

    def _check_vhd(self, footer: bytes) -> None:
        if len(footer) >= 64 and struct.unpack(">I", footer[60:64])[0] == _VHD_DIFFERENCING:
            raise RefusedData("The VHD image is a differencing disk: it names a parent image.")

    def _fixed_vhd(self) -> Inspected:
        self._check_vhd(self._tail)
        (size,) = struct.unpack(">Q", self._tail[40:48])
        return Inspected("vhd", size or None)
