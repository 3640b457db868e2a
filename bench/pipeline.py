"""Pipeline benchmark: the upload pipeline with format inspection on against off, an interoperable
import (stage + glance-direct) against a plain upload, and the pipeline against the hashes it
must compute, all measured in one run.

Called by bench/run.py (`bash bench/run --pipeline`, alias `--import`; `--with-pipeline` after
the default run).

* Two `glimpse serve --workers 1` over their own data folders, the same defaults except
  `require_image_format_match`: on (the default) and off. Only one transfers at a time.
* Two files of the same size: `--size-mib` of random bytes (raw), and the same bytes converted
  by `qemu-img convert -f raw -O qcow2` (a real qcow2 whose clusters are all allocated).
* Each round, the order reversed every other round: the single-thread MD5 and SHA-512 ceilings
  of the main benchmark, the disk's (the file written with `dd`, fsynced, through the page
  cache and past it with `O_DIRECT` as the filesystem store writes: the faster of the two), then
  raw uploads to the inspection-on and -off servers, qcow2 uploads
  to both, and a qcow2 import on the inspection-on server (`PUT /stage` with curl, `POST
  /import` with glance-direct, then `GET /v2/images/{id}` every 100 ms until it is active: the
  import is timed from the first staged byte to `active`).
* Per round: inspection on / off MB/s (raw and qcow2), import / plain upload MB/s (qcow2,
  inspection on), each inspection-on upload / the slower single-thread hash (the issue's target)
  and / the lower of that hash and the disk (where the disk is slower, no pipeline can reach
  the hash); the server's and the client's (curl) CPU seconds per GiB. Figures are medians
  of the per-round ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import run as bench

TARGET_INSPECTION = 0.95  # inspection on within 5% of off
TARGET_VS_HASH = 0.70  # upload / slower single-thread hash, inspection on
BOUND_VS_HASH = 0.75  # what 2 cores allow with the client on the same box (issue 8)
CORES = os.cpu_count() or 1
POLL = 0.1  # a GET /v2/images/{id} costs the server ~2 ms: 2% of a core at 10/s
#: The transfers of a round, in order (reversed every other round): (key, server, file).
STEPS = (("up_on_raw", "on", "raw"), ("up_off_raw", "off", "raw"),
         ("up_on_qcow2", "on", "qcow2"), ("up_off_qcow2", "off", "qcow2"),
         ("import_qcow2", "on", "qcow2"))
LABELS = {
    "up_on_raw": "upload raw, inspection on", "up_off_raw": "upload raw, inspection off",
    "up_on_qcow2": "upload qcow2, inspection on", "up_off_qcow2": "upload qcow2, inspection off",
    "import_qcow2": "import qcow2 (stage + glance-direct), inspection on",
}


class Cpu:
    """CPU seconds of the server (with its children) and of the client (curl: our children)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.server = self.client = self.staged = 0.0

    @staticmethod
    def _children() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return kids.ru_utime + kids.ru_stime

    def __enter__(self) -> Cpu:
        self._start = (bench.tree_cpu(self.pid), self._children())
        return self

    def server_so_far(self) -> float:
        return bench.tree_cpu(self.pid) - self._start[0]

    def __exit__(self, *exc: object) -> None:
        self.server = self.server_so_far()
        self.client = self._children() - self._start[1]


def hash_cpu(algorithm: str, buffer: bytes) -> tuple[float, float]:
    """Single-thread hashlib over `buffer`: (MB/s of wall time, CPU-s per GiB of the thread).
    Under load the wall figure falls with the share of a core the thread got; the CPU figure
    does not."""
    h = (hashlib.md5(usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm))
    wall, cpu = time.perf_counter(), time.thread_time()
    h.update(buffer)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    return bench.mbps(len(buffer), wall), cpu / (len(buffer) / 2**30)


def disk_mbps(source: Path, work: Path) -> float:
    """The disk's ceiling for a durable write of `source`: `dd` through the page cache and
    fdatasync (as the main benchmark), and with `O_DIRECT` and fsync (as the filesystem store
    writes, where the filesystem allows it); the faster of the two."""
    target = work / "dd.bin"
    size = source.stat().st_size
    target.unlink(missing_ok=True)
    best = bench.mbps(size, bench.dd([f"if={source}", f"of={target}", "conv=fdatasync"]))
    target.unlink(missing_ok=True)
    with contextlib.suppress(subprocess.CalledProcessError):  # the filesystem refuses O_DIRECT
        best = max(best, bench.mbps(size, bench.dd(
            [f"if={source}", f"of={target}", "oflag=direct", "conv=fsync"])))
    target.unlink(missing_ok=True)
    return best


def create(api: str, name: str, disk_format: str) -> str:
    status, body = bench.http("POST", f"{api}/v2/images", {
        "name": name, "disk_format": disk_format, "container_format": "bare"})
    if status != 201 or not isinstance(body, dict):
        raise bench.BenchError(f"POST /v2/images: HTTP {status}: {body!r}")
    return str(body["id"])


def put(api: str, image_id: str, path: Path, what: str) -> bench.Transfer:
    sent = bench.curl(["-T", str(path), "-H", "Content-Type: application/octet-stream",
                       "-H", "Expect:", f"{api}/v2/images/{image_id}/{what}"], timeout=900)
    if sent.status != 204:
        raise bench.BenchError(f"PUT /v2/images/{image_id}/{what}: HTTP {sent.status}")
    return sent


def image_doc(api: str, image_id: str) -> dict[str, Any]:
    status, doc = bench.http("GET", f"{api}/v2/images/{image_id}")
    if status != 200 or not isinstance(doc, dict):
        raise bench.BenchError(f"GET /v2/images/{image_id}: HTTP {status}: {doc!r}")
    return doc


def import_(api: str, image_id: str, path: Path, cpu: Cpu | None = None) -> tuple[float, float]:
    """Stage and import `path` (glance-direct); returns (seconds staging, seconds in all).
    `cpu` (entered) gets the server's CPU seconds of the staging in `staged`."""
    start = time.perf_counter()
    put(api, image_id, path, "stage")
    staged = time.perf_counter() - start
    if cpu is not None:
        cpu.staged = cpu.server_so_far()
    status, body = bench.http("POST", f"{api}/v2/images/{image_id}/import",
                              {"method": {"name": "glance-direct"}})
    if status != 202:
        raise bench.BenchError(f"POST /v2/images/{image_id}/import: HTTP {status}: {body!r}")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        doc = image_doc(api, image_id)
        if doc.get("status") == "active":
            return staged, time.perf_counter() - start
        if doc.get("os_glance_failed_import") or doc.get("status") in ("killed", "deleted"):
            raise bench.BenchError(f"import of {image_id} failed: {doc!r}")
        time.sleep(POLL)
    raise bench.BenchError(f"import of {image_id} did not finish: {image_doc(api, image_id)!r}")


def check(api: str, image_id: str, size: int, md5: str, disk_format: str) -> None:
    doc = image_doc(api, image_id)
    if (doc.get("status") != "active" or doc.get("size") != size or doc.get("checksum") != md5
            or doc.get("disk_format") != disk_format):
        raise bench.BenchError(f"image {image_id} is not right: {doc!r}")


def file_md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(bench.CHUNK):
            h.update(block)
    return h.hexdigest()


def make_qcow2(source: Path, target: Path) -> float:
    start = time.perf_counter()
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise bench.BenchError("qemu-img is missing (Debian package qemu-utils)")
    subprocess.run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", str(source), str(target)],
                   check=True, timeout=600, capture_output=True)
    return time.perf_counter() - start


def measure(res: bench.Results, opts: argparse.Namespace, work: Path, source: Path,
            cleanup: contextlib.ExitStack) -> None:
    t0 = time.perf_counter()
    qcow2 = work / "image.qcow2"
    bench.log(f"converting {source.name} to qcow2")
    res.values["pl_make_qcow2_s"] = make_qcow2(source, qcow2)
    files = {"raw": source, "qcow2": qcow2}
    sizes = {kind: path.stat().st_size for kind, path in files.items()}
    md5s = {kind: file_md5(path) for kind, path in files.items()}
    res.values["pl_qcow2_size"] = sizes["qcow2"]
    servers: dict[str, tuple[bench.Service, str]] = {
        "on": bench.start_glimpse(work, cleanup, data_dir=work / "data-inspect-on",
                                  name="glimpse-inspect-on"),
        "off": bench.start_glimpse(work, cleanup, data_dir=work / "data-inspect-off",
                                   settings={"GLIMPSE_REQUIRE_IMAGE_FORMAT_MATCH": "false"},
                                   name="glimpse-inspect-off"),
    }
    res.values["pl_rss_idle"] = bench.tree_rss(servers["on"][0].pid)
    with source.open("rb") as fh:
        buffer = fh.read(min(bench.HASH_BUFFER, sizes["raw"]))
    for rep in range(opts.reps):
        bench.log(f"pipeline round {rep + 1}/{opts.reps}")
        for algorithm in ("md5", "sha512"):
            speed, cpu_gib = hash_cpu(algorithm, buffer)
            res.add(f"pl_{algorithm}", speed)
            res.add(f"pl_{algorithm}_cpu_gib", cpu_gib)
        res.add("pl_disk", disk_mbps(files["raw"], work))
        got: dict[str, float] = {}
        for key, server, kind in (STEPS if rep % 2 == 0 else tuple(reversed(STEPS))):
            service, api = servers[server]
            size = sizes[kind]
            image_id = create(api, f"bench-{key}-{rep}", kind)
            with bench.Watch(service.pid) as watch, Cpu(service.pid) as cpu:
                if key.startswith("import"):
                    staged, seconds = import_(api, image_id, files[kind], cpu)
                    res.add("pl_import_stage_mbps", bench.mbps(size, staged))
                    res.add("pl_import_pass_mbps", bench.mbps(size, seconds - staged))
                    res.add("pl_import_stage_cpu_gib", cpu.staged / (size / 2**30))
                else:
                    seconds = put(api, image_id, files[kind], "file").seconds
            got[key] = bench.mbps(size, seconds)
            res.add(f"pl_{key}", got[key])
            res.add(f"pl_{key}_rss", watch.peak)
            res.add(f"pl_{key}_cpu", watch.cpu_share)
            res.add(f"pl_{key}_cpu_gib", cpu.server / (size / 2**30))
            res.add(f"pl_{key}_client_gib", cpu.client / (size / 2**30))
            if rep == 0:
                check(api, image_id, size, md5s[kind], kind)
            bench.http("DELETE", f"{api}/v2/images/{image_id}")
        slower = min(res.series["pl_md5"][-1], res.series["pl_sha512"][-1])
        res.add("pl_inspect_raw_ratio", got["up_on_raw"] / got["up_off_raw"])
        res.add("pl_inspect_qcow2_ratio", got["up_on_qcow2"] / got["up_off_qcow2"])
        res.add("pl_import_ratio", got["import_qcow2"] / got["up_on_qcow2"])
        res.add("pl_raw_vs_hash", got["up_on_raw"] / slower)
        res.add("pl_qcow2_vs_hash", got["up_on_qcow2"] / slower)
        res.add("pl_off_raw_vs_hash", got["up_off_raw"] / slower)
        res.add("pl_raw_vs_staging", got["up_on_raw"] / res.series["pl_import_stage_mbps"][-1])
        ceiling = min(slower, res.series["pl_disk"][-1])
        res.add("pl_raw_vs_ceiling", got["up_on_raw"] / ceiling)
        res.add("pl_qcow2_vs_ceiling", got["up_on_qcow2"] / ceiling)
        # What the upload's CPU cost allows on this box's cores when nothing else runs: the
        # server and curl share them, the ceiling is one core hashing.
        slower_cpu = max(res.series["pl_md5_cpu_gib"][-1], res.series["pl_sha512_cpu_gib"][-1])
        for kind in ("raw", "qcow2"):
            spent = (res.series[f"pl_up_on_{kind}_cpu_gib"][-1]
                     + res.series[f"pl_up_on_{kind}_client_gib"][-1])
            res.add(f"pl_{kind}_cpu_bound", min(1.0, CORES * slower_cpu / spent))
        bench.log("  " + ", ".join(f"{k} {v:.0f}" for k, v in got.items())
                  + f" MB/s; md5 {res.series['pl_md5'][-1]:.0f}, sha512 "
                  f"{res.series['pl_sha512'][-1]:.0f}, disk {res.series['pl_disk'][-1]:.0f} MB/s")
    del buffer
    res.values["pl_rss_end"] = bench.tree_rss(servers["on"][0].pid)
    servers["off"][0].stop()
    if opts.profile:
        profile(res, work, servers["on"][0].pid, servers["on"][1], qcow2)
    servers["on"][0].stop()
    res.values["pl_seconds"] = time.perf_counter() - t0


def profile(res: bench.Results, work: Path, pid: int, api: str, qcow2: Path) -> None:
    bench.log("profiling the pipeline: installing py-spy into a temporary venv")
    spy = bench.PySpy(work)
    image_id = create(api, "bench-profile-upload", "qcow2")
    bench.log("profiling a qcow2 upload (inspection on)")
    with spy.record("pipeline-upload", pid, bench.RESULTS_DIR) as prof:
        put(api, image_id, qcow2, "file")
    res.profiles.append(prof)
    with spy.record("pipeline-upload", pid, bench.RESULTS_DIR, gil=True) as prof:
        bench.http("DELETE", f"{api}/v2/images/{image_id}")
        image_id = create(api, "bench-profile-upload-gil", "qcow2")
        put(api, image_id, qcow2, "file")
    res.profiles.append(prof)
    bench.http("DELETE", f"{api}/v2/images/{image_id}")
    image_id = create(api, "bench-profile-import", "qcow2")
    bench.log("profiling a qcow2 import")
    with spy.record("pipeline-import", pid, bench.RESULTS_DIR) as prof:
        import_(api, image_id, qcow2)
    res.profiles.append(prof)
    bench.http("DELETE", f"{api}/v2/images/{image_id}")


# -- the report -----------------------------------------------------------------------------------


def has_results(res: bench.Results) -> bool:
    return "pl_inspect_raw_ratio" in res.series


def target_rows(res: bench.Results) -> list[tuple[str, ...]]:
    """Rows of the targets table: Measure, Ratio, Glimpse (median), Glance 33, Target, Result."""
    m = res.med
    sz = bench.size_label(res.size)
    slower = min(m("pl_md5"), m("pl_sha512"))
    rows: list[tuple[str, ...]] = []
    for kind in ("raw", "qcow2"):
        ratio = m(f"pl_inspect_{kind}_ratio")
        rows.append((f"Upload {sz} {kind}: inspection on / off", f"{ratio:.2f}",
                     f"{m(f'pl_up_on_{kind}'):.0f} vs {m(f'pl_up_off_{kind}'):.0f} MB/s", "n/a",
                     f">= {TARGET_INSPECTION:.2f}", bench.verdict(ratio >= TARGET_INSPECTION)))
    ratio = m("pl_import_ratio")
    rows.append((f"Import {sz} qcow2 (stage + glance-direct) / upload", f"{ratio:.2f}",
                 f"{m('pl_import_qcow2'):.0f} vs {m('pl_up_on_qcow2'):.0f} MB/s "
                 f"(staging {m('pl_import_stage_mbps'):.0f}, then import "
                 f"{m('pl_import_pass_mbps'):.0f})", "n/a", "context", "-"))
    for kind in ("raw", "qcow2"):
        ratio = m(f"pl_{kind}_vs_hash")
        rows.append((f"Upload {sz} {kind}, inspection on / slower hash", f"{ratio:.2f}",
                     f"{m(f'pl_up_on_{kind}'):.0f} vs {slower:.0f} MB/s, server "
                     f"{m(f'pl_up_on_{kind}_cpu_gib'):.2f} CPU-s/GiB", "n/a",
                     f">= {TARGET_VS_HASH:.2f} (bound ~{BOUND_VS_HASH:.2f})",
                     bench.verdict(ratio >= TARGET_VS_HASH)))
    disk = m("pl_disk")
    for kind in ("raw", "qcow2"):
        ratio = m(f"pl_{kind}_vs_ceiling")
        rows.append((f"Upload {sz} {kind}, inspection on / min(slower hash, disk)",
                     f"{ratio:.2f}",
                     f"{m(f'pl_up_on_{kind}'):.0f} vs "
                     + (f"disk {disk:.0f} MB/s (hash {slower:.0f})" if disk < slower
                        else f"hash {slower:.0f} MB/s (disk {disk:.0f})"), "n/a",
                     f">= {TARGET_VS_HASH:.2f}", bench.verdict(ratio >= TARGET_VS_HASH)))
    ratio = m("pl_raw_vs_staging")
    rows.append((f"Upload {sz} raw, inspection on / staging alone (no stages)", f"{ratio:.2f}",
                 f"{m('pl_up_on_raw'):.0f} vs {m('pl_import_stage_mbps'):.0f} MB/s: what the "
                 "stages cost on this disk", "n/a", "context", "-"))
    slower_cpu = max(m("pl_md5_cpu_gib"), m("pl_sha512_cpu_gib"))
    for kind in ("raw", "qcow2"):
        ratio = m(f"pl_{kind}_cpu_bound")
        rows.append((f"Upload {sz} {kind}, inspection on: CPU bound of the same ratio",
                     f"{ratio:.2f}",
                     f"{CORES} cores x slower hash {slower_cpu:.2f}"
                     f" / (server {m(f'pl_up_on_{kind}_cpu_gib'):.2f} + curl "
                     f"{m(f'pl_up_on_{kind}_client_gib'):.2f}) CPU-s/GiB", "n/a",
                     f">= {TARGET_VS_HASH:.2f}", bench.verdict(ratio >= TARGET_VS_HASH)))
    return rows


def section(res: bench.Results) -> list[str]:
    """Every round of the pipeline benchmark."""
    v = res.values
    rows: list[tuple[str, str, str, float]] = [
        ("MD5, 1 thread, 256 MiB buffer", "pl_md5", "MB/s", 1.0),
        ("SHA-512, 1 thread, 256 MiB buffer", "pl_sha512", "MB/s", 1.0),
        ("MD5: CPU-s per GiB (thread time)", "pl_md5_cpu_gib", "s", 1.0),
        ("SHA-512: CPU-s per GiB (thread time)", "pl_sha512_cpu_gib", "s", 1.0),
        ("disk: dd write, fsynced (faster of page cache and O_DIRECT)", "pl_disk", "MB/s", 1.0),
    ]
    for key, _, _ in STEPS:
        rows += [
            (LABELS[key], f"pl_{key}", "MB/s", 1.0),
            (f"{LABELS[key]}: server CPU-s per GiB", f"pl_{key}_cpu_gib", "s", 1.0),
            (f"{LABELS[key]}: client (curl) CPU-s per GiB", f"pl_{key}_client_gib", "s", 1.0),
            (f"{LABELS[key]}: server CPU (1.0 = one core)", f"pl_{key}_cpu", "", 1.0),
            (f"{LABELS[key]}: server peak RSS", f"pl_{key}_rss", "MB", 1 / bench.MB),
        ]
    rows += [
        ("import: staging alone", "pl_import_stage_mbps", "MB/s", 1.0),
        ("import: POST /import to active (the second pass)", "pl_import_pass_mbps", "MB/s",
         1.0),
        ("import: staging alone, server CPU-s per GiB (receive + write, no stages)",
         "pl_import_stage_cpu_gib", "s", 1.0),
        ("raw: inspection on / off, per round", "pl_inspect_raw_ratio", "", 1.0),
        ("qcow2: inspection on / off, per round", "pl_inspect_qcow2_ratio", "", 1.0),
        ("qcow2: import / upload, per round", "pl_import_ratio", "", 1.0),
        ("raw, inspection on / slower hash, per round", "pl_raw_vs_hash", "", 1.0),
        ("qcow2, inspection on / slower hash, per round", "pl_qcow2_vs_hash", "", 1.0),
        ("raw, inspection off / slower hash, per round", "pl_off_raw_vs_hash", "", 1.0),
        ("raw, inspection on / min(slower hash, disk), per round", "pl_raw_vs_ceiling", "", 1.0),
        ("qcow2, inspection on / min(slower hash, disk), per round", "pl_qcow2_vs_ceiling", "",
         1.0),
        ("raw, inspection on / staging alone (the same receive and write, no stages), per round",
         "pl_raw_vs_staging", "", 1.0),
        ("raw: CPU bound of that ratio, per round", "pl_raw_cpu_bound", "", 1.0),
        ("qcow2: CPU bound of that ratio, per round", "pl_qcow2_cpu_bound", "", 1.0),
    ]
    out = [
        "## Pipeline: inspection on against off, import against upload, upload against hashes",
        "",
        f"Same run, two servers (`require_image_format_match` true and false), one worker each; "
        f"{bench.size_label(res.size)} of random bytes (raw) and the same bytes as a qcow2 "
        f"({v['pl_qcow2_size'] / bench.MB:.0f} MB, `qemu-img convert`, "
        f"{v['pl_make_qcow2_s']:.0f} s). Each round: hashes, the disk, then the five transfers "
        f"(order reversed every other round); ratios per round, median of the rounds. The section "
        f"took {v['pl_seconds']:.0f} s.",
        "",
        "| Measure | Median | Rounds |",
        "| --- | --- | --- |",
    ]
    for label, key, unit, scale in rows:
        values = res.series.get(key, [])
        if values:
            out.append(f"| {label} | {bench.fmt(bench.median(values) * scale)} {unit} | "
                       f"{', '.join(bench.fmt(x * scale) for x in values)} |")
    out += ["", f"- Server RSS: {v['pl_rss_idle'] / bench.MB:.0f} MB idle after start, "
            f"{v['pl_rss_end'] / bench.MB:.0f} MB after the transfers.", ""]
    return out


def report(res: bench.Results) -> str:
    """The report of `--pipeline` (this section alone)."""
    return bench.section_report("pipeline", res, target_rows(res), section(res))


def needed_space(size: int) -> int:
    """The source and its qcow2, a staged copy, and an image on each server."""
    return size * 6


def run_alone(opts: argparse.Namespace, cleanup: contextlib.ExitStack) -> bench.Results:
    """`--pipeline`: only this benchmark (its own source file; no nginx)."""
    return bench.run_section_alone(opts, cleanup, needed_space, measure)
