"""Store benchmark: 1 GiB through Glimpse into each object store, against the raw backend client.

Called by bench/run.py (`bash bench/run --stores`, or `--with-stores` after the default run).

* A real Swift from `scripts/swift start` in the run's temporary folder (tempauth and s3api),
  stopped at the end. moto is left out: it keeps objects in memory, so 1 GiB objects measure
  its Python dict and the machine's RAM, not a store.
* One `glimpse serve --workers 1` with two stores, each with the driver's defaults: `swift`
  (tempauth) and `s3` (Swift's s3api, `max_parts = 1000`). Uploads pick the store with
  `X-Image-Meta-Store`; both transfers go through curl (`curl -T`, `curl -o /dev/null`), as in
  the main benchmark.
* The ceiling of each, in the same round, on the same Swift, from the same file: the most direct
  client there is. Swift: httpx streaming PUT/GET of a plain object with the tempauth token (1 MiB
  chunks), and, for an object above Glimpse's `large_object_size`, the same Static Large Object
  layout (segments of `max(segment_size, ceil(size / max_segments))`, `concurrency` segment PUTs
  at once, then the manifest). S3: boto3 `upload_fileobj` with Glimpse's part size and parts in
  flight (16 MiB, 4 for 1 GiB), and `get_object` read in 1 MiB chunks.
* Each round runs, per store, upload and download of both clients, the order of Glimpse and the
  direct client swapping every round; the figure is Glimpse MB/s / direct MB/s per round, median
  of the rounds. The server's RSS (with its children) is sampled every 50 ms during every Glimpse
  transfer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import resource
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import run as bench
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

SWIFT_SCRIPT = bench.ROOT / "scripts" / "swift"
#: The target of the issue: each store at least 0.9 of the direct client.
TARGET_VS_DIRECT = 0.90
CHUNK = bench.MIB  # the direct clients' read and write size
STORES = ("swift", "s3")
LABELS = {"swift": "Swift", "s3": "S3 (Swift s3api)"}
DIRECT = {"swift": "httpx", "s3": "boto3"}
# Glimpse's defaults for these drivers (docs/stores.md), which the direct clients copy.
SWIFT_LARGE_OBJECT = 1024 * bench.MIB
SWIFT_SEGMENT = 64 * bench.MIB
SWIFT_MAX_SEGMENTS = 1000
SWIFT_CONCURRENCY = 4
S3_PART = 16 * bench.MIB
S3_MAX_PARTS = 1000  # s3api's max_upload_part_num, as configured below
S3_IN_FLIGHT = 4
# s3api's buckets are Swift containers: four distinct names.
CONTAINER = "bench-swift"
BUCKET = "bench-s3"
DIRECT_CONTAINER = "bench-swift-direct"
DIRECT_BUCKET = "bench-s3-direct"


def start_swift(work: Path, cleanup: contextlib.ExitStack) -> dict[str, Any]:
    """A Swift on loopback from scripts/swift in the run's folder, stopped when the run ends."""
    folder = work / "swift"
    folder.mkdir()
    cleanup.callback(subprocess.run, ["bash", str(SWIFT_SCRIPT), "stop", str(folder)],
                     capture_output=True, check=False, timeout=120)
    done = subprocess.run(["bash", str(SWIFT_SCRIPT), "start", str(folder)],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise bench.BenchError(f"scripts/swift start failed:\n{done.stdout}{done.stderr}")
    facts: dict[str, Any] = json.loads((folder / "swift.json").read_text())
    return facts


def store_config(facts: dict[str, Any]) -> str:
    """The server's `[stores.<id>]` tables: required options only, so the defaults are measured
    (plus s3api's part limit)."""
    return (
        f'[stores.swift]\ndriver = "swift"\nauth_url = "{facts["auth_url"]}"\n'
        f'user = "{facts["user"]}"\nkey = "{facts["key"]}"\ncontainer = "{CONTAINER}"\n\n'
        f'[stores.s3]\ndriver = "s3"\nendpoint_url = "{facts["s3_endpoint"]}"\n'
        f'region = "{facts["s3_region"]}"\naccess_key = "{facts["s3_access_key"]}"\n'
        f'secret_key = "{facts["s3_secret_key"]}"\nbucket = "{BUCKET}"\n'
        f'addressing_style = "path"\nmax_parts = {S3_MAX_PARTS}\n'
    )


# -- the direct clients ---------------------------------------------------------------------------


def file_chunks(path: Path, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(offset)
        left = path.stat().st_size - offset if length is None else length
        while left > 0:
            data = fh.read(min(CHUNK, left))
            if not data:
                raise bench.BenchError(f"{path} ended early")
            left -= len(data)
            yield data


class SwiftDirect:
    """Swift's HTTP API with httpx and a tempauth token: what Glimpse's driver does, minus
    Glimpse (same object layout, same sizes)."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0))
        got = self.client.get(facts["auth_url"], headers={
            "X-Auth-User": facts["user"], "X-Auth-Key": facts["key"]})
        if got.status_code not in (200, 204):
            raise bench.BenchError(f"Swift tempauth: HTTP {got.status_code}")
        self.token = got.headers["x-auth-token"]
        self.url = got.headers["x-storage-url"].rstrip("/")
        for container in (DIRECT_CONTAINER, f"{DIRECT_CONTAINER}_segments"):
            self._expect(self.client.put(f"{self.url}/{container}", headers=self._auth()),
                         (201, 202, 204), f"PUT container {container}")

    def _auth(self, **extra: str) -> dict[str, str]:
        return {"X-Auth-Token": self.token, **extra}

    @staticmethod
    def _expect(response: httpx.Response, ok: tuple[int, ...], what: str) -> None:
        if response.status_code not in ok:
            raise bench.BenchError(f"Swift {what}: HTTP {response.status_code}: "
                                   f"{response.text[:200]}")

    def _put(self, client: httpx.Client, path: str, source: Path, offset: int,
             length: int) -> str:
        response = client.put(f"{self.url}/{path}", content=file_chunks(source, offset, length),
                              headers=self._auth(**{"Content-Length": str(length)}))
        self._expect(response, (201,), f"PUT {path}")
        return str(response.headers.get("etag", "")).strip('"')

    def upload(self, key: str, source: Path) -> None:
        size = source.stat().st_size
        if size <= SWIFT_LARGE_OBJECT:
            self._put(self.client, f"{DIRECT_CONTAINER}/{key}", source, 0, size)
            return
        # Glimpse's layout for a declared size above large_object_size: uniform segments,
        # `concurrency` at once, then the SLO manifest.
        segment = max(SWIFT_SEGMENT, math.ceil(size / SWIFT_MAX_SEGMENTS))
        count = math.ceil(size / segment)
        names = [f"{key}/{uuid.uuid4().hex}/{i:08d}" for i in range(count)]

        def one(i: int) -> dict[str, Any]:
            length = min(segment, size - i * segment)
            with httpx.Client(timeout=self.client.timeout) as client:
                etag = self._put(client, f"{DIRECT_CONTAINER}_segments/{names[i]}", source,
                                 i * segment, length)
            return {"path": f"/{DIRECT_CONTAINER}_segments/{names[i]}", "etag": etag,
                    "size_bytes": length}

        with ThreadPoolExecutor(SWIFT_CONCURRENCY) as pool:
            manifest = list(pool.map(one, range(count)))
        response = self.client.put(f"{self.url}/{DIRECT_CONTAINER}/{key}",
                                   params={"multipart-manifest": "put"},
                                   content=json.dumps(manifest).encode(), headers=self._auth())
        self._expect(response, (201,), "PUT manifest")

    def download(self, key: str) -> int:
        received = 0
        with self.client.stream("GET", f"{self.url}/{DIRECT_CONTAINER}/{key}",
                                headers=self._auth()) as response:
            self._expect(response, (200,), f"GET {key}")
            for part in response.iter_raw(CHUNK):
                received += len(part)
        return received

    def delete(self, key: str) -> None:
        response = self.client.delete(f"{self.url}/{DIRECT_CONTAINER}/{key}",
                                      params={"multipart-manifest": "delete"},
                                      headers=self._auth())
        self._expect(response, (200, 204, 404), f"DELETE {key}")

    def close(self) -> None:
        self.client.close()


class S3Direct:
    """boto3 against s3api, with Glimpse's part size and parts in flight."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.client = boto3.client(
            "s3", endpoint_url=facts["s3_endpoint"], region_name=facts["s3_region"],
            aws_access_key_id=facts["s3_access_key"],
            aws_secret_access_key=facts["s3_secret_key"],
            # Swift 2.30 refuses boto3's default CRC32 trailers (as the driver's configuration).
            config=Config(s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          max_pool_connections=16))
        for bucket in (BUCKET, DIRECT_BUCKET):
            self.client.create_bucket(Bucket=bucket)

    def upload(self, key: str, source: Path) -> None:
        size = source.stat().st_size
        part = S3_PART
        if size > S3_MAX_PARTS * part:  # the driver's part_size_for
            per_part = -(-size // S3_MAX_PARTS)
            part = -(-per_part // bench.MIB) * bench.MIB
        config = TransferConfig(multipart_threshold=S3_PART, multipart_chunksize=part,
                                max_concurrency=max(1, S3_IN_FLIGHT * S3_PART // part),
                                use_threads=True)
        with source.open("rb") as fh:
            self.client.upload_fileobj(fh, DIRECT_BUCKET, key, Config=config)

    def download(self, key: str) -> int:
        body = self.client.get_object(Bucket=DIRECT_BUCKET, Key=key)["Body"]
        received = 0
        try:
            for part in body.iter_chunks(CHUNK):
                received += len(part)
        finally:
            body.close()
        return received

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=DIRECT_BUCKET, Key=key)

    def close(self) -> None:
        self.client.close()


class Cpu:
    """CPU seconds spent during a transfer by the Glimpse server, by Swift (all its processes:
    proxy and its workers, object, container, account servers, memcached) and by the client
    (this process, with the direct clients' threads, plus curl, a child we wait for)."""

    def __init__(self, glimpse_pid: int, swift_pids: list[int]) -> None:
        self.glimpse_pid = glimpse_pid
        self.swift_pids = swift_pids
        self.glimpse = self.swift = self.client = 0.0

    def _now(self) -> tuple[float, float, float]:
        me = psutil.Process().cpu_times()
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (bench.tree_cpu(self.glimpse_pid),
                sum(bench.tree_cpu(pid) for pid in self.swift_pids),
                me.user + me.system + kids.ru_utime + kids.ru_stime)

    def __enter__(self) -> Cpu:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.glimpse, self.swift, self.client = (b - a for a, b in zip(self._start, end,
                                                                         strict=True))

    def record(self, res: bench.Results, prefix: str, size: int) -> None:
        """CPU seconds per GiB moved."""
        gib = size / 2**30
        res.add(f"{prefix}_cpu_glimpse", self.glimpse / gib)
        res.add(f"{prefix}_cpu_swift", self.swift / gib)
        res.add(f"{prefix}_cpu_client", self.client / gib)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# -- through Glimpse ------------------------------------------------------------------------------


def glimpse_upload(api: str, store: str, name: str, source: Path) -> tuple[str, bench.Transfer]:
    image_id = bench.create_image(api, name)
    sent = bench.curl([
        "-T", str(source), "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
        "-H", f"X-Image-Meta-Store: {store}", f"{api}/v2/images/{image_id}/file",
    ], timeout=900)
    if sent.status != 204:
        raise bench.BenchError(f"PUT /v2/images/{image_id}/file into {store}: "
                               f"HTTP {sent.status}")
    return image_id, sent


def check_image(api: str, image_id: str, store: str, size: int, md5: str) -> None:
    status, doc = bench.http("GET", f"{api}/v2/images/{image_id}")
    if (status != 200 or not isinstance(doc, dict) or doc.get("size") != size
            or doc.get("checksum") != md5 or doc.get("stores") != store):
        raise bench.BenchError(f"image {image_id} in {store} is not right: HTTP {status}: "
                               f"{doc!r}")


# -- the run --------------------------------------------------------------------------------------


def measure(res: bench.Results, opts: argparse.Namespace, work: Path, source: Path,
            cleanup: contextlib.ExitStack) -> None:
    """The stores section: fills `res.series["st_*"]` and `res.values["st_*"]`."""
    try:
        _measure(res, opts, work, source, cleanup)
    except (BotoCoreError, ClientError, httpx.HTTPError) as exc:
        raise bench.BenchError(f"stores: direct client failed: {exc}") from exc


def _measure(res: bench.Results, opts: argparse.Namespace, work: Path, source: Path,
             cleanup: contextlib.ExitStack) -> None:
    t0 = time.perf_counter()
    size = source.stat().st_size
    bench.log("stores: starting Swift (scripts/swift start)")
    started = time.perf_counter()
    facts = start_swift(work, cleanup)
    res.values["st_swift_start_s"] = time.perf_counter() - started
    swift_pids = [int(pid) for pid in facts.get("pids", {}).values()]
    direct: dict[str, SwiftDirect | S3Direct] = {}
    direct["swift"] = SwiftDirect(facts)
    cleanup.callback(direct["swift"].close)
    direct["s3"] = S3Direct(facts)  # also makes Glimpse's bucket: S3 stores need one
    cleanup.callback(direct["s3"].close)
    config = work / "glimpse-stores.toml"
    config.write_text(store_config(facts))
    glimpse, api = bench.start_glimpse(work, cleanup, 1, work / "stores-data",
                                       {"GLIMPSE_CONFIG": str(config)}, "glimpse stores")
    res.values["st_rss_idle"] = bench.tree_rss(glimpse.pid)
    bench.log(f"stores: Swift at {facts['proxy_url']}, glimpse (pid {glimpse.pid}) on {api}")
    md5 = hashlib.md5(usedforsecurity=False)
    for chunk in file_chunks(source):
        md5.update(chunk)
    digest = md5.hexdigest()

    # Warm-up, once per store and client: connections, Swift's caches, the page cache.
    images: dict[str, str] = {}
    for store in STORES:
        direct[store].upload("warm", source)
        direct[store].download("warm")
        direct[store].delete("warm")
        image_id, _ = glimpse_upload(api, store, f"bench-{store}-warm", source)
        check_image(api, image_id, store, size, digest)
        bench.download(f"{api}/v2/images/{image_id}/file", size)
        images[store] = image_id

    for rep in range(opts.reps):
        for store in STORES:
            client = direct[store]
            key = f"round-{rep}"
            order = ("direct", "glimpse") if rep % 2 == 0 else ("glimpse", "direct")
            old = images[store]
            for who in order:
                if who == "direct":
                    with Cpu(glimpse.pid, swift_pids) as cpu:
                        took, _ = timed(lambda c=client, k=key: c.upload(k, source))
                    res.add(f"st_{store}_up_direct", bench.mbps(size, took))
                    cpu.record(res, f"st_{store}_up_direct", size)
                else:
                    with bench.Watch(glimpse.pid) as watch, Cpu(glimpse.pid, swift_pids) as cpu:
                        image_id, sent = glimpse_upload(api, store, f"bench-{store}-{rep}",
                                                        source)
                    cpu.record(res, f"st_{store}_up_glimpse", size)
                    res.add(f"st_{store}_up_glimpse", sent.mbps)
                    res.add(f"st_{store}_up_rss", watch.peak)
                    res.add(f"st_{store}_up_cpu", watch.cpu_share)
                    images[store] = image_id
            bench.http("DELETE", f"{api}/v2/images/{old}")  # the store keeps one copy of each
            for who in order:
                if who == "direct":
                    with Cpu(glimpse.pid, swift_pids) as cpu:
                        took, got = timed(lambda c=client, k=key: c.download(k))
                    cpu.record(res, f"st_{store}_down_direct", size)
                    if got != size:
                        raise bench.BenchError(f"direct {store} GET: {got} of {size} bytes")
                    res.add(f"st_{store}_down_direct", bench.mbps(size, took))
                else:
                    with bench.Watch(glimpse.pid) as watch, Cpu(glimpse.pid, swift_pids) as cpu:
                        got_t = bench.download(f"{api}/v2/images/{images[store]}/file", size)
                    cpu.record(res, f"st_{store}_down_glimpse", size)
                    res.add(f"st_{store}_down_glimpse", got_t.mbps)
                    res.add(f"st_{store}_down_rss", watch.peak)
                    res.add(f"st_{store}_down_cpu", watch.cpu_share)
            client.delete(key)
            s = res.series
            up = s[f"st_{store}_up_glimpse"][-1] / s[f"st_{store}_up_direct"][-1]
            down = s[f"st_{store}_down_glimpse"][-1] / s[f"st_{store}_down_direct"][-1]
            res.add(f"st_{store}_up_ratio", up)
            res.add(f"st_{store}_down_ratio", down)
            bench.log(
                f"stores round {rep + 1}/{opts.reps}, {store}: upload glimpse "
                f"{s[f'st_{store}_up_glimpse'][-1]:.0f} vs {DIRECT[store]} "
                f"{s[f'st_{store}_up_direct'][-1]:.0f} MB/s ({up:.2f}), download glimpse "
                f"{s[f'st_{store}_down_glimpse'][-1]:.0f} vs "
                f"{s[f'st_{store}_down_direct'][-1]:.0f} MB/s ({down:.2f}), peak RSS "
                f"{max(s[f'st_{store}_up_rss'][-1], s[f'st_{store}_down_rss'][-1]) / bench.MB:.0f}"
                f" MB")
    for store in STORES:
        check_image(api, images[store], store, size, digest)
    res.values["st_rss_end"] = bench.tree_rss(glimpse.pid)

    if opts.profile:
        profile(res, work, glimpse.pid, api, source, size)
    res.values["st_seconds"] = time.perf_counter() - t0


def profile(res: bench.Results, work: Path, pid: int, api: str, source: Path,
            size: int) -> None:
    bench.log("stores profiling: installing py-spy into a temporary venv")
    spy = bench.PySpy(work)
    for store in STORES:
        bench.log(f"profiling upload into {store}")
        with spy.record(f"stores-{store}-upload", pid, bench.RESULTS_DIR) as prof:
            image_id, _ = glimpse_upload(api, store, f"bench-{store}-profile", source)
        res.profiles.append(prof)
        bench.log(f"profiling download from {store}")
        with spy.record(f"stores-{store}-download", pid, bench.RESULTS_DIR) as prof:
            bench.download(f"{api}/v2/images/{image_id}/file", size)
        res.profiles.append(prof)
        bench.http("DELETE", f"{api}/v2/images/{image_id}")


# -- the report -----------------------------------------------------------------------------------


def has_results(res: bench.Results) -> bool:
    return "st_swift_up_ratio" in res.series


def target_rows(res: bench.Results) -> list[tuple[str, ...]]:
    """Rows of the targets table: Measure, Ratio, Glimpse (median), Glance 33, Target, Result."""
    m = res.med
    sz = bench.size_label(res.size)
    rows: list[tuple[str, ...]] = []
    for store in STORES:
        for way, label in (("up", "Upload"), ("down", "Download")):
            ratio = m(f"st_{store}_{way}_ratio")
            rows.append((
                f"{label} {sz} into {LABELS[store]} / {DIRECT[store]}"
                if way == "up" else f"{label} {sz} from {LABELS[store]} / {DIRECT[store]}",
                f"{ratio:.2f}",
                f"{m(f'st_{store}_{way}_glimpse'):.0f} MB/s vs {DIRECT[store]} "
                f"{m(f'st_{store}_{way}_direct'):.0f} MB/s", "n/a",
                f">= {TARGET_VS_DIRECT:.2f}", bench.verdict(ratio >= TARGET_VS_DIRECT)))
    peaks = [v for store in STORES for way in ("up", "down")
             for v in res.series[f"st_{store}_{way}_rss"]]
    peak = max(peaks) / bench.MB
    rows.append((
        f"Server RSS during {sz} store transfers", f"{peak / bench.TARGET_RSS_MB:.2f} of cap",
        f"peak {peak:.0f} MB (idle {res.values['st_rss_idle'] / bench.MB:.0f})",
        f"{bench.GLANCE['rss_mb']:.0f} MB/worker", f"< {bench.TARGET_RSS_MB:.0f} MB",
        bench.verdict(peak < bench.TARGET_RSS_MB)))
    return rows


def section(res: bench.Results) -> list[str]:
    """The stores details: every round."""
    v = res.values
    rows: list[tuple[str, str, str, float]] = []
    for store in STORES:
        name, client = LABELS[store], DIRECT[store]
        rows += [
            (f"{name}: upload through Glimpse (curl -T)", f"st_{store}_up_glimpse", "MB/s", 1.0),
            (f"{name}: upload, {client} directly", f"st_{store}_up_direct", "MB/s", 1.0),
            (f"{name}: upload Glimpse / direct, per round", f"st_{store}_up_ratio", "", 1.0),
            (f"{name}: download through Glimpse (curl)", f"st_{store}_down_glimpse", "MB/s", 1.0),
            (f"{name}: download, {client} directly", f"st_{store}_down_direct", "MB/s", 1.0),
            (f"{name}: download Glimpse / direct, per round", f"st_{store}_down_ratio", "",
             1.0),
            (f"{name}: server peak RSS, upload", f"st_{store}_up_rss", "MB", 1 / bench.MB),
            (f"{name}: server peak RSS, download", f"st_{store}_down_rss", "MB", 1 / bench.MB),
            (f"{name}: server CPU during upload (1.0 = one core)", f"st_{store}_up_cpu", "",
             1.0),
            (f"{name}: server CPU during download", f"st_{store}_down_cpu", "", 1.0),
        ]
        for way in ("up", "down"):
            for who in ("glimpse", "direct"):
                via = "through Glimpse" if who == "glimpse" else f"{client} directly"
                for part in ("glimpse", "swift", "client"):
                    rows.append((f"{name}: {'upload' if way == 'up' else 'download'} {via}, "
                                 f"CPU-s per GiB of {part}",
                                 f"st_{store}_{way}_{who}_cpu_{part}", "s", 1.0))
    out = [
        "## Stores: through Glimpse against the direct client",
        "",
        f"Same run, same Swift (scripts/swift: tempauth, s3api), same {bench.size_label(res.size)} "
        f"file; one server worker with the drivers' defaults. Direct clients: httpx (plain "
        f"object, or Glimpse's SLO layout above {SWIFT_LARGE_OBJECT // bench.MIB} MiB) and "
        f"boto3 (`upload_fileobj` with {S3_PART // bench.MIB} MiB parts, {S3_IN_FLIGHT} "
        f"in flight; `get_object`). Ratios per round (Glimpse and direct in turn, the order "
        f"swapping every round), median of the rounds. moto is left out (in memory). Swift "
        f"started in {v['st_swift_start_s']:.0f} s; the section took {v['st_seconds']:.0f} s.",
        "",
        "| Measure | Median | Rounds |",
        "| --- | --- | --- |",
    ]
    for label, key, unit, scale in rows:
        values = res.series.get(key, [])
        if values:
            out.append(f"| {label} | {fmt(bench.median(values) * scale)} {unit} | "
                       f"{', '.join(fmt(x * scale) for x in values)} |")
    out += ["", f"- Server RSS: {v['st_rss_idle'] / bench.MB:.0f} MB idle after start, "
            f"{v['st_rss_end'] / bench.MB:.0f} MB after the transfers.", ""]
    return out


fmt = bench.fmt


def report(res: bench.Results) -> str:
    """The report of `--stores` (the stores section alone)."""
    return bench.section_report("stores", res, target_rows(res), section(res))


def needed_space(size: int) -> int:
    """The source file, plus what Swift holds at once (two clients' objects, an old image, s3api
    segments of a pending upload)."""
    return size * 6


def run_alone(opts: argparse.Namespace, cleanup: contextlib.ExitStack) -> bench.Results:
    """`--stores`: only this benchmark (its own source file; no nginx)."""
    return bench.run_section_alone(opts, cleanup, needed_space, measure)
