"""The load generator: a separate process that sends HTTP/1.1 requests and times them.

Run as `python -m bench.loadgen`, it reads one JSON job per line on stdin and writes
one JSON result per line on stdout, so a benchmark keeps one generator for all its
rounds. `LoadGenerator` is the benchmark side of that pipe.

The client is a minimal asyncio protocol (with uvloop when installed) over keep-alive
connections, one per simulated user. It sends a prebuilt request and parses only the
status line, the framing headers and the body framing (Content-Length or chunked), so
its cost per request stays well below that of the Python servers it measures.
`python -m bench.loadgen --serve PORT` starts a fixed-response server against which the
generator's own ceiling is measured.

Load is closed-loop: each user sends its next request when the response to the previous
one has arrived. A job ends after `requests` requests in total or after `max_seconds`,
whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.child import JsonLineChild

# Responses larger than this are counted but not kept.
MAX_KEPT_BODY_BYTES = 1 << 20


@dataclass
class Job:
    """One measurement: `requests` requests at `concurrency`, bounded by `max_seconds`."""

    url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    concurrency: int = 1
    requests: int = 100
    max_seconds: float = 30.0
    # Requests sent first on every connection and left out of the figures.
    warmup: int = 0
    # A response counts as successful when its status is this and its body contains
    # `expect_text` (if set).
    expect_status: int = 200
    expect_text: str = ""


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def summarize_ms(values_s: list[float]) -> dict[str, float]:
    """Return p50, p90, p99, mean and max of durations in seconds, in milliseconds."""
    ordered = sorted(values_s)
    if not ordered:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "mean": 0.0}
    return {
        "p50": _percentile(ordered, 0.50) * 1000,
        "p90": _percentile(ordered, 0.90) * 1000,
        "p99": _percentile(ordered, 0.99) * 1000,
        "mean": sum(ordered) / len(ordered) * 1000,
        "max": ordered[-1] * 1000,
    }


# --- client -------------------------------------------------------------------------


class _Reply:
    __slots__ = ("status", "first_byte_at", "done_at", "body")

    def __init__(self, status: int, first_byte_at: float, done_at: float, body: bytes) -> None:
        self.status = status
        self.first_byte_at = first_byte_at
        self.done_at = done_at
        self.body = body


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Reply] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reset()

    def _reset(self) -> None:
        self._in_body = False
        self._status = 0
        self._content_length = -1
        self._chunked = False
        self._body = bytearray()
        self._first_byte_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection closed: {exc}"))
        if not self._closed.done():
            self._closed.set_result(None)

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing() or self._closed.done()

    def send(self, payload: bytes) -> asyncio.Future[_Reply]:
        assert self.transport is not None
        self._reset()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._parse()
        except ValueError as error:
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(error)
            assert self.transport is not None
            self.transport.close()

    def _parse(self) -> None:
        if not self._in_body:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            del self._buffer[: end + 4]
            self._status = int(head[0].split(" ", 2)[1])
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self._content_length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self._chunked = True
            if not self._chunked and self._content_length < 0:
                raise ValueError("response has neither Content-Length nor chunked framing")
            self._in_body = True

        now = time.perf_counter()
        if self._chunked:
            self._parse_chunks(now)
            return
        if self._buffer and not self._first_byte_at:
            self._first_byte_at = now
        if len(self._buffer) >= self._content_length:
            body = bytes(self._buffer[: self._content_length])
            del self._buffer[: self._content_length]
            self._finish(body, now)

    def _parse_chunks(self, now: float) -> None:
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self._buffer[:line_end]).split(b";", 1)[0], 16)
            if len(self._buffer) < line_end + 2 + size + 2:
                return
            chunk = self._buffer[line_end + 2 : line_end + 2 + size]
            del self._buffer[: line_end + 2 + size + 2]
            if size == 0:
                self._finish(bytes(self._body), now)
                return
            if not self._first_byte_at:
                self._first_byte_at = now
            if len(self._body) < MAX_KEPT_BODY_BYTES:
                self._body += chunk

    def _finish(self, body: bytes, now: float) -> None:
        first_byte_at = self._first_byte_at or now
        waiter = self._waiter
        self._waiter = None
        self._in_body = False
        if waiter is not None and not waiter.done():
            waiter.set_result(_Reply(self._status, first_byte_at, now, body))

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            await self._closed


def _request_bytes(job: Job) -> tuple[str, int, bytes]:
    """Return the host, the port and the raw request of `job`."""
    if not job.url.startswith("http://"):
        raise ValueError(f"only http:// URLs are supported, got {job.url!r}")
    rest = job.url.removeprefix("http://")
    authority, _, path = rest.partition("/")
    host, _, port_text = authority.partition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"the load generator only targets 127.0.0.1, got host {host!r}")
    port = int(port_text or "80")
    body = job.body.encode("utf-8")
    lines = [f"{job.method} /{path} HTTP/1.1", f"Host: {authority}"]
    for name, value in job.headers.items():
        lines.append(f"{name}: {value}")
    if job.method != "GET" or body:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return "127.0.0.1", port, head + body


async def run_job(job: Job) -> dict[str, Any]:
    """Run `job` and return its figures; latencies are in milliseconds."""
    host, port, payload = _request_bytes(job)
    expect_text = job.expect_text.encode("utf-8")
    loop = asyncio.get_running_loop()
    remaining = job.requests
    latencies: list[float] = []
    ttfbs: list[float] = []
    outcomes: Counter[str] = Counter()
    deadline = 0.0

    async def connect() -> _Connection:
        _transport, connection = await loop.create_connection(_Connection, host, port)
        return connection

    async def user() -> None:
        nonlocal remaining
        connection = await connect()
        try:
            for _ in range(job.warmup):
                await connection.send(payload)
            ready.append(None)
            await start.wait()
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                if connection.closing:
                    # The server closed the idle connection (its keep-alive timeout ran
                    # out while other users warmed up); open a new one, as clients do.
                    connection = await connect()
                sent_at = time.perf_counter()
                try:
                    reply = await connection.send(payload)
                except (ConnectionError, ValueError) as error:
                    outcomes[f"failed: {type(error).__name__}"] += 1
                    return
                if reply.status != job.expect_status:
                    outcomes[f"status {reply.status}"] += 1
                    continue
                if expect_text and expect_text not in reply.body:
                    outcomes["unexpected body"] += 1
                    continue
                outcomes["ok"] += 1
                latencies.append(reply.done_at - sent_at)
                ttfbs.append(reply.first_byte_at - sent_at)
        finally:
            await connection.close()

    start = asyncio.Event()
    ready: list[None] = []
    tasks = [asyncio.create_task(user()) for _ in range(job.concurrency)]
    # Let every user connect and warm up before the clock starts.
    while len(ready) < job.concurrency and not any(task.done() for task in tasks):
        await asyncio.sleep(0.005)
    cpu_before = _cpu_seconds()
    started_at = time.perf_counter()
    deadline = started_at + job.max_seconds
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - started_at
    cpu_used = _cpu_seconds() - cpu_before
    for result in results:
        if isinstance(result, BaseException):
            outcomes[f"failed: {type(result).__name__}: {result}"] += 1

    ok = outcomes.get("ok", 0)
    return {
        "requests": sum(outcomes.values()),
        "ok": ok,
        "outcomes": dict(outcomes),
        "elapsed_s": elapsed,
        "throughput_rps": ok / elapsed if elapsed > 0 else 0.0,
        "latency_ms": summarize_ms(latencies),
        "ttfb_ms": summarize_ms(ttfbs),
        # CPU time of this generator process during the timed part; near 1 core-second
        # per second means the generator itself may be the bottleneck.
        "generator_cpu_s": cpu_used,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- fixed-response server, for the generator's own ceiling ------------------------


class _FixedResponseServer(asyncio.Protocol):
    RESPONSE = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n"
        b'{"ok":true}'
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(self.RESPONSE)  # type: ignore[attr-defined]


async def _serve_fixed(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_FixedResponseServer, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# --- process entry points -----------------------------------------------------------


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve_jobs() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        try:
            result = await run_job(Job(**json.loads(line)))
        except Exception as error:  # reported to the benchmark, which raises it
            result = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument(
        "--serve", type=int, metavar="PORT", help="run the fixed-response server on PORT"
    )
    args = parser.parse_args(argv)
    _install_uvloop()
    if args.serve is not None:
        asyncio.run(_serve_fixed(args.serve))
    else:
        asyncio.run(_serve_jobs())


class LoadGenerator(JsonLineChild):
    """The benchmark's handle on one `python -m bench.loadgen` process."""

    def __init__(self) -> None:
        super().__init__("bench.loadgen")

    def run(self, job: Job) -> dict[str, Any]:
        """Run `job` in the generator process; raises RuntimeError if it failed."""
        return self.request(asdict(job), f"load job against {job.url}")


if __name__ == "__main__":
    main()
