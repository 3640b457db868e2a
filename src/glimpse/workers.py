"""Running the API server in one or more processes.

With several workers, each process listens on its own socket bound with SO_REUSEPORT, so the
kernel spreads new connections evenly across them. (With one shared listening socket, as
uvicorn's own supervisor does it, the first worker to wake up tends to accept a whole burst of
connections while the others idle.) The parent only supervises: it restarts a worker that dies,
and on SIGTERM or SIGINT stops them all gracefully. A worker whose supervisor is gone (killed
with SIGKILL, say) stops gracefully too, within a second, instead of serving on unsupervised
with the configuration of a server that no longer runs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from glimpse.api.http import HeadLimits, LimitedHttpToolsProtocol
from glimpse.config import Settings

log = logging.getLogger(__name__)

APP = "glimpse.api.factory:app"
#: Exit status of a worker that could not start (the supervisor then gives up).
STARTUP_FAILURE = 3


def _config(settings: Settings) -> uvicorn.Config:
    limits = HeadLimits(
        max_request_line=settings.max_request_line,
        max_header_line=settings.max_header_line,
        max_header_size=settings.max_header_size,
        max_header_count=settings.max_header_count,
    )
    # uvicorn's access log stays off: the edge (`api.middleware`) writes one line per request
    # with what uvicorn cannot know, the request id and the caller (logger `glimpse.access`).
    return uvicorn.Config(
        APP, factory=True, host=settings.host, port=settings.port, loop="uvloop",
        # A buffered protocol (api/http.py), which uvicorn's type for `http` does not name.
        http=LimitedHttpToolsProtocol.configured(limits),  # type: ignore[arg-type]
        log_level=settings.log_level,
        access_log=False, timeout_graceful_shutdown=10,
    )


def _listen(host: str, port: int, share: bool = True) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


#: How often a worker checks that its supervisor still runs (seconds).
ORPHAN_CHECK = 0.5


def _stop_when_orphaned(supervisor: int) -> None:
    """In a worker: once the supervisor is gone (the worker's parent changes), SIGTERM
    ourselves, which uvicorn handles as a graceful shutdown."""
    while True:
        time.sleep(ORPHAN_CHECK)
        if os.getppid() != supervisor:
            log.warning("supervisor %d is gone; stopping", supervisor)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _worker(settings: Settings, supervisor: int) -> None:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    threading.Thread(target=_stop_when_orphaned, args=(supervisor,), daemon=True,
                     name="orphan-check").start()
    server = uvicorn.Server(_config(settings))
    try:
        server.run(sockets=[_listen(settings.host, settings.port)])
    except Exception:
        log.exception("worker failed")
        sys.exit(STARTUP_FAILURE if not server.started else 1)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve(settings: Settings) -> int:
    """Serve until told to stop; returns the exit status. Workers get `settings` as they are
    (the app in each rebuilds its own from the same sources: `factory.app`)."""
    host, port, workers = settings.host, settings.port, settings.processes
    if workers == 1:
        uvicorn.Server(_config(settings)).run()
        return 0
    # Fail here, loudly, if the address is taken (also by another server sharing its port).
    _listen(host, port, share=False).close()
    context = multiprocessing.get_context("spawn")
    running: dict[int, BaseProcess] = {}
    stopping = False

    def start() -> None:
        process = context.Process(target=_worker, args=(settings, os.getpid()), daemon=False)
        process.start()
        assert process.pid is not None
        running[process.sentinel] = process

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in running.values():
            if process.pid is not None and process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        start()
    log.info("supervising %d workers on %s:%d", workers, host, port)
    status = 0
    while running:
        for sentinel in wait(list(running), timeout=1.0):
            assert isinstance(sentinel, int)
            process = running.pop(sentinel)
            process.join()
            if stopping:
                continue
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %s could not start; stopping", process.pid)
                status = 1
                stop(signal.SIGTERM, None)
                continue
            log.warning("worker %s died (exit code %s); starting another",
                        process.pid, process.exitcode)
            time.sleep(0.5)  # no tight loop if workers keep dying
            start()
    return status
