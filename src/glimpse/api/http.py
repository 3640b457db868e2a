"""uvicorn's httptools protocol with limits on the request head, enforced while it is parsed.

httptools gathers each header line whole before it hands it over, so without a limit one long
line grows a worker by its length (a 200 MB line took one to 470 MB). `LimitedHttpToolsProtocol`
counts as the bytes arrive and refuses as soon as a limit is passed, without reading on:

- the request line (method, space, target) longer than `max_request_line` → 414;
- a header line (`name: value`) longer than `max_header_line`, header lines together longer than
  `max_header_size`, or more than `max_header_count` of them → 431.

Trailers of a chunked body count as header lines of their request. The limits hold exactly for
complete lines; a line still arriving is refused once it is clearly too long (64 bytes of
leeway for its version, CR and spaces; for a line that began in the middle of a read, after
another request's body, up to one read more). The refusal is Glance's JSON error body with
`Connection: close`, sent after any earlier responses on the connection; then the protocol
half-closes and discards what the client still sends for a moment (so the client can read the
answer instead of a reset) and closes. Everything else is uvicorn's: keep-alive, pipelining,
flow control, upgrades.

The protocol is a buffered one: the socket is read into buffers it owns. The request head and
small or chunked bodies go through httptools from one reused receive buffer. A body with a
`Content-Length` of at least `SLAB_BODY` bytes goes past the parser once its head is parsed:
it is read straight into slabs (`stores/slabs.py`), never past its last byte, and each filled slab
reaches the app as one memoryview, not copied on the way (`SlabBody`). When the body's last
byte is in, the parser starts afresh for the next request on the connection.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from glimpse.api.errors import error_fields
from glimpse.stores.slabs import SlabPool

#: After a refusal, how long and how much of the rest of the request is read and dropped.
LINGER_SECONDS = 2.0
LINGER_BYTES = 8 * 1024 * 1024
#: More than the longest "METHOD " llhttp knows ("VERSION-CONTROL "): a target at least this
#: much shorter than `max_request_line` needs no closer look.
_LONGEST_METHOD = 32
#: Leeway for a line still arriving: " HTTP/1.1", CR, optional whitespace around a value.
_SLACK = 64
#: The receive buffer of the request head (and bodies that go through the parser): uvloop's
#: own read size.
RECEIVE_SIZE = 256 * 1024
#: Bodies declaring at least this many bytes are received into slabs.
SLAB_BODY = 1024 * 1024
#: Filled slabs waiting for the app before the connection stops reading.
SLABS_AHEAD = 2


@dataclass(frozen=True)
class HeadLimits:
    """Limits on the request head, in bytes (count: header lines)."""

    max_request_line: int = 8192
    max_header_line: int = 16384
    max_header_size: int = 65536
    max_header_count: int = 100


class Refused(Exception):
    """Raised by a parser callback when the head passes a limit; stops the parser."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def refusal(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole response: status line, headers, Glance's flat JSON body."""
    body = json.dumps(error_fields(status, message)).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"x-openstack-request-id: req-%s\r\n" % str(uuid.uuid4()).encode(),
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)


_per_thread = threading.local()


def _receiving() -> tuple[memoryview, SlabPool]:
    """The receive buffer and the slab pool of the calling thread's event loop, shared by its
    connections: a read is parsed (and what is kept of it copied) before the next one begins,
    so one buffer serves them all, as uvloop's own does."""
    try:
        return _per_thread.receiving  # type: ignore[no-any-return]
    except AttributeError:
        _per_thread.receiving = (memoryview(bytearray(RECEIVE_SIZE)), SlabPool())
        return _per_thread.receiving  # type: ignore[no-any-return]


class SlabBody:
    """A request body received into slabs: the filled ones waiting for the app, and the ASGI
    `receive` that hands them over one at a time, as they are (uvicorn's copies its body into
    new bytes). Otherwise uvicorn's: 100 Continue on the first call, a disconnect once the
    connection is gone or the response complete, reading paused while the app falls behind."""

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle
        self.ready: deque[memoryview] = deque()

    def add(self, piece: memoryview) -> None:
        cycle = self._cycle
        if cycle.response_complete or cycle.disconnected:
            return  # nobody reads it any more
        self.ready.append(piece)
        if len(self.ready) >= SLABS_AHEAD:
            cycle.flow.pause_reading()
        cycle.message_event.set()

    async def receive(self) -> dict[str, Any]:
        cycle = self._cycle
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        if not self.ready and not cycle.disconnected and not cycle.response_complete:
            cycle.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.disconnected or cycle.response_complete:
            self.ready.clear()
            return {"type": "http.disconnect"}
        piece: memoryview | bytes = self.ready.popleft() if self.ready else b""
        if len(self.ready) < SLABS_AHEAD:
            cycle.flow.resume_reading()
        return {"type": "http.request", "body": piece,
                "more_body": bool(self.ready) or cycle.more_body}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` enforcing `limits` (see the module docstring); `configured` makes a
    subclass with other limits, for `uvicorn.Config(http=...)`."""

    limits: ClassVar[HeadLimits] = HeadLimits()

    @classmethod
    def configured(cls, limits: HeadLimits) -> type[BufferedHttp]:
        """The protocol class for uvicorn: buffered reading, these limits."""
        protocol = type(cls.__name__, (cls,), {"limits": limits})
        return type(BufferedHttp.__name__, (BufferedHttp,), {"protocol_class": protocol})

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = self.limits
        self._max_request_line = limits.max_request_line
        self._max_target = limits.max_request_line - _LONGEST_METHOD
        self._max_line = limits.max_header_line
        self._max_size = limits.max_header_size
        self._max_count = limits.max_header_count
        self._max_partial = max(limits.max_header_line, limits.max_request_line) + _SLACK
        # Where the parser is: inside a header section (request head or trailers)? Between
        # messages? How many sections began during the current read?
        self._in_fields = False
        self._idle = True
        self._entered = 0
        self._partial = 0  # bytes of the section's unfinished line, as far as known
        self._count = 0
        self._size = 0
        # After a refusal: the response if it waits for earlier ones, and the linger state.
        self._refused = False
        self._pending: bytes | None = None
        self._discarded = -1  # counting starts when the refusal has been written
        self._linger: asyncio.TimerHandle | None = None
        # Receiving: the buffer the parser is fed from; for a slab body (module docstring) its
        # receiver, the bytes still to come, the slab being filled, and where the next read
        # goes.
        self._receive_view, self._pool = _receiving()
        self._body: SlabBody | None = None
        self._body_left = 0
        self._slab: mmap.mmap | None = None
        self._slab_view: memoryview | None = None
        self._slab_filled = 0
        self._into_slab = False

    # Reading

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body_left and self._body is not None and not self._refused:
            self._into_slab = True
            if self._slab_view is None:
                self._slab = self._pool.take()
                self._slab_view = memoryview(self._slab)
            filled = self._slab_filled
            room = min(len(self._slab_view) - filled, self._body_left)
            return self._slab_view[filled:filled + room]
        self._into_slab = False
        return self._receive_view

    def buffer_updated(self, nbytes: int) -> None:
        if not self._into_slab:
            self.data_received(self._receive_view[:nbytes])
            return
        self._unset_keepalive_if_required()
        self._slab_filled += nbytes
        self._body_left -= nbytes
        assert self._slab_view is not None
        if self._slab_filled == len(self._slab_view) or not self._body_left:
            self._hand_over()
        if not self._body_left:
            # The parser still waits for the body: a new one for the next request.
            self.parser = httptools.HttpRequestParser(self)
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
            self.on_message_complete()

    def _hand_over(self) -> None:
        """The filled part of the slab to the app; the next read takes a new slab."""
        view, filled = self._slab_view, self._slab_filled
        self._slab = self._slab_view = None
        self._slab_filled = 0
        if self._body is not None and view is not None and filled:
            self._body.add(view if filled == len(view) else view[:filled])

    def data_received(self, data: bytes | memoryview) -> None:
        if self._refused:
            self._discard(len(data))
            return
        self._unset_keepalive_if_required()
        continuing, idle = self._in_fields, self._idle
        self._entered = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, Refused):
                self._refuse(exc.__context__)
                return
            self._invalid()
            return
        except httptools.HttpParserError:
            self._invalid()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_fields:
            self._measure(data, continuing, idle)

    def _measure(self, data: bytes | memoryview, continuing: bool, idle: bool) -> None:
        """After a read that ended inside a header section: the length of its unfinished line.
        Complete lines were checked exactly by the callbacks."""
        newline = bytes(data).rfind(b"\n")
        if continuing and not self._entered:  # the whole read belongs to the section
            self._partial = self._partial + len(data) if newline < 0 else len(data) - newline - 1
        elif idle and self._entered == 1:  # the section began this read, at its start
            self._partial = len(data) if newline < 0 else len(data) - newline - 1
        else:  # it began after another message's bytes: unknown, and below one read
            self._partial = 0
        if self._partial > self._max_partial:
            self._refuse(Refused(431, f"A request header line is longer than {self._max_line} "
                                      "bytes."))

    def _invalid(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def send_400_response(self, msg: str) -> None:
        """A request the parser refuses (bad syntax, control characters in a header) gets the
        same JSON error body as every other error, not uvicorn's plain text."""
        self.transport.write(refusal(400, msg, self.server_state.default_headers))
        self.transport.close()

    # Parser callbacks (the hot path: a few integer operations each)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_fields = True
        self._idle = False
        self._entered += 1
        self._count = self._size = 0

    # on_url and on_header do what uvicorn's do inline, not through super(): they run for every
    # request and header, and a call more each was measurable.

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self._max_target:
            line = len(self.parser.get_method()) + 1 + len(self.url)
            if line > self._max_request_line:
                raise Refused(414, f"The request line is longer than {self._max_request_line} "
                                   "bytes.")

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + len(value) + 2
        self._size += line
        self._count += 1
        if line > self._max_line or self._size > self._max_size or self._count > self._max_count:
            raise self._header_refusal(line)
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def _header_refusal(self, line: int) -> Refused:
        if line > self._max_line:
            return Refused(431, f"A request header line is longer than {self._max_line} bytes.")
        if self._count > self._max_count:
            return Refused(431, f"The request has more than {self._max_count} header lines.")
        return Refused(431, f"The request header lines are longer than {self._max_size} bytes "
                            "together.")

    def on_headers_complete(self) -> None:
        self._in_fields = False
        cycle = self.cycle
        super().on_headers_complete()
        if self.cycle is not cycle:  # a request for the app (not an upgrade)
            self._body_left = self._slab_body_size()
            if self._body_left:
                self._body = SlabBody(self.cycle)
                self.cycle.receive = self._body.receive  # type: ignore[method-assign, assignment]

    def _slab_body_size(self) -> int:
        """The declared length of a body to receive into slabs, else 0."""
        lengths = [value for name, value in self.headers if name in (b"content-length",
                                                                     b"transfer-encoding")]
        if (len(lengths) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 19
                or (size := int(lengths[0])) < SLAB_BODY):
            return 0
        return size

    def on_chunk_header(self) -> None:
        # After the last chunk's size line come the trailers, parsed like headers.
        self._in_fields = True
        self._entered += 1

    def on_chunk_complete(self) -> None:
        self._in_fields = False

    def on_body(self, body: bytes) -> None:
        """uvicorn's, without two of the body's copies: uvicorn appends every piece to a
        bytearray and `receive()` copies that into bytes; here a piece that arrives while
        nothing waits is handed over as it is (`bytes()` of a bytes object is that object),
        and only pieces that pile up before the app reads are joined."""
        self._in_fields = False
        if self._body is not None:
            self._into_slab_body(body)
            return
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        if cycle.body:
            cycle.body += body
        else:
            cycle.body = body  # type: ignore[assignment]  # read back with bytes(): no copy
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def _into_slab_body(self, body: bytes) -> None:
        """The start of a slab body, parsed in the read that ended its head: copied in."""
        data = memoryview(body)
        while data:
            if self._slab_view is None:
                self._slab = self._pool.take()
                self._slab_view = memoryview(self._slab)
            count = min(len(data), len(self._slab_view) - self._slab_filled)
            self._slab_view[self._slab_filled:self._slab_filled + count] = data[:count]
            self._slab_filled += count
            self._body_left -= count
            data = data[count:]
            if self._slab_filled == len(self._slab_view):
                self._hand_over()

    def on_message_complete(self) -> None:
        self._in_fields = False
        self._idle = True
        if self._body is not None:
            self._hand_over()
            self._body = None
            self._body_left = 0
        super().on_message_complete()

    # Refusing

    def _refuse(self, exc: Refused) -> None:
        self._refused = True
        self._unset_keepalive_if_required()
        client = "{}:{}".format(*self.client) if self.client else "a client"
        self.logger.warning("Refused a request from %s: %s", client, exc.message)
        response = refusal(exc.status, exc.message, self.server_state.default_headers)
        cycle = self.cycle
        if cycle is not None and cycle.more_body:
            # Trailers of a request whose app runs or waits: it reads a disconnect, its answer
            # goes nowhere, and ours goes out if nothing else has started.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started or self.pipeline:
                self.transport.close()
            else:
                self._write_refusal(response)
        elif self.pipeline or (cycle is not None and not cycle.response_complete):
            self._pending = response  # answer in order, after the requests before it
        else:
            self._write_refusal(response)

    def on_response_complete(self) -> None:
        if self._pending is None or self.pipeline or self.transport.is_closing():
            super().on_response_complete()
            return
        self.server_state.total_requests += 1
        response, self._pending = self._pending, None
        self.flow.resume_reading()
        self._write_refusal(response)

    def _write_refusal(self, response: bytes) -> None:
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._discarded = 0
        self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _discard(self, size: int) -> None:
        if self._discarded >= 0:
            self._discarded += size
            if self._discarded > LINGER_BYTES:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        self._body = None
        self._body_left = 0
        self._slab = self._slab_view = None
        super().connection_lost(exc)


class BufferedHttp(asyncio.BufferedProtocol):
    """What the event loop sees of a `LimitedHttpToolsProtocol`: its reading into buffers of
    its own (`get_buffer`, `buffer_updated`). uvloop reads into a protocol's buffers only if
    the protocol is not an `asyncio.Protocol`, and uvicorn's protocols are. Used bare, the
    protocol gets `data_received` calls instead: the same results, with the copies this saves
    (uvloop's bytes of each read, httptools' of each body piece, then into a slab)."""

    protocol_class: ClassVar[type[LimitedHttpToolsProtocol]] = LimitedHttpToolsProtocol

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.protocol = self.protocol_class(config, server_state, app_state, _loop)
        # The loop looks these up once per connection: no call in between per read.
        self.get_buffer = self.protocol.get_buffer  # type: ignore[method-assign]
        self.buffer_updated = self.protocol.buffer_updated  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.protocol.connection_made(transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.connection_lost(exc)

    def eof_received(self) -> None:
        self.protocol.eof_received()

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()
