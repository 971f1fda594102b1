"""The HTTP/1.1 protocol of the Berth server: uvicorn's, with limits on slow requests.

uvicorn keeps a connection open for as long as its request head or body keeps
trickling in, and for ever when nothing arrives at all. Its httptools parser also takes
a head of any size. A few hundred such connections use up the server's file descriptors
and memory without a single complete request. `BerthHttpProtocol` sets these limits:

- A new connection must deliver a complete request head within `head_timeout_s`, and
  so must every later request on a kept-alive connection, counted from its first read.
  A connection that sent part of a head gets 408 and is closed; one that sent nothing
  is closed. (Between requests uvicorn's keep-alive timeout applies.)
- A head larger than `max_head_bytes` gets 431 and the connection is closed.
- A request body may pause for at most `body_timeout_s` between two reads, while the
  server is reading it. Then the request gets 408, or only a closed connection when its
  response has started.

Requests that are not valid HTTP/1.1 get uvicorn's 400, in the JSON error shape of the
rest of Berth.

With BERTH_CORS_ORIGINS set, the 408 and 431 responses to a request for a gateway path
carry the gateway's CORS headers, so that a browser app can read them. A 431, and a 408
for a slow head, are written before the head is complete, so they can only use the part
of the head that arrived: the path from the request line, and the Origin header if its
line arrived within the size limit. (httptools reports a header line only once the next
line begins, so a head cut off right after its Origin line counts as one without it.)
Without the Origin header, an allowed origin other than `*` gets no CORS headers.

One timer per server checks all connections once a second, so a request costs no timer
of its own. `protocol_class` makes the class that `uvicorn.Config(http=...)` takes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from berth.gateway.cors import CorsPolicy, Headers
from berth.gateway.proxy import PATH_PREFIX

_GATEWAY_PATH_PREFIX = PATH_PREFIX.encode()

# How often the server's timer looks for requests that took too long, at most.
SWEEP_INTERVAL_S = 1.0


def _error_response(
    status: int, reason: str, message: str, code: str, extra_headers: bytes = b""
) -> bytes:
    body = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n"
    )
    return head.encode("ascii") + extra_headers + b"\r\n" + body


def _timeout_response(message: str, extra_headers: bytes) -> bytes:
    return _error_response(408, "Request Timeout", message, "request_timeout", extra_headers)


# A header line of a request head: the name and the value without surrounding blanks.
_HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*\r?$")


def _read_partial_head(raw: bytes, *, starts_head: bool) -> tuple[bytes, Headers]:
    """Read the request target and the complete header lines from the start of a head.

    `raw` is the head, or the part of it that came after the bytes that the parser has
    read when `starts_head` is false. Its first line is then skipped, because it may be
    the end of a line whose start the parser has read, and no target is returned.
    The last line of `raw` is incomplete and is skipped too.
    """
    lines = raw.split(b"\n")[:-1]
    target = b""
    if starts_head and lines:
        parts = lines[0].split(b" ")
        target = parts[1] if len(parts) == 3 else b""
    headers = []
    for line in lines[1:]:
        match = _HEADER_LINE.match(line)
        if match:
            headers.append((match.group(1).lower(), match.group(2)))
    return target, headers


class _DeadlineSweeper:
    """Closes the connections of one server whose request head or body is overdue."""

    def __init__(self, state: ServerState, loop: asyncio.AbstractEventLoop) -> None:
        self._state = state
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def for_server(cls, state: ServerState, loop: asyncio.AbstractEventLoop) -> _DeadlineSweeper:
        sweeper: _DeadlineSweeper | None = getattr(state, "berth_deadline_sweeper", None)
        if sweeper is None:
            sweeper = cls(state, loop)
            state.berth_deadline_sweeper = sweeper  # type: ignore[attr-defined]
        return sweeper

    def start(self, interval_s: float) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(interval_s, self._sweep, interval_s)

    def _sweep(self, interval_s: float) -> None:
        self._timer = None
        now = self._loop.time()
        for connection in list(self._state.connections):
            if isinstance(connection, BerthHttpProtocol):
                connection.check_deadlines(now)
        if self._state.connections:
            self.start(interval_s)


class BerthHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on slow and oversized requests."""

    head_timeout_s: float = 30.0
    max_head_bytes: int = 64 * 1024
    body_timeout_s: float = 30.0
    # The gateway's CORS policy; None while BERTH_CORS_ORIGINS is empty.
    cors: CorsPolicy | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Loop time at which the awaited head began; None while no head is awaited or
        # before the first byte of a later request on the connection.
        self._head_started: float | None = None
        # Bytes of the awaited head received so far, when it is incomplete.
        self._head_bytes = 0
        # Loop time of the last read of a request body still being received, else None.
        self._body_read_at: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started = self.loop.time()
        interval = min(SWEEP_INTERVAL_S, self.head_timeout_s / 2, self.body_timeout_s / 2)
        _DeadlineSweeper.for_server(self.server_state, self.loop).start(interval)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            # These bytes start or continue the next request head. (Heads pipelined
            # behind a request in progress are measured only from the next read on.)
            if self._head_started is None:
                self._head_started = self.loop.time()
            end = data.find(b"\r\n\r\n")
            size = self._head_bytes + (len(data) if end < 0 else end + 4)
            if size > self.max_head_bytes:
                within_limit = data[: self.max_head_bytes - self._head_bytes]
                self._reject(
                    _error_response(
                        431,
                        "Request Header Fields Too Large",
                        f"the request head is larger than {self.max_head_bytes} bytes; "
                        "send fewer or shorter headers, or raise BERTH_MAX_HEADER_BYTES",
                        "request_header_fields_too_large",
                        self._cors_header_lines(unparsed=within_limit),
                    )
                )
                return
            self._head_bytes = size if end < 0 else 0
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head_started = None
        self._head_bytes = 0
        self._body_read_at = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_read_at = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_read_at = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own response to a request that httptools cannot parse is plain text.
        self._reject(
            _error_response(
                400,
                "Bad Request",
                "the request is not valid HTTP/1.1; check the request line, the headers "
                "and Content-Length",
                "invalid_http_request",
            )
        )

    def check_deadlines(self, now: float) -> None:
        """Close the connection if its request head or body is overdue. Called by the sweeper."""
        self._check_body_pause(now)
        started = self._head_started
        if started is None or now - started < self.head_timeout_s:
            return
        if self._head_bytes == 0:
            # Nothing of a request arrived: close without a response.
            self._head_started = None
            self.transport.close()
            return
        self._reject(
            _timeout_response(
                f"the request head did not arrive within {self.head_timeout_s:g} s; "
                "send the whole head at once",
                self._cors_header_lines(),
            )
        )

    def _check_body_pause(self, now: float) -> None:
        read_at = self._body_read_at
        if read_at is None:
            return
        if self.flow is not None and self.flow.read_paused:
            # The server stopped reading because the app has not taken the body yet:
            # the pause is not the client's.
            self._body_read_at = now
            return
        if now - read_at < self.body_timeout_s:
            return
        self._body_read_at = None
        if self.cycle is not None and self.cycle.response_started:
            # The response is on its way or sent; the rest of the body is not needed.
            self.transport.close()
            return
        self._reject(
            _timeout_response(
                f"the request body stalled: nothing arrived for {self.body_timeout_s:g} s; "
                "send the whole body without pauses",
                self._cors_header_lines(),
            )
        )

    def _cors_header_lines(self, unparsed: bytes | None = None) -> bytes:
        """Return the gateway's CORS header lines for an error response of this protocol,
        or b"" when CORS is off or the request is not for a gateway path.

        The target and the headers are those that the parser has read from the current
        request head, and those in `unparsed`, bytes of the head that it has not read.
        """
        cors = self.cors
        if cors is None:
            return b""
        target: bytes = getattr(self, "url", b"")
        headers: Headers = list(self.headers or [])
        if unparsed is not None:
            # The parser has read nothing of this head unless part of it came before.
            starts_head = self._head_bytes == 0
            unparsed_target, unparsed_headers = _read_partial_head(
                unparsed, starts_head=starts_head
            )
            if starts_head:
                target, headers = unparsed_target, []
            headers.extend(unparsed_headers)
        if not target.startswith(_GATEWAY_PATH_PREFIX):
            return b""
        lines = list(cors.common_headers)
        origin = cors.allowed_origin(headers)
        if origin is not None:
            lines.extend(cors.response_headers(origin))
        return b"".join(name + b": " + value + b"\r\n" for name, value in lines)

    def _reject(self, response: bytes) -> None:
        self._head_started = None
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


def protocol_class(
    head_timeout_s: float,
    max_head_bytes: int,
    body_timeout_s: float,
    cors_origins: Sequence[str] = (),
) -> type[BerthHttpProtocol]:
    """Return a BerthHttpProtocol subclass with these limits and the gateway's CORS
    origins (BERTH_CORS_ORIGINS), for `uvicorn.Config(http=...)`."""
    return type(
        "BerthHttpProtocol",
        (BerthHttpProtocol,),
        {
            "head_timeout_s": head_timeout_s,
            "max_head_bytes": max_head_bytes,
            "body_timeout_s": body_timeout_s,
            "cors": CorsPolicy(cors_origins) if cors_origins else None,
        },
    )
