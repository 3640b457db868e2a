"""Limits on the request head (glimpse.api.http), against a real server over raw sockets.

The server runs with small limits: request line 300 bytes, header line 400, header lines
together 1000, at most 10 of them. Each line counts as `name: value`; Host (`Host: t`, 7 bytes)
is one of them.
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from tests.servers import Server, start_server

REQUEST_LINE, HEADER_LINE, HEADER_SIZE, HEADER_COUNT = 300, 400, 1000, 10
HOST = b"Host: t\r\n"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("limits") / "data",
                       max_request_line=REQUEST_LINE, max_header_line=HEADER_LINE,
                       max_header_size=HEADER_SIZE, max_header_count=HEADER_COUNT)
    yield srv
    srv.stop()


class Reply:
    """One parsed response: status, lower-case headers, body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def connect(srv: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_reply(sock: socket.socket, buffered: bytearray) -> Reply:
    """Read one response (Content-Length framed) from `sock`; leftovers stay in `buffered`."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {bytes(buffered)!r}"
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        body += chunk
    buffered[:] = body[length:]
    return Reply(int(status_line.split()[1]), headers, bytes(body[:length]))


def closed(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset), after draining."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def exchange(srv: Server, request: bytes) -> Reply:
    with connect(srv) as sock:
        sock.sendall(request)
        return read_reply(sock, bytearray())


def get(target: str = "/versions", headers: bytes = b"", method: str = "GET") -> bytes:
    return f"{method} {target} HTTP/1.1\r\n".encode() + HOST + headers + b"\r\n"


def header(name: str, line_length: int) -> bytes:
    """A header line of exactly `line_length` bytes, counted as `name: value`."""
    return f"{name}: {'v' * (line_length - len(name) - 2)}\r\n".encode()


def target_for(method: str, line_length: int) -> str:
    """A target making `METHOD target` exactly `line_length` bytes."""
    base = "/versions?pad="
    return base + "p" * (line_length - len(method) - 1 - len(base))


def assert_refused(reply: Reply, status: int, words: str) -> None:
    assert reply.status == status
    assert reply.headers["connection"] == "close"
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"message", "code", "title"}
    assert body["code"].startswith(f"{status} ")
    assert words in body["message"]


def test_request_line_at_the_limit_passes(small: Server) -> None:
    assert exchange(small, get(target_for("GET", REQUEST_LINE))).status == 200


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_request_line_one_byte_over_is_414(small: Server, method: str) -> None:
    with connect(small) as sock:
        sock.sendall(get(target_for(method, REQUEST_LINE + 1), method=method))
        reply = read_reply(sock, bytearray())
        assert closed(sock)
    assert_refused(reply, 414, f"longer than {REQUEST_LINE} bytes")


def test_request_line_sent_in_pieces_is_measured_whole(small: Server) -> None:
    request = get(target_for("GET", REQUEST_LINE + 1))
    with connect(small) as sock:
        for start in range(0, 320, 40):  # the URL reaches the parser in several fragments
            sock.sendall(request[start:start + 40])
        sock.sendall(request[320:])
        reply = read_reply(sock, bytearray())
    assert_refused(reply, 414, "request line")


def test_header_line_at_the_limit_passes(small: Server) -> None:
    assert exchange(small, get(headers=header("X-Pad", HEADER_LINE))).status == 200


def test_header_line_one_byte_over_is_431(small: Server) -> None:
    with connect(small) as sock:
        sock.sendall(get(headers=header("X-Pad", HEADER_LINE + 1)))
        reply = read_reply(sock, bytearray())
        assert closed(sock)
    assert_refused(reply, 431, f"header line is longer than {HEADER_LINE} bytes")


def test_last_header_line_over_is_431(small: Server) -> None:
    request = get(headers=header("X-A", 20) + header("X-Pad", HEADER_LINE + 1))
    assert_refused(exchange(small, request), 431, "header line")


def test_header_count_at_the_limit_passes(small: Server) -> None:
    headers = b"".join(header(f"X-{i}", 10) for i in range(HEADER_COUNT - 1))  # + Host
    assert exchange(small, get(headers=headers)).status == 200


def test_one_header_too_many_is_431(small: Server) -> None:
    headers = b"".join(header(f"X-{i}", 10) for i in range(HEADER_COUNT))
    assert_refused(exchange(small, get(headers=headers)), 431,
                   f"more than {HEADER_COUNT} header lines")


def test_header_size_at_the_limit_passes(small: Server) -> None:
    rest = HEADER_SIZE - (len(HOST) - 2) - 2 * HEADER_LINE
    headers = header("X-A", HEADER_LINE) + header("X-B", HEADER_LINE) + header("X-C", rest)
    assert exchange(small, get(headers=headers)).status == 200


def test_header_size_one_byte_over_is_431(small: Server) -> None:
    rest = HEADER_SIZE - (len(HOST) - 2) - 2 * HEADER_LINE + 1
    headers = header("X-A", HEADER_LINE) + header("X-B", HEADER_LINE) + header("X-C", rest)
    assert_refused(exchange(small, get(headers=headers)), 431,
                   f"longer than {HEADER_SIZE} bytes together")


def test_keep_alive_survives_requests_at_the_limits(small: Server) -> None:
    request = get(target_for("GET", REQUEST_LINE), header("X-Pad", HEADER_LINE))
    with connect(small) as sock:
        buffered = bytearray()
        for _ in range(3):
            sock.sendall(request)
            reply = read_reply(sock, buffered)
            assert reply.status == 200
            assert reply.headers.get("connection") != "close"


def test_pipelined_requests_are_answered_in_order_before_the_refusal(small: Server) -> None:
    good = get(headers=header("X-Pad", HEADER_LINE))
    bad = get(headers=header("X-Pad", HEADER_LINE + 1))
    with connect(small) as sock:
        sock.sendall(good + good + bad + good)
        buffered = bytearray()
        first, second, third = (read_reply(sock, buffered) for _ in range(3))
        assert closed(sock)
    assert (first.status, second.status) == (200, 200)
    assert_refused(third, 431, "header line")


def test_oversized_trailer_is_431(small: Server) -> None:
    body = b'{"name": "trailer"}'
    request = (b"POST /v2/images HTTP/1.1\r\n" + HOST
               + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n%s\r\n0\r\n" % (len(body), body)
               + header("X-Trailer", HEADER_LINE + 1) + b"\r\n")
    assert_refused(exchange(small, request), 431, "header line")


def send_until_answered(sock: socket.socket, prefix: bytes, filler: bytes, total: int) -> int:
    """Send `prefix` and then up to `total` bytes of `filler`, stopping once the server answers
    (or stops reading); returns how many filler bytes went out."""
    sock.sendall(prefix)
    sent = 0
    try:
        while sent < total:
            sock.sendall(filler)
            sent += len(filler)
            if select.select([sock], [], [], 0)[0]:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


@pytest.mark.parametrize("where", ["header", "name", "trailer"])
def test_50_mb_header_line_is_refused_with_flat_memory(small: Server, where: str) -> None:
    process = psutil.Process(small.pid)
    assert exchange(small, get()).status == 200  # warm up before measuring
    before = process.memory_info().rss
    prefix = {
        "header": b"GET /versions HTTP/1.1\r\n" + HOST + b"X-Huge: ",
        "name": b"GET /versions HTTP/1.1\r\n" + HOST + b"X-Huge",
        "trailer": (b"POST /v2/images HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
                    + b"Transfer-Encoding: chunked\r\n\r\n"
                    + b"1\r\nx\r\n0\r\nX-Huge: "),
    }[where]
    with connect(small) as sock:
        send_until_answered(sock, prefix, b"h" * 65536, 50 * 1024 * 1024)
        reply = read_reply(sock, bytearray())
    assert_refused(reply, 431, "header line")
    grown = process.memory_info().rss - before
    assert grown < 4 * 1024 * 1024, f"server grew by {grown} bytes"
    assert httpx.get(f"{small.url}/versions").status_code == 200


def test_server_keeps_serving_after_refusals(small: Server) -> None:
    for _ in range(3):
        assert_refused(exchange(small, get(headers=header("X-Pad", HEADER_LINE + 1))), 431,
                       "header line")
    with httpx.Client(base_url=small.url) as client:
        assert client.get("/versions").status_code == 200
        assert client.get("/v2/images").status_code == 200


def test_defaults_are_glances() -> None:
    from glimpse.config import Settings

    defaults = Settings()
    assert defaults.max_header_line == 16384
    assert (defaults.max_request_line, defaults.max_header_size, defaults.max_header_count) == (
        8192, 65536, 100)
