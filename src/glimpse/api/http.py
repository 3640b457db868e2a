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
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from glimpse.api.errors import error_fields

#: After a refusal, how long and how much of the rest of the request is read and dropped.
LINGER_SECONDS = 2.0
LINGER_BYTES = 8 * 1024 * 1024
#: More than the longest "METHOD " llhttp knows ("VERSION-CONTROL "): a target at least this
#: much shorter than `max_request_line` needs no closer look.
_LONGEST_METHOD = 32
#: Leeway for a line still arriving: " HTTP/1.1", CR, optional whitespace around a value.
_SLACK = 64


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


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` enforcing `limits` (see the module docstring); `configured` makes a
    subclass with other limits, for `uvicorn.Config(http=...)`."""

    limits: ClassVar[HeadLimits] = HeadLimits()

    @classmethod
    def configured(cls, limits: HeadLimits) -> type[LimitedHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"limits": limits})

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

    # Reading

    def data_received(self, data: bytes) -> None:
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

    def _measure(self, data: bytes, continuing: bool, idle: bool) -> None:
        """After a read that ended inside a header section: the length of its unfinished line.
        Complete lines were checked exactly by the callbacks."""
        newline = data.rfind(b"\n")
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
        super().on_headers_complete()

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

    def on_message_complete(self) -> None:
        self._in_fields = False
        self._idle = True
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
        super().connection_lost(exc)
