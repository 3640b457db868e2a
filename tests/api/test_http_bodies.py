"""Request bodies received into slabs (glimpse.api.http, glimpse.stores.slabs), against a real
server over raw sockets: a `Content-Length` body of at least `SLAB_BODY` bytes goes past the
HTTP parser straight into slabs, and the parser starts afresh after its last byte.

Each test checks the data that arrived (checksum, then the bytes served back) and that the
connection still works for the requests after it: keep-alive, pipelining, 100 Continue, an
answer given before the body is read, a client that goes away mid-body, and bodies of every
length around the slab size.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time

import httpx
import pytest

from glimpse.api.http import SLAB_BODY
from glimpse.stores.slabs import SLAB_SIZE
from tests.api.helpers import create, md5, show
from tests.api.test_http_limits import closed, connect, read_reply
from tests.servers import Server

HEAD = ("PUT /v2/images/{id}/file HTTP/1.1\r\nHost: t\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n{extra}\r\n")


def _put_head(image_id: str, size: int, extra: str = "") -> bytes:
    return HEAD.format(id=image_id, size=size, extra=extra).encode()


def _image(api: httpx.Client) -> str:
    return str(create(api, disk_format="raw", container_format="bare")["id"])


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\r\n".encode()


def _served(api: httpx.Client, image_id: str) -> bytes:
    resp = api.get(f"/v2/images/{image_id}/file")
    assert resp.status_code == 200, resp.text
    return resp.content


def _check_stored(api: httpx.Client, image_id: str, data: bytes) -> None:
    image = show(api, image_id)
    assert (image["status"], image["size"], image["checksum"]) == ("active", len(data),
                                                                   md5(data))
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert _served(api, image_id) == data


@pytest.mark.parametrize("size", [
    SLAB_BODY - 1, SLAB_BODY, SLAB_SIZE + 1, 3 * SLAB_SIZE - 1, 3 * SLAB_SIZE,
    5 * SLAB_SIZE + 4095, 5 * SLAB_SIZE + 4097,
])
def test_sizes_around_the_slab(server: Server, api: httpx.Client, size: int) -> None:
    """Lengths at and around the slab size and the block size of direct writes, sent in
    uneven pieces so reads end anywhere in a slab: every byte arrives, in order."""
    image_id = _image(api)
    data = os.urandom(size)
    with connect(server) as sock:
        sock.sendall(_put_head(image_id, size))
        for start in range(0, size, 777_777):
            sock.sendall(data[start:start + 777_777])
        reply = read_reply(sock, bytearray())
    assert reply.status == 204, reply.body
    _check_stored(api, image_id, data)


def test_body_in_the_same_send_as_its_head(server: Server, api: httpx.Client) -> None:
    """The first part of the body arrives with the head and goes through the parser; the
    rest goes past it: the two join without a seam."""
    image_id = _image(api)
    data = os.urandom(2 * SLAB_SIZE + 12345)
    with connect(server) as sock:
        sock.sendall(_put_head(image_id, len(data)) + data)
        assert read_reply(sock, bytearray()).status == 204
    _check_stored(api, image_id, data)


def test_keep_alive_and_pipelining_after_a_slab_body(server: Server,
                                                     api: httpx.Client) -> None:
    """Two uploads and a GET on one connection, the second upload and the GET sent right
    behind the first body, in the same send: the parser resumes at the first byte after each
    body and answers each request in order."""
    first, second = _image(api), _image(api)
    one, two = os.urandom(SLAB_SIZE + 1), os.urandom(2 * SLAB_SIZE - 3)
    with connect(server) as sock:
        sock.sendall(_put_head(first, len(one)) + one + _put_head(second, len(two)) + two
                     + _get(f"/v2/images/{first}"))
        buffered = bytearray()
        assert read_reply(sock, buffered).status == 204
        assert read_reply(sock, buffered).status == 204
        shown = read_reply(sock, buffered)
        assert shown.status == 200
        assert shown.json()["checksum"] == md5(one)
    _check_stored(api, first, one)
    _check_stored(api, second, two)


def test_expect_100_continue(server: Server, api: httpx.Client) -> None:
    """A client that waits for 100 Continue (as curl does for large bodies) gets it when the
    app starts reading, then the final answer."""
    image_id = _image(api)
    data = os.urandom(SLAB_SIZE * 2)
    with connect(server) as sock:
        sock.sendall(_put_head(image_id, len(data), "Expect: 100-continue\r\n"))
        interim = sock.recv(64)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        buffered = bytearray(interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):])
        sock.sendall(data)
        assert read_reply(sock, buffered).status == 204
    _check_stored(api, image_id, data)


def test_answer_before_the_body_then_keep_alive(server: Server, api: httpx.Client) -> None:
    """An upload the app refuses before reading (the image has data already: 409) is answered
    at once; the body the client still sends is read and dropped, and the next request on the
    connection is served. The refused bytes change nothing."""
    image_id = _image(api)
    data = os.urandom(SLAB_SIZE + 100)
    with connect(server) as sock:
        sock.sendall(_put_head(image_id, len(data)) + data)
        assert read_reply(sock, bytearray()).status == 204
        other = os.urandom(3 * SLAB_SIZE)
        sock.sendall(_put_head(image_id, len(other)))
        buffered = bytearray()
        refused = read_reply(sock, buffered)
        assert refused.status == 409, refused.body
        sock.sendall(other + _get(f"/v2/images/{image_id}"))
        shown = read_reply(sock, buffered)
        assert shown.status == 200
        assert shown.json()["checksum"] == md5(data)
    _check_stored(api, image_id, data)


def test_client_gone_mid_body(server: Server, api: httpx.Client) -> None:
    """A client that closes the connection after some slabs: the upload fails, nothing is
    stored, the image is queued again, and a full upload afterwards stores its own bytes."""
    image_id = _image(api)
    with connect(server) as sock:
        sock.sendall(_put_head(image_id, 10 * SLAB_SIZE) + os.urandom(3 * SLAB_SIZE + 5))
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while show(api, image_id)["status"] != "queued":
        assert time.monotonic() < deadline, show(api, image_id)
        time.sleep(0.05)
    data = os.urandom(2 * SLAB_SIZE)
    with connect(server) as sock:
        sock.sendall(_put_head(image_id, len(data)) + data)
        assert read_reply(sock, bytearray()).status == 204
    _check_stored(api, image_id, data)


def test_short_body_then_close_is_not_stored(server: Server, api: httpx.Client) -> None:
    """A body shorter than its Content-Length, the client half-closing after it: the server
    waits for the rest and, on the close, stores nothing."""
    image_id = _image(api)
    with connect(server) as sock:
        sock.sendall(_put_head(image_id, 2 * SLAB_SIZE) + os.urandom(SLAB_SIZE))
        sock.shutdown(socket.SHUT_WR)
        assert closed(sock)
    deadline = time.monotonic() + 30
    while (image := show(api, image_id))["status"] != "queued":
        assert time.monotonic() < deadline, image
        time.sleep(0.05)
    assert image["size"] is None and image["checksum"] is None


def test_concurrent_slab_bodies(server: Server, api: httpx.Client) -> None:
    """More uploads at once than the pool keeps slabs: each gets its own bytes."""
    images = [_image(api) for _ in range(6)]
    datas = [os.urandom(4 * SLAB_SIZE + i) for i in range(6)]
    socks = [connect(server) for _ in images]
    try:
        for sock, image_id, data in zip(socks, images, datas, strict=True):
            sock.sendall(_put_head(image_id, len(data)) + data[:SLAB_SIZE])
        for sock, data in zip(socks, datas, strict=True):
            sock.sendall(data[SLAB_SIZE:])
        for sock in socks:
            assert read_reply(sock, bytearray()).status == 204
    finally:
        for sock in socks:
            sock.close()
    for image_id, data in zip(images, datas, strict=True):
        _check_stored(api, image_id, data)
