"""Glimpse benchmark: one run measures the machine's ceilings and Glimpse, and reports ratios.

The machine is shared and noisy, so every throughput figure is the median of several repetitions
and is reported against a ceiling measured in the same run, interleaved with the Glimpse
measurement it bounds:

* disk: `dd` write with `conv=fdatasync` (Glimpse fsyncs each upload) and `dd` reads;
* hashing: single-thread MD5 and SHA-512 in Python's hashlib (an upload computes both);
* serving: nginx (started here, minimal config) sending the same 1 GiB file to curl.

Then Glimpse itself (`glimpse serve`, one worker, on a free loopback port): a 1 GiB upload and
download with curl while the server's RSS is sampled every 50 ms, 10,000 creates from 16
concurrent wrk connections, and `GET /v2/images?limit=25` from 16 wrk connections.

Everything started (servers, nginx, wrk, py-spy) is stopped and everything created (the temporary
folder with the 1 GiB files and the server's data) is removed, also on Ctrl-C or an error.
Results go to stdout and to bench/results/latest.md. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
GLIMPSE = ROOT / ".venv" / "bin" / "glimpse"
RESULTS_DIR = ROOT / "bench" / "results"

MB = 1_000_000  # throughput and RSS are reported in decimal MB (10**6 bytes)
MIB = 1024 * 1024


def size_label(size: int) -> str:
    """A transfer size for reports: "1 GiB", else whole MiB."""
    return "1 GiB" if size == 1024 * MIB else f"{size / MIB:.0f} MiB"
CHUNK = 16 * MIB
HASH_BUFFER = 256 * MIB
RSS_INTERVAL = 0.05
CLIENTS = 16

#: Figures for real Glance 33 on this kind of machine, from the issue that asked for Glimpse.
GLANCE = {
    "upload_mbps": 100.0,
    "download_mbps": 1200.0,
    "nginx_mbps": 1100.0,
    "creates_per_s": 20.0,
    "list_rps": 60.0,
    "list_p99_ms": 330.0,
    "rss_mb": 135.0,
}
#: The targets of the issue.
TARGET_DOWNLOAD_VS_NGINX = 0.80
TARGET_UPLOAD_VS_CEILING = 0.80
TARGET_TIMES_GLANCE = 10.0
TARGET_RSS_MB = 150.0

NOT_TMPFS = {"tmpfs", "ramfs", "devtmpfs"}
IDLE_LEAVES = ("Condition.wait (threading.py)", "Queue.get (queue.py)", "Event.wait (threading.py)",
               # a supervisor waiting for its workers; a pool thread waiting for work (the leaf
               # is the C call SimpleQueue.get inside _worker)
               "_PollLikeSelector.select (selectors.py)", "_worker (concurrent/futures/thread.py)")

class BenchError(RuntimeError):
    pass


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def mbps(size: int, seconds: float) -> float:
    return size / seconds / MB


# -- installation ---------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_tools(install: bool) -> dict[str, str]:
    """The paths of nginx, wrk, curl and dd, installing the missing ones with apt-get."""
    packages = {"nginx": "nginx", "wrk": "wrk", "curl": "curl", "dd": "coreutils"}
    missing = sorted({pkg for tool, pkg in packages.items() if find_tool(tool) is None})
    if missing:
        if not install:
            raise BenchError(f"missing tools (Debian packages {', '.join(missing)}); "
                             "run without --no-install")
        log(f"installing Debian packages: {' '.join(missing)}")
        apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # Keep the package's own nginx service from starting (it would listen on port 80).
        policy = Path("/usr/sbin/policy-rc.d")
        made_policy = False
        if os.geteuid() == 0 and not policy.exists():
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            made_policy = True
        try:
            subprocess.run([*apt, "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
            subprocess.run([*apt, "install", "-y", "-q", "--no-install-recommends", *missing],
                           check=True, env=env, stdout=subprocess.DEVNULL)
        finally:
            if made_policy:
                policy.unlink(missing_ok=True)
    tools = {}
    for tool in packages:
        path = find_tool(tool)
        if path is None:
            raise BenchError(f"{tool} is still missing after installing")
        tools[tool] = path
    if not GLIMPSE.exists():
        raise BenchError(f"{GLIMPSE} is missing: run `bash bench/run`, which installs it")
    return tools


def tool_version(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


# -- the temporary folder -------------------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    source: str
    fstype: str
    mount: str
    avail: int


def disk_of(path: Path) -> Disk:
    out = subprocess.run(
        ["df", "-B1", "--output=source,fstype,target,avail", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()[-1].split()
    return Disk(source=out[0], fstype=out[1], mount=out[2], avail=int(out[3]))


def pick_base(explicit: str | None, needed: int) -> tuple[Path, Disk]:
    """A disk-backed (not tmpfs) folder with room for the run's files."""
    candidates = [explicit] if explicit else [
        os.environ.get("BENCH_TMPDIR"), "/var/tmp", str(ROOT / "bench"), tempfile.gettempdir(),
    ]
    refused = []
    for candidate in candidates:
        if not candidate or not Path(candidate).is_dir():
            continue
        disk = disk_of(Path(candidate))
        if disk.fstype in NOT_TMPFS:
            refused.append(f"{candidate} is on {disk.fstype}")
        elif disk.avail < needed:
            refused.append(f"{candidate} has {disk.avail / 2**30:.1f} GiB free, "
                           f"needs {needed / 2**30:.1f}")
        else:
            return Path(candidate), disk
    raise BenchError("no disk-backed folder with enough room: " + "; ".join(refused))


def make_random_file(path: Path, size: int) -> float:
    """Writes `size` random bytes, fsynced; returns seconds taken."""
    start = time.perf_counter()
    with path.open("wb") as fh:
        left = size
        while left > 0:
            n = min(CHUNK, left)
            fh.write(os.urandom(n))
            left -= n
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes we start ---------------------------------------------------------------------------


class Service:
    """A server process in its own session (so Ctrl-C reaches us, and we stop it in order)."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


def http(method: str, url: str, body: dict[str, Any] | None = None,
         timeout: float = 30.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def wait_http(service: Service, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.check_alive()
        with contextlib.suppress(OSError):
            status, _ = http("GET", url, timeout=2)
            if status == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"{service.name} did not answer {url} within {timeout:.0f} s:\n"
                     f"{service.log_tail()}")


def start_glimpse(work: Path, cleanup: contextlib.ExitStack, workers: int = 1,
                  data_dir: Path | None = None, settings: dict[str, str] | None = None,
                  name: str = "glimpse") -> tuple[Service, str]:
    """`glimpse serve` on a free loopback port; `settings` are extra GLIMPSE_* variables."""
    port = free_port()
    data_dir = data_dir or work / "glimpse-data"
    env = dict(os.environ, GLIMPSE_LOG_LEVEL="warning", **(settings or {}))
    service = Service(
        name,
        [str(GLIMPSE), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--workers", str(workers)],
        work / f"glimpse-{port}.log",
        env=env,
    )
    cleanup.callback(service.stop)
    base = f"http://127.0.0.1:{port}"
    wait_http(service, f"{base}/versions")
    return service, base


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    types {{ }}
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def start_nginx(nginx: str, work: Path, root: Path,
                cleanup: contextlib.ExitStack) -> tuple[Service, str]:
    port = free_port()
    (work / "nginx-tmp").mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    # The temporary folder is private to us; as root, let the worker read it.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(user=user, work=work, port=port, root=root))
    service = Service("nginx", [nginx, "-p", str(work), "-c", str(conf),
                                "-e", str(work / "nginx-error.log")], work / "nginx.log")
    cleanup.callback(service.stop)
    base = f"http://127.0.0.1:{port}"
    (root / "ready.txt").write_text("ok\n")
    wait_http(service, f"{base}/ready.txt")
    return service, base


# -- measuring the server -------------------------------------------------------------------------


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    total = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total


def tree_cpu(pid: int) -> float:
    total = 0.0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


class Watch:
    """Samples the server's RSS (with its children) every 50 ms and its CPU time over a phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self.cpu = 0.0
        self.wall = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu0 = 0.0
        self._t0 = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1
            self._stop.wait(RSS_INTERVAL)

    def __enter__(self) -> Watch:
        self._cpu0 = tree_cpu(self.pid)
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self._t0
        self.cpu = tree_cpu(self.pid) - self._cpu0
        self.peak = max(self.peak, tree_rss(self.pid))

    @property
    def cpu_share(self) -> float:
        """Server CPU time over wall time: 1.0 is one core busy."""
        return self.cpu / self.wall if self.wall else 0.0


@dataclass(frozen=True)
class Transfer:
    status: int
    size: int
    seconds: float

    @property
    def mbps(self) -> float:
        return mbps(self.size, self.seconds)


def curl(args: Sequence[str], timeout: float = 300.0) -> Transfer:
    fmt = "%{http_code} %{size_download} %{size_upload} %{time_total}"
    done = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", fmt, *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"curl {' '.join(args)} failed: {done.stderr.strip()}")
    code, down, up, total = done.stdout.split()
    return Transfer(int(code), max(int(down), int(up)), float(total))


def download(url: str, expected: int) -> Transfer:
    result = curl([url])
    if result.status != 200 or result.size != expected:
        raise BenchError(f"GET {url}: HTTP {result.status}, {result.size} bytes")
    return result


def create_image(base: str, name: str) -> str:
    status, body = http("POST", f"{base}/v2/images",
                        {"name": name, "disk_format": "raw", "container_format": "bare"})
    if status != 201 or not isinstance(body, dict):
        raise BenchError(f"POST /v2/images: HTTP {status}: {body!r}")
    return str(body["id"])


def upload(base: str, image_id: str, path: Path) -> Transfer:
    result = curl([
        "-T", str(path), "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
        f"{base}/v2/images/{image_id}/file",
    ], timeout=600)
    if result.status != 204:
        raise BenchError(f"PUT /v2/images/{image_id}/file: HTTP {result.status}")
    return result


# -- ceilings -------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def dd(args: Sequence[str]) -> float:
    def run() -> None:
        subprocess.run(["dd", "bs=4M", "status=none", *args], check=True, timeout=600,
                       stderr=subprocess.PIPE)
    return timed(run)


def hash_mbps(algorithm: str, buffer: bytes) -> float:
    h = (hashlib.md5(usedforsecurity=False) if algorithm == "md5"
         else hashlib.new(algorithm))
    return mbps(len(buffer), timed(lambda: h.update(buffer)))


# -- wrk ------------------------------------------------------------------------------------------

CREATE_LUA = """\
-- POSTs images until `limit` responses came back, then says BENCH_DONE (bench/run.py stops us).
local threads = {}
local headers = { ["Content-Type"] = "application/json" }
created, failed, seq, limit, prefix, finished = 0, 0, 0, 0, "bench", false

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  limit = tonumber(args[1])
  prefix = args[2] or "bench"
end

function request()
  seq = seq + 1
  local body = string.format(
    '{"name": "%s-%d", "disk_format": "raw", "container_format": "bare"}', prefix, seq)
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, body)
  if status == 201 then created = created + 1 else failed = failed + 1 end
  if created + failed >= limit and not finished then
    finished = true
    wrk.thread:stop()
    io.write("BENCH_DONE\\n")
    io.flush()
  end
end
"""

DONE_LUA = """\
function done(summary, latency, requests)
  local c, f = 0, 0
  for _, t in ipairs(threads or {}) do
    c = c + (t:get("created") or 0)
    f = f + (t:get("failed") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "created": %d, "failed": %d, ' ..
    '"p50_us": %.0f, "p90_us": %.0f, "p99_us": %.0f, "max_us": %.0f, "non2xx": %d, ' ..
    '"socket_errors": %d}\\n',
    summary.requests, summary.duration, c, f, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
  io.flush()
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    created: int
    failed: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def creates_per_s(self) -> float:
        return self.created / self.seconds


def run_wrk(script: Path, url: str, seconds: float, args: Sequence[str] = (),
            until_done: bool = False) -> WrkResult:
    """wrk with one thread (the machine has 2 cores) and 16 connections; `until_done` stops it
    as soon as the script says BENCH_DONE, so wrk's duration is the time the work took."""
    argv = ["wrk", "-t1", f"-c{CLIENTS}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
            "--latency", "-s", str(script), url]
    if args:
        argv += ["--", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if until_done and line.strip() == "BENCH_DONE":
                proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    found = [ln for ln in lines if ln.startswith("BENCH_JSON ")]
    if proc.returncode != 0 or not found:
        raise BenchError(f"wrk failed ({proc.returncode}): {err.strip()}\n{''.join(lines)}")
    data = json.loads(found[-1].removeprefix("BENCH_JSON "))
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        created=int(data["created"]),
        failed=int(data["failed"]),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non2xx=int(data["non2xx"]),
        socket_errors=int(data["socket_errors"]),
    )


def count_images(data_dir: Path) -> int:
    db = data_dir / "glimpse.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        row = conn.execute("SELECT count(*) FROM images").fetchone()
    return int(row[0])


# -- profiling ------------------------------------------------------------------------------------


@dataclass
class Profile:
    phase: str
    samples: int = 0
    seconds: float = 0.0
    rate: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    threads: Counter[str] = field(default_factory=Counter)
    raw_path: Path | None = None
    error: str = ""

    @property
    def active_threads(self) -> float:
        """Average number of threads py-spy found busy (not idle) per sampling tick."""
        return self.samples / (self.seconds * self.rate) if self.seconds and self.rate else 0.0


_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    return _LINE.sub(")", frame.strip())


def parse_profile(profile: Profile, text: str) -> None:
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames or frames[-1] in IDLE_LEAVES:
            continue
        profile.samples += n
        profile.self_time[frames[-1]] += n
        for name in set(frames):
            if "(threading.py)" not in name:
                profile.inclusive[name] += n
        kind = ("worker threads (anyio to_thread)" if any("WorkerThread.run" in f for f in frames)
                else "event loop thread" if any("Runner.run" in f or "Server.run" in f
                                                for f in frames)
                else "other")
        profile.threads[kind] += n


class PySpy:
    """py-spy in a throw-away venv inside the run's temporary folder."""

    RATE = 100

    def __init__(self, work: Path) -> None:
        self.binary: Path | None = None
        self.error = ""
        venv = work / "pyspy-venv"
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                           capture_output=True, timeout=120)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "py-spy"], check=True,
                           capture_output=True, timeout=300)
            self.binary = venv / "bin" / "py-spy"
        except (subprocess.SubprocessError, OSError) as exc:
            self.error = f"could not install py-spy: {exc}"
            log(self.error)

    @contextlib.contextmanager
    def record(self, phase: str, pid: int, out_dir: Path, gil: bool = False,
               subprocesses: bool = False) -> Iterator[Profile]:
        """Samples busy threads, or with `gil` only the thread holding the GIL (the Python work
        that competes for the interpreter); with `subprocesses` also the children of `pid`
        (the workers of a server with several: the parent only supervises them)."""
        profile = Profile(phase + (" (GIL holder only)" if gil else ""), rate=self.RATE)
        if self.binary is None:
            profile.error = self.error
            yield profile
            return
        raw = out_dir / f"profile-{phase}{'-gil' if gil else ''}.txt"
        raw.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [str(self.binary), "record", "--pid", str(pid), "--rate", str(self.RATE),
             "--format", "raw", "--output", str(raw), "--duration", "300",
             *(["--gil"] if gil else []), *(["--subprocesses"] if subprocesses else [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        time.sleep(1.0)  # let it attach
        start = time.perf_counter()
        try:
            yield profile
        finally:
            profile.seconds = time.perf_counter() - start
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                output, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
            if raw.exists():
                profile.raw_path = raw
                parse_profile(profile, raw.read_text(errors="replace"))
            else:
                profile.error = f"py-spy wrote nothing: {output.strip()[-500:]}"


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Results:
    started: str = ""
    env: dict[str, str] = field(default_factory=dict)
    size: int = 0
    reps: int = 0
    series: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    wall: float = 0.0

    def add(self, key: str, value: float) -> None:
        self.series.setdefault(key, []).append(value)

    def med(self, key: str) -> float:
        return median(self.series[key])


def environment(tools: dict[str, str], disk: Disk, work: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=False)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return {
        "commit": git("rev-parse", "--short", "HEAD") + (" (src/ modified)" if dirty else ""),
        "host": f"{platform.node()}, {os.cpu_count()} cores ({cpu}), "
                f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "disk": f"{work} on {disk.source} ({disk.fstype}, mounted at {disk.mount})",
        "tools": "; ".join([
            tool_version([tools["nginx"], "-v"]),
            tool_version([tools["wrk"], "-v"]).split(" Copyright")[0],
            tool_version([tools["curl"], "--version"]).split(" (")[0],
        ]),
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


def run(opts: argparse.Namespace, cleanup: contextlib.ExitStack) -> Results:
    t0 = time.perf_counter()
    res = Results(started=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
                  size=opts.size_mib * MIB, reps=opts.reps)
    size = res.size
    tools = ensure_tools(not opts.no_install)
    needed = size * (opts.reps + 5)  # source + dd file + uploads + slack
    if opts.with_stores:
        needed += stores().needed_space(size)
    if opts.with_pipeline:
        needed += pipeline().needed_space(size)
    base, disk = pick_base(opts.tmp_base, needed)
    work = Path(tempfile.mkdtemp(prefix="glimpse-bench-", dir=base))
    cleanup.callback(shutil.rmtree, work, ignore_errors=True)
    log(f"working in {work} ({disk.fstype} on {disk.source})")
    res.env = environment(tools, disk, work)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)

    served = work / "www"
    served.mkdir()
    source = served / "image.bin"
    log(f"writing {size / MIB:.0f} MiB of random bytes to {source.name}")
    res.values["make_file_s"] = make_random_file(source, size)

    _, nginx_base = start_nginx(tools["nginx"], work, served, cleanup)
    glimpse, api = start_glimpse(work, cleanup)
    log(f"nginx on {nginx_base}, glimpse (pid {glimpse.pid}) on {api}")
    res.values["rss_idle"] = tree_rss(glimpse.pid)

    # Disk, hashes and upload, interleaved so that noise hits ceilings and Glimpse alike.
    with source.open("rb") as fh:
        buffer = fh.read(min(HASH_BUFFER, size))
    dd_file = work / "dd.bin"
    previous: str | None = None
    image_id = ""
    for rep in range(opts.reps):
        log(f"ceilings and upload, round {rep + 1}/{opts.reps}")
        dd_file.unlink(missing_ok=True)
        res.add("dd_write", mbps(size, dd([f"if={source}", f"of={dd_file}", "conv=fdatasync"])))
        res.add("dd_read_cached", mbps(size, dd([f"if={dd_file}", "of=/dev/null"])))
        try:
            res.add("dd_read_direct",
                    mbps(size, dd([f"if={dd_file}", "of=/dev/null", "iflag=direct"])))
        except subprocess.CalledProcessError:
            if rep == 0:
                res.notes.append("dd iflag=direct is not supported on this filesystem.")
        res.add("md5", hash_mbps("md5", buffer))
        res.add("sha512", hash_mbps("sha512", buffer))
        dd_file.unlink(missing_ok=True)
        image_id = create_image(api, f"bench-upload-{rep}")
        with Watch(glimpse.pid) as watch:
            sent = upload(api, image_id, source)
        res.add("upload", sent.mbps)
        res.add("upload_rss", watch.peak)
        res.add("upload_cpu", watch.cpu_share)
        log(f"  dd write {res.series['dd_write'][-1]:.0f} MB/s, md5 {res.series['md5'][-1]:.0f}, "
            f"sha512 {res.series['sha512'][-1]:.0f}, upload {sent.mbps:.0f} MB/s, "
            f"peak RSS {watch.peak / MB:.0f} MB")
        if previous is not None:
            http("DELETE", f"{api}/v2/images/{previous}")
        previous = image_id
    del buffer
    status, doc = http("GET", f"{api}/v2/images/{image_id}")
    if status != 200 or doc.get("size") != size:
        raise BenchError(f"uploaded image is not right: HTTP {status}: {doc!r}")
    res.values["upload_checksum_ok"] = float(
        doc.get("checksum") == hashlib.md5(source.read_bytes(), usedforsecurity=False).hexdigest()
    )

    # Downloads, nginx and Glimpse in turn, each warmed once.
    nginx_url = f"{nginx_base}/{source.name}"
    glimpse_url = f"{api}/v2/images/{image_id}/file"
    download(nginx_url, size)
    download(glimpse_url, size)
    for rep in range(opts.reps):
        res.add("nginx", download(nginx_url, size).mbps)
        with Watch(glimpse.pid) as watch:
            got = download(glimpse_url, size)
        res.add("download", got.mbps)
        res.add("download_rss", watch.peak)
        res.add("download_cpu", watch.cpu_share)
        log(f"download round {rep + 1}/{opts.reps}: nginx {res.series['nginx'][-1]:.0f} MB/s, "
            f"glimpse {got.mbps:.0f} MB/s, peak RSS {watch.peak / MB:.0f} MB")

    # Metadata: creates in batches (several measurements, one total), then list, on a server
    # with one worker per core (Glance's reference figures ran four uWSGI workers).
    glimpse.stop()
    glimpse, api = start_glimpse(work, cleanup, opts.metadata_workers)
    res.values["metadata_workers"] = opts.metadata_workers
    log(f"metadata server: {opts.metadata_workers} worker(s), pid {glimpse.pid}, on {api}")
    create_lua = work / "create.lua"
    create_lua.write_text(CREATE_LUA + DONE_LUA)
    list_lua = work / "list.lua"
    list_lua.write_text(DONE_LUA)
    batches = max(1, opts.reps)
    per_batch = [opts.images // batches + (1 if i < opts.images % batches else 0)
                 for i in range(batches)]
    created = failed = 0
    create_seconds = 0.0
    for i, n in enumerate(per_batch):
        with Watch(glimpse.pid) as watch:
            got_w = run_wrk(create_lua, f"{api}/v2/images", 300, [str(n), f"bench-{i}"],
                            until_done=True)
        created += got_w.created
        failed += got_w.failed + got_w.socket_errors
        create_seconds += got_w.seconds
        res.add("creates", got_w.creates_per_s)
        res.add("create_p50", got_w.p50_ms)
        res.add("create_p99", got_w.p99_ms)
        res.add("create_cpu", watch.cpu_share)
        log(f"creates batch {i + 1}/{batches}: {got_w.created} in {got_w.seconds:.1f} s = "
            f"{got_w.creates_per_s:.0f}/s, p99 {got_w.p99_ms:.0f} ms, failed {got_w.failed}")
    res.values["creates_total"] = created
    res.values["creates_failed"] = failed
    res.values["creates_overall"] = created / create_seconds
    res.values["images_in_db"] = count_images(work / "glimpse-data")

    list_url = f"{api}/v2/images?limit=25"
    status, page = http("GET", list_url)
    if status != 200 or len(page.get("images", [])) != 25:
        raise BenchError(f"GET {list_url}: HTTP {status}")
    run_wrk(list_lua, list_url, 2)  # warm-up
    list_errors = 0
    for rep in range(opts.reps):
        with Watch(glimpse.pid) as watch:
            got_w = run_wrk(list_lua, list_url, opts.list_seconds)
        list_errors += got_w.non2xx + got_w.socket_errors
        res.add("list_rps", got_w.rps)
        res.add("list_p50", got_w.p50_ms)
        res.add("list_p99", got_w.p99_ms)
        res.add("list_cpu", watch.cpu_share)
        log(f"list round {rep + 1}/{opts.reps}: {got_w.rps:.0f} req/s, p50 {got_w.p50_ms:.0f} ms, "
            f"p99 {got_w.p99_ms:.0f} ms")
    res.values["list_errors"] = list_errors
    res.values["rss_end"] = tree_rss(glimpse.pid)

    if opts.profile:
        profile_server(res, work, glimpse.pid, api, source, list_lua, create_lua, opts)

    if opts.with_identity:
        glimpse.stop()  # the identity servers get the cores to themselves
        identity().measure(res, opts, work, cleanup)

    if opts.with_stores:
        glimpse.stop()  # the stores' server and Swift get the cores
        stores().measure(res, opts, work, source, cleanup)

    if opts.with_pipeline:
        glimpse.stop()  # the pipeline's two servers get the cores
        pipeline().measure(res, opts, work, source, cleanup)

    load = os.getloadavg()
    res.env["load average at end"] = f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    res.wall = time.perf_counter() - t0
    return res


def profile_server(res: Results, work: Path, pid: int, api: str, source: Path, list_lua: Path,
                   create_lua: Path, opts: argparse.Namespace) -> None:
    log("profiling: installing py-spy into a temporary venv")
    spy = PySpy(work)
    out_dir = RESULTS_DIR
    workers = opts.metadata_workers
    image_id = create_image(api, "bench-profile")
    log("profiling upload")
    with spy.record("upload", pid, out_dir, subprocesses=workers > 1) as prof:
        upload(api, image_id, source)
    res.profiles.append(prof)
    log("profiling download")
    with spy.record("download", pid, out_dir, subprocesses=workers > 1) as prof:
        for _ in range(3):
            download(f"{api}/v2/images/{image_id}/file", res.size)
    res.profiles.append(prof)
    for gil in (False, True):
        log(f"profiling create{' (GIL)' if gil else ''}")
        with spy.record("create", pid, out_dir, gil, workers > 1) as prof:
            run_wrk(create_lua, f"{api}/v2/images", 120, ["2000", "bench-profile"],
                    until_done=True)
        res.profiles.append(prof)
        log(f"profiling list{' (GIL)' if gil else ''}")
        with spy.record("list", pid, out_dir, gil, workers > 1) as prof:
            run_wrk(list_lua, f"{api}/v2/images?limit=25", opts.list_seconds)
        res.profiles.append(prof)


# -- the report -----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def fmt(value: float) -> str:
    """Two decimals below 10, none above."""
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"


def run_section_alone(opts: argparse.Namespace, cleanup: contextlib.ExitStack,
                      space: Callable[[int], int],
                      measure: Callable[[Results, argparse.Namespace, Path, Path,
                                         contextlib.ExitStack], None]) -> Results:
    """One benchmark section on its own (`--stores`, `--pipeline`): a working folder with room
    for `space(size)` bytes, a random source file of the chosen size, then `measure`."""
    t0 = time.perf_counter()
    res = Results(started=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
                        size=opts.size_mib * MIB, reps=opts.reps)
    tools = ensure_tools(not opts.no_install)
    base, disk = pick_base(opts.tmp_base, space(res.size))
    work = Path(tempfile.mkdtemp(prefix="glimpse-bench-", dir=base))
    cleanup.callback(shutil.rmtree, work, ignore_errors=True)
    log(f"working in {work} ({disk.fstype} on {disk.source})")
    res.env = environment(tools, disk, work)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    source = work / "image.bin"
    log(f"writing {res.size / MIB:.0f} MiB of random bytes to {source.name}")
    res.values["make_file_s"] = make_random_file(source, res.size)
    measure(res, opts, work, source, cleanup)
    load = os.getloadavg()
    res.env["load average at end"] = f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    res.wall = time.perf_counter() - t0
    return res


def section_report(title: str, res: Results, targets: Sequence[Sequence[str]],
                   section: list[str]) -> str:
    """The report of a section run alone (`--identity`, `--stores`)."""
    out = [
        f"# Glimpse benchmark results: {title}",
        "",
        f"Run {res.started}, {res.wall:.0f} s, {res.reps} rounds of each throughput measurement.",
        "",
        "## Against the targets",
        "",
        "| Measure | Ratio | Glimpse (median) | Glance 33 | Target | Result |",
        "| --- | --- | --- | --- | --- | --- |",
        *(f"| {' | '.join(row)} |" for row in targets),
        "",
        *section,
        "## Environment",
        "",
        *(f"- {k}: {val}" for k, val in res.env.items()),
    ]
    if res.profiles:
        out += ["", "## Profiles (py-spy, 100 Hz; run after the measurements)", ""]
        for prof in res.profiles:
            out += profile_section(prof)
    return "\n".join(out) + "\n"


def report(res: Results) -> str:
    m = res.med
    size_mib = res.size / MIB
    sz = size_label(res.size)
    slower_hash = min(m("md5"), m("sha512"))
    hash_name = "MD5" if m("md5") <= m("sha512") else "SHA-512"
    upload_ceiling = min(m("dd_write"), slower_hash)
    ceiling_name = "dd write" if m("dd_write") <= slower_hash else f"{hash_name} hash"
    down_ratio = m("download") / m("nginx")
    up_ratio = m("upload") / upload_ceiling
    creates = m("creates")
    list_rps = m("list_rps")
    rss_peak = max(m("upload_rss"), m("download_rss")) / MB
    rss_max = max(max(res.series["upload_rss"]), max(res.series["download_rss"])) / MB
    g = GLANCE

    rows = [
        (f"Download {sz} / nginx", f"{down_ratio:.2f}",
         f"{m('download'):.0f} MB/s vs nginx {m('nginx'):.0f} MB/s",
         f"{g['download_mbps'] / g['nginx_mbps']:.2f} ({g['download_mbps']:.0f} MB/s)",
         f">= {TARGET_DOWNLOAD_VS_NGINX:.2f}", verdict(down_ratio >= TARGET_DOWNLOAD_VS_NGINX)),
        (f"Upload {sz} / min(disk, hash)", f"{up_ratio:.2f}",
         f"{m('upload'):.0f} MB/s vs {ceiling_name} {upload_ceiling:.0f} MB/s",
         f"{g['upload_mbps']:.0f} MB/s",
         f">= {TARGET_UPLOAD_VS_CEILING:.2f}", verdict(up_ratio >= TARGET_UPLOAD_VS_CEILING)),
        ("Creates/s (16 clients) / Glance", f"{creates / g['creates_per_s']:.1f}x",
         f"{creates:.0f}/s", f"{g['creates_per_s']:.0f}/s", f">= {TARGET_TIMES_GLANCE:.0f}x",
         verdict(creates >= TARGET_TIMES_GLANCE * g["creates_per_s"])),
        ("List req/s (16 conns) / Glance", f"{list_rps / g['list_rps']:.1f}x",
         f"{list_rps:.0f} req/s, p50 {m('list_p50'):.0f} ms, p99 {m('list_p99'):.0f} ms",
         f"{g['list_rps']:.0f} req/s, p99 {g['list_p99_ms']:.0f} ms",
         f">= {TARGET_TIMES_GLANCE:.0f}x",
         verdict(list_rps >= TARGET_TIMES_GLANCE * g["list_rps"])),
        (f"Server RSS during {sz} transfer", f"{rss_peak / TARGET_RSS_MB:.2f} of cap",
         f"peak {rss_peak:.0f} MB (upload {m('upload_rss') / MB:.0f}, download "
         f"{m('download_rss') / MB:.0f}; worst round {rss_max:.0f})",
         f"{g['rss_mb']:.0f} MB/worker", f"< {TARGET_RSS_MB:.0f} MB",
         verdict(rss_max < TARGET_RSS_MB)),
    ]
    if identity().has_results(res):
        rows += identity().target_rows(res)
    if stores().has_results(res):
        rows += stores().target_rows(res)
    if pipeline().has_results(res):
        rows += pipeline().target_rows(res)
    ceilings = [
        (f"dd write {sz}, conv=fdatasync", "dd_write", "MB/s"),
        (f"dd read {sz}, page cache", "dd_read_cached", "MB/s"),
        (f"dd read {sz}, iflag=direct (device)", "dd_read_direct", "MB/s"),
        ("MD5, 1 thread, 256 MiB buffer", "md5", "MB/s"),
        ("SHA-512, 1 thread, 256 MiB buffer", "sha512", "MB/s"),
        (f"nginx {sz} to curl", "nginx", "MB/s"),
    ]
    glimpse_rows = [
        (f"upload {sz} (curl -T)", "upload", "MB/s", 1.0),
        (f"download {sz} (curl)", "download", "MB/s", 1.0),
        ("server peak RSS, upload", "upload_rss", "MB", 1 / MB),
        ("server peak RSS, download", "download_rss", "MB", 1 / MB),
        ("server CPU during upload (1.0 = one core)", "upload_cpu", "", 1.0),
        ("server CPU during download", "download_cpu", "", 1.0),
        ("creates/s, per batch", "creates", "/s", 1.0),
        ("create latency p50", "create_p50", "ms", 1.0),
        ("create latency p99", "create_p99", "ms", 1.0),
        ("server CPU during creates", "create_cpu", "", 1.0),
        ("list req/s (limit=25)", "list_rps", "/s", 1.0),
        ("list latency p50", "list_p50", "ms", 1.0),
        ("list latency p99", "list_p99", "ms", 1.0),
        ("server CPU during list", "list_cpu", "", 1.0),
    ]

    def fmt(value: float) -> str:
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"

    def series_cells(key: str, scale: float) -> tuple[str, str]:
        values = res.series.get(key)
        if not values:
            return "n/a", ""
        return fmt(median(values) * scale), ", ".join(fmt(v * scale) for v in values)

    out = [
        "# Glimpse benchmark results",
        "",
        f"Run {res.started}, {res.wall:.0f} s, {res.reps} rounds of each throughput measurement "
        f"(medians shown), {size_mib:.0f} MiB image, 1 server worker for transfers and "
        f"{res.values.get('metadata_workers', 1):.0f} for creates and list, "
        f"{CLIENTS} concurrent clients. MB = 10^6 bytes.",
        "",
        "## Against the targets",
        "",
        "| Measure | Ratio | Glimpse (median) | Glance 33 | Target | Result |",
        "| --- | --- | --- | --- | --- | --- |",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "## Ceilings measured in this run",
        "",
        "| Ceiling | Median | Rounds |",
        "| --- | --- | --- |",
    ]
    for label, key, unit in ceilings:
        med, each = series_cells(key, 1.0)
        out.append(f"| {label} | {med} {unit} | {each} |")
    out += [
        "",
        "## Glimpse measurements",
        "",
        "| Measure | Median | Rounds |",
        "| --- | --- | --- |",
    ]
    for label, key, unit, scale in glimpse_rows:
        med, each = series_cells(key, scale)
        out.append(f"| {label} | {med} {unit} | {each} |")
    v = res.values
    out += [
        "",
        f"- Creates: {v['creates_total']:.0f} images in {len(res.series['creates'])} batches, "
        f"overall {v['creates_overall']:.0f}/s, {v['creates_failed']:.0f} failed; "
        f"{v['images_in_db']:.0f} rows in the images table afterwards (with the upload images "
        f"and up to {CLIENTS - 1} requests per batch still in flight when wrk stopped).",
        f"- List: {v['list_errors']:.0f} non-2xx or socket errors.",
        f"- Server RSS: {v['rss_idle'] / MB:.0f} MB idle after start, "
        f"{v['rss_end'] / MB:.0f} MB after the list runs.",
        f"- Upload checksum matches the file's MD5: "
        f"{'yes' if v['upload_checksum_ok'] else 'NO'}.",
        f"- Writing the random source file took {v['make_file_s']:.1f} s.",
        *(f"- {note}" for note in res.notes),
        "",
    ]
    if identity().has_results(res):
        out += identity().section(res)
    if stores().has_results(res):
        out += stores().section(res)
    if pipeline().has_results(res):
        out += pipeline().section(res)
    out += [
        "## Environment",
        "",
        *(f"- {k}: {val}" for k, val in res.env.items()),
    ]
    if res.profiles:
        out += ["", "## Profiles (py-spy, 100 Hz; run after the measurements)", "",
                "`Runner.run (asyncio/runners.py)` as a leaf is time inside uvloop's C event "
                "loop (socket reads and writes, callbacks); C calls such as hashing, `os.write` "
                "and SQLite count for the Python line that called them.", ""]
        for prof in res.profiles:
            out += profile_section(prof)
    return "\n".join(out) + "\n"


def profile_section(prof: Profile, top: int = 12) -> list[str]:
    lines = [f"### {prof.phase}", ""]
    if prof.error or not prof.samples:
        return [*lines, f"No profile: {prof.error or 'no samples'}", ""]
    lines.append(
        f"{prof.samples} samples in {prof.seconds:.1f} s; on average {prof.active_threads:.2f} "
        f"threads busy. By thread: "
        + ", ".join(f"{k} {n / prof.samples:.0%}" for k, n in prof.threads.most_common())
        + (f". Raw stacks: `{prof.raw_path.relative_to(ROOT)}`." if prof.raw_path else "")
    )
    lines += ["", "| Self % | Function (where the samples were) |", "| --- | --- |"]
    lines += [f"| {n / prof.samples:.1%} | `{name}` |"
              for name, n in prof.self_time.most_common(top)]
    # Glimpse's own functions, with what they call; not the wrappers every request goes through.
    skip = ("(glimpse/cli.py)", "EdgeMiddleware.__call__ (", "dispatch (glimpse/api/")
    inclusive = [(name, n) for name, n in prof.inclusive.most_common()
                 if "(glimpse/" in name and not any(s in name for s in skip)]
    lines += ["", "| Inclusive % | Glimpse function (with what it calls) |", "| --- | --- |"]
    lines += [f"| {n / prof.samples:.1%} | `{name}` |" for name, n in inclusive[:top]]
    return [*lines, ""]


def terminal_table(markdown: str) -> str:
    """The markdown report, with its tables aligned for a terminal."""
    out: list[str] = []
    block: list[list[str]] = []

    def flush() -> None:
        if not block:
            return
        widths = [max(len(row[i]) for row in block if i < len(row))
                  for i in range(max(len(r) for r in block))]
        for row in block:
            if all(set(cell) <= {"-", " "} for cell in row):
                out.append("  ".join("-" * w for w in widths))
            else:
                out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
                           .rstrip())
        block.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            block.append([c.strip().replace("`", "") for c in line.strip().strip("|").split("|")])
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bash bench/run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="rounds of each measurement [3]")
    parser.add_argument("--size-mib", type=int, default=1024, help="image size in MiB [1024]")
    parser.add_argument("--images", type=int, default=10_000, help="images to create [10000]")
    parser.add_argument("--metadata-workers", type=int, default=os.cpu_count() or 1,
                        help="server workers for the create and list runs [one per core]")
    parser.add_argument("--list-seconds", type=float, default=10.0,
                        help="seconds of each list run [10]")
    parser.add_argument("--tmp-base", help="folder for the temporary files (disk, not tmpfs); "
                        "default $BENCH_TMPDIR, /var/tmp, bench/")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the server with py-spy (installed in a temp venv)")
    parser.add_argument("--identity", action="store_true",
                        help="only the identity benchmark: keystone mode against noauth, with a "
                        "real Keystone (bench/identity.py; report bench/results/identity.md)")
    parser.add_argument("--with-identity", action="store_true",
                        help="the default run, then the identity benchmark")
    parser.add_argument("--stores", action="store_true",
                        help="only the store benchmark: 1 GiB through Glimpse into Swift and S3 "
                        "(s3api) against httpx and boto3, with a real Swift (bench/stores.py; "
                        "report bench/results/stores.md)")
    parser.add_argument("--with-stores", action="store_true",
                        help="the default run, then the store benchmark")
    parser.add_argument("--pipeline", "--import", action="store_true", dest="pipeline",
                        help="only the pipeline benchmark: uploads with format inspection on "
                        "against off, a qcow2 import (stage + glance-direct) against an upload, "
                        "uploads against the hashes (bench/pipeline.py; report "
                        "bench/results/pipeline.md)")
    parser.add_argument("--with-pipeline", action="store_true",
                        help="the default run, then the pipeline benchmark")
    parser.add_argument("--no-install", action="store_true",
                        help="fail instead of installing missing Debian packages")
    parser.add_argument("--output", type=Path,
                        help="markdown report [bench/results/latest.md, identity.md, stores.md]")
    opts = parser.parse_args(argv)
    if opts.output is None:
        opts.output = RESULTS_DIR / ("identity.md" if opts.identity
                                     else "stores.md" if opts.stores
                                     else "pipeline.md" if opts.pipeline else "latest.md")
    if opts.identity + opts.stores + opts.pipeline > 1:
        parser.error("--identity, --stores and --pipeline each run alone: give one of them")
    if opts.reps < 1 or opts.size_mib < 1 or opts.images < opts.reps:
        parser.error("--reps, --size-mib and --images must be positive, --images >= --reps")
    return opts


def identity() -> ModuleType:
    """bench/identity.py, which imports this module as `run`: it must find this one, not load
    a second copy (whose BenchError `main` would not catch)."""
    sys.modules.setdefault("run", sys.modules[__name__])
    import identity as module

    return module


def stores() -> ModuleType:
    """bench/stores.py (imports this module as `run`, as identity does)."""
    sys.modules.setdefault("run", sys.modules[__name__])
    import stores as module

    return module


def pipeline() -> ModuleType:
    """bench/pipeline.py (imports this module as `run`, as identity does)."""
    sys.modules.setdefault("run", sys.modules[__name__])
    import pipeline as module

    return module


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    # Also SIGINT: a shell without job control starts background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    cleanup = contextlib.ExitStack()
    try:
        if opts.identity:
            res = identity().run_alone(opts, cleanup)
        elif opts.stores:
            res = stores().run_alone(opts, cleanup)
        elif opts.pipeline:
            res = pipeline().run_alone(opts, cleanup)
        else:
            res = run(opts, cleanup)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        log(f"benchmark failed: {exc}")
        return 1
    finally:
        # A second Ctrl-C must not leave servers or 1 GiB files behind.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        log("stopping servers and removing temporary files")
        cleanup.close()
    markdown = (identity().report(res) if opts.identity
                else stores().report(res) if opts.stores
                else pipeline().report(res) if opts.pipeline else report(res))
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(markdown)
    print(terminal_table(markdown))
    # The verdicts again, last, where a terminal shows them.
    summary = markdown.split("## Against the targets", 1)[1].split("\n## ", 1)[0]
    print("\n== Summary: Glimpse against the targets ==" + terminal_table(summary))
    print(f"written to {opts.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
