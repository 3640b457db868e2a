"""A loopback HTTP server that serves image bytes for the HTTP store (http.server in a thread).

`Source.add(name, data)` serves `data` at `source.url(name)`, with HEAD (Content-Length) and
single `Range: bytes=a-b` GETs; `redirect(name, target)` answers `name` with a 302 to
`target`. `stall(name, gets, after=0)` makes that many GETs of `name`, after the next `after`
ones, send half of the bytes and then wait until `release()` (or 30 s): a reader caught
mid-read. Every request is recorded in `requests` as `(method, path)`, so a test sees what
the service asked.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class Source:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self._stalls: dict[str, int] = {}
        self._passes: dict[str, int] = {}  # GETs let through before the stalls
        self.stalled = threading.Event()  # set while a GET waits in a stall
        self.released = threading.Event()
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def add(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return self.url(name)

    def redirect(self, name: str, target: str) -> str:
        self.redirects[name] = target
        return self.url(name)

    def stall(self, name: str, gets: int = 1, after: int = 0) -> None:
        with self.lock:
            self._stalls[name] = gets
            self._passes[name] = after
        self.released.clear()
        self.stalled.clear()

    def release(self) -> None:
        self.released.set()

    def gets_of(self, name: str) -> int:
        return sum(1 for m, p in self.requests if m == "GET" and p == f"/{name}")

    def _take_stall(self, name: str) -> bool:
        with self.lock:
            if self._passes.get(name, 0) > 0:
                self._passes[name] -= 1
                return False
            left = self._stalls.get(name, 0)
            if left > 0:
                self._stalls[name] = left - 1
                return True
        return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    source: Source

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_DELETE(self) -> None:
        self.source.requests.append(("DELETE", self.path))
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, head: bool) -> None:
        source = self.source
        path = self.path.split("#", 1)[0]
        source.requests.append(("HEAD" if head else "GET", path))
        target = source.redirects.get(path.lstrip("/"))
        if target is not None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = source.files.get(path.lstrip("/"))
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = 0, len(data)
        match = _RANGE.match(self.headers.get("Range", ""))
        if match and not head:
            start = int(match.group(1))
            end = min(end, int(match.group(2)) + 1) if match.group(2) else end
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if head:
            return
        body = data[start:end]
        try:
            if source._take_stall(path.lstrip("/")):
                half = len(body) // 2
                self.wfile.write(body[:half])
                self.wfile.flush()
                source.stalled.set()
                source.released.wait(30)
                body = body[half:]
            self.wfile.write(body)
        except OSError:  # the reader went away (killed server)
            self.close_connection = True


@contextmanager
def serving() -> Iterator[Source]:
    handler = type("Handler", (_Handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    source = Source(server)
    handler.source = source  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield source
    finally:
        source.release()
        server.shutdown()
        server.server_close()
        thread.join(5)
