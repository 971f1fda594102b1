"""The gateway's HTTP/1.1 client for the hop to instances.

The hop is one narrow case of HTTP: requests that the gateway has already checked, sent
to instances that Berth runs, over connections kept open for the next request. This
client covers that case and nothing more, on asyncio protocols with httptools (the
parser that uvicorn uses). A general client spends most of its time per request on what
the hop never needs: cookie jars, redirects, URL parsing, per-request tasks and stream
wrappers. See docs/benchmarks.md for what each client cost per request.

A response is read in one of two ways. A complete response (anything but a stream) is
collected by the protocol and handed over whole, and its connection goes back to the
pool before the gateway's coroutine resumes. A server-sent event stream is handed over
when its headers arrive, and its body is read chunk by chunk, with reading paused while
the caller is slower than the instance.

Instances on the same machine also listen on a Unix socket, which the pool uses for new
connections when it can reach it, and TCP otherwise.
"""

import asyncio
import logging
import socket
import time
from collections import deque

import httptools

logger = logging.getLogger(__name__)

# Idle connections older than this are closed instead of reused.
DEFAULT_KEEPALIVE_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
# A stream stops reading from its instance while this much is waiting for the caller.
STREAM_HIGH_WATER = 256 * 1024
# Unix sockets remembered as unreachable before the list starts again.
_MAX_TCP_ONLY = 1024
# The read timeout is checked this often at most, and 4 times per timeout when shorter,
# so a silent instance is given up between 1 and 1.25 timeouts after its last data.
MAX_SWEEP_INTERVAL_S = 1.0
_EVENT_STREAM = b"text/event-stream"


class UpstreamUnreachable(Exception):
    """No connection could be set up, so nothing was sent: another instance may try."""


class UpstreamError(Exception):
    """The connection broke or the instance sent malformed HTTP after the request went out."""


class ClosedBeforeResponse(UpstreamError):
    """The instance reset the connection with the request unread, before any byte of the
    response."""


class UpstreamResponse:
    """An instance's response. `body` is complete unless `streaming` is true."""

    __slots__ = ("status", "headers", "body", "streaming", "done", "_connection")

    def __init__(self, connection: "_Connection", status: int, headers: dict[bytes, bytes]):
        self._connection = connection
        self.status = status
        # Header names in lower case; a repeated header keeps its last value.
        self.headers = headers
        self.body = b""
        self.streaming = headers.get(b"content-type", b"").startswith(_EVENT_STREAM)
        # True once the whole response was read and its connection left it.
        self.done = False

    async def chunks(self):  # type: ignore[no-untyped-def]
        """Yield a stream's body as it arrives; raise UpstreamError if it breaks off."""
        connection = self._connection
        while True:
            chunk = await connection.next_chunk()
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        """Drop the connection if this response was not read to its end."""
        if not self.done:
            self._connection.abort()


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an instance and the response being read on it."""

    def __init__(self, pool: "UpstreamPool", address: str) -> None:
        self._pool = pool
        self.address = address
        self._loop = pool.loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        # State of the response being read.
        self._busy = False
        self._headers: dict[bytes, bytes] = {}
        self._response: UpstreamResponse | None = None
        self._body: list[bytes] = []
        self._head_waiter: asyncio.Future[UpstreamResponse] | None = None
        self._stream_waiter: asyncio.Future[None] | None = None
        self._stream_buffer: deque[bytes] = deque()
        self._stream_buffered = 0
        self._stream_done = False
        self._failure: BaseException | None = None
        self._keep_after_stream = False
        self._paused = False
        # Read timeout: the time of the last data, which the pool's sweep checks.
        self._read_timeout_s = pool.read_timeout_s
        self._last_read = 0.0
        # True once any byte of the current response arrived.
        self._response_started = False

    # Sending -------------------------------------------------------------------------

    def send(self, request: bytes) -> "asyncio.Future[UpstreamResponse]":
        self._busy = True
        self._headers = {}
        self._response = None
        self._body = []
        self._stream_buffer.clear()
        self._stream_buffered = 0
        self._stream_done = False
        self._failure = None
        self._response_started = False
        self._head_waiter = self._loop.create_future()
        self._last_read = self._loop.time()
        if self._read_timeout_s is not None:
            self._pool.watch(self)
        assert self._transport is not None
        self._transport.write(request)
        return self._head_waiter

    # asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self._busy:
            # An instance sends nothing between responses, so the connection is broken.
            self.abort()
            return
        self._last_read = self._loop.time()
        self._response_started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the instance sent malformed HTTP: {exc}"))
            self.abort()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._busy:
            reason = f": {exc}" if exc else ""
            # A reset or a broken pipe means the instance closed the socket with the request
            # still unread, as when it dies while the connection is idle. A plain close
            # may come from an instance that read the request and crashed on it, so that
            # request is not sent again, where it could crash a second instance.
            unread = isinstance(exc, (ConnectionResetError, BrokenPipeError))
            failure = (
                ClosedBeforeResponse if unread and not self._response_started else UpstreamError
            )
            self._fail(failure(f"the instance closed the connection{reason}"))

    def pause_writing(self) -> None:
        # Request bodies are capped by the gateway's body limit; the transport buffers them.
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        response = UpstreamResponse(self, self._parser.get_status_code(), self._headers)
        self._response = response
        if response.streaming:
            self._resolve_head(response)

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None and response.streaming:
            self._stream_buffer.append(body)
            self._stream_buffered += len(body)
            if self._stream_buffered > STREAM_HIGH_WATER and not self._paused:
                self._paused = True
                assert self._transport is not None
                self._transport.pause_reading()
            self._wake_stream()
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        response = self._response
        assert response is not None
        self._busy = False
        self._pool.unwatch(self)
        keep = self._parser.should_keep_alive()
        if response.streaming:
            self._stream_done = True
            self._wake_stream()
            # Returned to the pool once the reader has taken the rest (next_chunk).
            self._keep_after_stream = keep
            return
        response.body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        response.done = True
        self._response = None
        self._body = []
        self._release(keep)
        self._resolve_head(response)

    # Reading a stream ----------------------------------------------------------------

    async def next_chunk(self) -> bytes | None:
        while True:
            if self._stream_buffer:
                chunk = (
                    self._stream_buffer.popleft()
                    if len(self._stream_buffer) == 1
                    else b"".join(self._stream_buffer)
                )
                self._stream_buffer.clear()
                self._stream_buffered = 0
                if self._paused and not self.closed:
                    self._paused = False
                    assert self._transport is not None
                    self._transport.resume_reading()
                return chunk
            if self._stream_done:
                response = self._response
                if response is not None:
                    response.done = True
                    self._response = None
                    self._release(self._keep_after_stream)
                return None
            if self._failure is not None:
                raise self._failure
            self._stream_waiter = self._loop.create_future()
            try:
                await self._stream_waiter
            finally:
                self._stream_waiter = None

    def _wake_stream(self) -> None:
        waiter = self._stream_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Endings ---------------------------------------------------------------------------

    def _resolve_head(self, response: UpstreamResponse) -> None:
        waiter = self._head_waiter
        self._head_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, failure: BaseException) -> None:
        self._busy = False
        self._pool.unwatch(self)
        self._failure = failure
        waiter = self._head_waiter
        self._head_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)
        self._wake_stream()

    def check_read_timeout(self, now: float) -> None:
        """Fail the response if the instance has sent nothing for the read timeout."""
        if not self._busy or self._read_timeout_s is None:
            return
        if self._paused or now < self._last_read + self._read_timeout_s:
            # Data came in time, or the caller is the slow side.
            return
        self._fail(TimeoutError(f"no data from the instance for {self._read_timeout_s:g} s"))
        self.abort()

    def _release(self, keep_alive: bool) -> None:
        if keep_alive and not self.closed:
            self._pool.put_back(self)
        else:
            self.abort()

    def abort(self) -> None:
        self._pool.unwatch(self)
        if not self.closed:
            self.closed = True
            self._pool.forget(self)
            if self._transport is not None:
                self._transport.abort()


class UpstreamPool:
    """Keep-alive connections to instances, by address, and the requests sent on them."""

    def __init__(
        self,
        *,
        read_timeout_s: float | None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        keepalive_s: float = DEFAULT_KEEPALIVE_S,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.read_timeout_s = read_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._keepalive_s = keepalive_s
        # Idle connections per address, most recently used last.
        self._idle: dict[str, list[_Connection]] = {}
        self._all: set[_Connection] = set()
        # Unix sockets that could not be reached from this process: TCP from then on.
        self._tcp_only: set[str] = set()
        # Connections waiting for response data, and the one timer that checks their
        # read timeout. A timer per response cost about 2.5 us of each request's CPU.
        self._waiting: set[_Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_interval_s = (
            min(MAX_SWEEP_INTERVAL_S, read_timeout_s / 4) if read_timeout_s is not None else 0.0
        )

    def watch(self, connection: _Connection) -> None:
        """Check `connection`'s read timeout until its response ends (see `unwatch`)."""
        self._waiting.add(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self._sweep_interval_s, self._check_waiting)

    def unwatch(self, connection: _Connection) -> None:
        self._waiting.discard(connection)

    def _check_waiting(self) -> None:
        self._sweep = None
        now = self.loop.time()
        for connection in list(self._waiting):
            connection.check_read_timeout(now)
        if self._waiting:
            self._sweep = self.loop.call_later(self._sweep_interval_s, self._check_waiting)

    async def request(
        self,
        method: str,
        address: str,
        path: str,
        body: bytes | None = None,
        local_socket: str = "",
    ) -> UpstreamResponse:
        """Send one request and return the response, complete unless it is a stream.

        `address` is the instance's "host:port". New connections go to `local_socket`
        instead when it is set and reachable from here (see `_connect`).

        A reused keep-alive connection that the instance reset before any byte of the
        response arrived was closed with the request unread, as when the instance died
        while the connection was idle. The request is then sent once more on a new
        connection. When that connection cannot be made, the caller gets
        UpstreamUnreachable and may try another instance.

        Raises UpstreamUnreachable when no connection could be made, UpstreamError when
        the connection broke after sending, and TimeoutError when the instance went
        silent for longer than the read timeout.
        """
        if body is None:
            request = f"{method} /{path} HTTP/1.1\r\nhost: {address}\r\n\r\n".encode()
        else:
            request = (
                f"{method} /{path} HTTP/1.1\r\nhost: {address}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            ).encode() + body
        idle = self._take_idle(address)
        if idle is None:
            return await self._send(await self._connect(address, local_socket), request)
        try:
            return await self._send(idle, request)
        except ClosedBeforeResponse as exc:
            logger.info(
                "the instance at %s reset an idle connection with the request unread (%s); "
                "sending the request again on a new connection",
                address,
                exc,
            )
        return await self._send(await self._connect(address, local_socket), request)

    async def _send(self, connection: _Connection, request: bytes) -> UpstreamResponse:
        waiter = connection.send(request)
        try:
            return await waiter
        except asyncio.CancelledError:
            # The response will not be read. A complete one has already freed its
            # connection, which may carry another request by now.
            if not waiter.done() or waiter.cancelled():
                connection.abort()
            elif waiter.exception() is None:
                waiter.result().close()
            raise

    def _take_idle(self, address: str) -> _Connection | None:
        idle = self._idle.get(address)
        if not idle:
            return None
        oldest_kept = time.monotonic() - self._keepalive_s
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            if connection.idle_since < oldest_kept:
                # The rest of the list is older still.
                connection.abort()
                for stale in idle:
                    stale.abort()
                idle.clear()
                return None
            return connection
        return None

    async def _connect(self, address: str, local_socket: str = "") -> _Connection:
        connection = _Connection(self, address)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if not (local_socket and await self._connect_local(connection, local_socket)):
                    host, _, port = address.rpartition(":")
                    await self.loop.create_connection(lambda: connection, host, int(port))
        except (OSError, TimeoutError) as exc:
            raise UpstreamUnreachable(f"{address}: {exc or type(exc).__name__}") from exc
        self._all.add(connection)
        return connection

    async def _connect_local(self, connection: _Connection, local_socket: str) -> bool:
        """Connect over the instance's Unix socket; False if this process cannot reach it.

        The hop costs less CPU per request over a Unix socket than over TCP on loopback
        (docs/benchmarks.md). A gateway in another network namespace or on another
        machine does not see the instance's abstract socket, and falls back to TCP.
        """
        if local_socket in self._tcp_only:
            return False
        name = "\0" + local_socket[1:] if local_socket.startswith("@") else local_socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await self.loop.sock_connect(sock, name)
        except OSError as exc:
            sock.close()
            logger.info(
                "cannot reach the Unix socket %s of the instance at %s (%s); using TCP",
                local_socket,
                connection.address,
                exc,
            )
            if len(self._tcp_only) >= _MAX_TCP_ONLY:
                self._tcp_only.clear()
            self._tcp_only.add(local_socket)
            return False
        except BaseException:
            sock.close()
            raise
        # uvloop takes a connected socket, but not an abstract name as a path.
        await self.loop.create_unix_connection(lambda: connection, sock=sock)
        return True

    def put_back(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.address, []).append(connection)

    def forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        idle = self._idle.get(connection.address)
        if idle and connection in idle:
            idle.remove(connection)
            if not idle:
                del self._idle[connection.address]

    def close(self) -> None:
        for connection in list(self._all):
            connection.abort()
        self._idle.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
