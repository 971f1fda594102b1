"""The gateway's HTTP/1.1 client for the hop to instances, against scripted servers on
127.0.0.1: keep-alive reuse, streams read in pieces, timeouts, and instances that close
connections, send malformed HTTP or are not there at all, over TCP and Unix sockets.
"""

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from berth.gateway.upstream import (
    STREAM_HIGH_WATER,
    UpstreamError,
    UpstreamPool,
    UpstreamUnreachable,
)
from tests.support import read_http_request, wait_until_async

pytestmark = pytest.mark.anyio

Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class ScriptedServer:
    """A server that passes each request to `handler`, which writes the response and
    returns whether the connection stays open. It counts connections and requests."""

    handler: Handler
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    address: str = ""
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start_local(self, name: str) -> None:
        """Listen on the abstract Unix socket `name` ("@..."), as instances do, instead."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind("\0" + name[1:])
        self.server = await asyncio.start_unix_server(self._serve, sock=listener)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                request = await read_http_request(reader)
                self.requests.append(request)
                if not await self.handler(request, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def _json_ok(
    request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    body = b'{"echo": "%d"}' % len(request)
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nretry-after: 7\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    return True


def _closed_port_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[ScriptedServer]]]:
    servers: list[ScriptedServer] = []

    async def start(handler: Handler) -> ScriptedServer:
        server = ScriptedServer(handler)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    upstreams = UpstreamPool(read_timeout_s=5.0, connect_timeout_s=2.0)
    yield upstreams
    upstreams.close()


async def test_complete_response_and_reuse(serve, pool: UpstreamPool) -> None:
    server = await serve(_json_ok)
    for _ in range(3):
        response = await pool.request("POST", server.address, "v1/embeddings", b'{"a": 1}')
        assert response.status == 200
        assert not response.streaming
        assert response.done
        assert response.body.startswith(b'{"echo": ')
        assert response.headers[b"content-type"] == b"application/json"
        assert response.headers[b"retry-after"] == b"7"
    # All three requests travelled on one kept-alive connection.
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/embeddings HTTP/1.1\r\n")
    assert b"content-type: application/json\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a": 1}')


async def test_get_sends_no_body(serve, pool: UpstreamPool) -> None:
    server = await serve(_json_ok)
    response = await pool.request("GET", server.address, "v1/models")
    assert response.status == 200
    assert server.requests == [
        f"GET /v1/models HTTP/1.1\r\nhost: {server.address}\r\n\r\n".encode()
    ]


async def test_concurrent_requests_open_separate_connections(serve, pool: UpstreamPool) -> None:
    release = asyncio.Event()

    async def slow(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        await release.wait()
        return await _json_ok(request, reader, writer)

    server = await serve(slow)
    pending = [
        asyncio.ensure_future(pool.request("POST", server.address, "predict", b"{}"))
        for _ in range(3)
    ]
    await wait_until_async(lambda: len(server.requests) == 3)
    release.set()
    responses = await asyncio.gather(*pending)
    assert [response.status for response in responses] == [200, 200, 200]
    assert server.connections == 3


async def test_chunked_stream_arrives_in_pieces(serve, pool: UpstreamPool) -> None:
    next_event = asyncio.Event()

    async def stream(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for index in range(3):
            event = b"data: %d\n\n" % index
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await next_event.wait()
            next_event.clear()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    server = await serve(stream)
    response = await pool.request("POST", server.address, "v1/completions", b"{}")
    assert response.streaming
    assert response.headers[b"content-type"].startswith(b"text/event-stream")
    received = []
    async for chunk in response.chunks():
        # Each event arrives before the server sends the next one.
        received.append(chunk)
        next_event.set()
    assert received == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    assert response.done
    # The connection went back to the pool once the stream was read to its end.
    again = await pool.request("POST", server.address, "v1/embeddings", b"{}")
    assert again.status == 200
    assert server.connections == 1


async def test_slow_reader_pauses_the_instance(serve, pool: UpstreamPool) -> None:
    """A stream is not buffered without bound when the caller reads slower than it arrives."""
    sent = 0
    blocked = asyncio.Event()
    piece = b"data: " + b"x" * 65_530 + b"\n\n"
    # 32 MiB: more than the kernel's socket buffers on both sides can hold.
    total_pieces = 512

    async def flood(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        nonlocal sent
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"content-length: %d\r\n\r\n" % (len(piece) * total_pieces)
        )
        for _ in range(total_pieces):
            writer.write(piece)
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except TimeoutError:
                blocked.set()
                await writer.drain()
            sent += 1
        return True

    server = await serve(flood)
    response = await pool.request("POST", server.address, "v1/completions", b"{}")
    # No caller reads, so the server must block well before sending everything.
    await asyncio.wait_for(blocked.wait(), 10)
    assert sent < total_pieces
    size = 0
    async for chunk in response.chunks():
        size += len(chunk)
        # At most the high-water mark plus one read of the event loop (256 KiB).
        assert len(chunk) <= STREAM_HIGH_WATER + 256 * 1024
    assert size == len(piece) * total_pieces
    assert server.connections == 1


async def test_refused_connection_is_unreachable(pool: UpstreamPool) -> None:
    address = _closed_port_address()
    with pytest.raises(UpstreamUnreachable, match=address):
        await pool.request("POST", address, "predict", b"{}")


async def test_local_socket_carries_requests(pool: UpstreamPool) -> None:
    name = f"@berth-test-{uuid.uuid4()}"
    server = ScriptedServer(_json_ok)
    await server.start_local(name)
    try:
        # Nothing listens on the TCP address, so only the Unix socket can serve the request.
        address = _closed_port_address()
        for _ in range(2):
            response = await pool.request("POST", address, "predict", b"{}", name)
            assert response.status == 200
    finally:
        await server.stop()

    assert len(server.requests) == 2
    assert server.connections == 1


async def test_unreachable_local_socket_falls_back_to_tcp(serve, pool: UpstreamPool) -> None:
    server = await serve(_json_ok)
    name = f"@berth-test-{uuid.uuid4()}"

    first = await pool.request("POST", server.address, "predict", b"{}", name)
    # A server appears on the name later: the pool keeps to TCP for it, so a gateway
    # that cannot see an instance's socket does not try it on every new connection.
    late = ScriptedServer(_json_ok)
    await late.start_local(name)
    try:
        both = await asyncio.gather(
            *(pool.request("POST", server.address, "predict", b"{}", name) for _ in range(2))
        )
    finally:
        await late.stop()

    assert [response.status for response in (first, *both)] == [200, 200, 200]
    assert server.connections == 2
    assert late.connections == 0


async def test_connection_closed_before_response(serve, pool: UpstreamPool) -> None:
    async def drop(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        return False

    server = await serve(drop)
    with pytest.raises(UpstreamError, match="closed the connection"):
        await pool.request("POST", server.address, "predict", b"{}")


async def test_malformed_response(serve, pool: UpstreamPool) -> None:
    async def garbage(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        return True

    server = await serve(garbage)
    with pytest.raises(UpstreamError, match="malformed HTTP"):
        await pool.request("POST", server.address, "predict", b"{}")


async def test_stream_broken_midway(serve, pool: UpstreamPool) -> None:
    async def half(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n9\r\ndata: 0\n\n\r\n"
        )
        await writer.drain()
        return False

    server = await serve(half)
    response = await pool.request("POST", server.address, "v1/completions", b"{}")
    received = []
    with pytest.raises(UpstreamError):
        async for chunk in response.chunks():
            received.append(chunk)
    assert received == [b"data: 0\n\n"]


async def test_silent_instance_times_out(serve) -> None:
    async def silent(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()
        return False

    server = await serve(silent)
    upstreams = UpstreamPool(read_timeout_s=0.2)
    try:
        with pytest.raises(TimeoutError, match="no data from the instance for 0.2 s"):
            await asyncio.wait_for(upstreams.request("POST", server.address, "predict", b"{}"), 10)
    finally:
        upstreams.close()


async def test_instance_closing_an_idle_connection(serve, pool: UpstreamPool) -> None:
    """An idle connection that the instance closed is not used for the next request."""
    writers: list[asyncio.StreamWriter] = []

    async def remember(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        writers.append(writer)
        return await _json_ok(request, reader, writer)

    server = await serve(remember)
    await pool.request("POST", server.address, "predict", b"{}")
    writers[0].close()
    await wait_until_async(lambda: not pool._idle)
    response = await pool.request("POST", server.address, "predict", b"{}")
    assert response.status == 200
    assert server.connections == 2


async def test_idle_connections_expire(serve) -> None:
    server = await serve(_json_ok)
    upstreams = UpstreamPool(read_timeout_s=5.0, keepalive_s=0.0)
    try:
        await upstreams.request("POST", server.address, "predict", b"{}")
        await upstreams.request("POST", server.address, "predict", b"{}")
    finally:
        upstreams.close()
    assert server.connections == 2


async def test_cancelled_request_closes_its_connection(serve, pool: UpstreamPool) -> None:
    """A caller that leaves while the instance works frees nothing for reuse mid-response."""
    answer = asyncio.Event()

    async def late(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        if len(server.requests) == 1:
            await answer.wait()
        return await _json_ok(request, reader, writer)

    server = await serve(late)
    waiting = asyncio.ensure_future(pool.request("POST", server.address, "predict", b"{}"))
    await wait_until_async(lambda: len(server.requests) == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    answer.set()
    response = await pool.request("POST", server.address, "predict", b"{}")
    assert response.status == 200
    assert server.connections == 2


async def test_abandoned_stream_closes_its_connection(serve, pool: UpstreamPool) -> None:
    async def endless(request: bytes, reader, writer) -> bool:  # type: ignore[no-untyped-def]
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        while True:
            writer.write(b"9\r\ndata: x\n\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    server = await serve(endless)
    response = await pool.request("POST", server.address, "v1/completions", b"{}")
    async for _ in response.chunks():
        break
    response.close()
    await wait_until_async(lambda: not pool._all)
