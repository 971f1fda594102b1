"""Slow, oversized and malformed requests are refused, and their connections closed.

A real `berth up` runs with a head deadline of 1 s, a head limit of 4 KiB and a body
pause limit of 1 s, and raw sockets play the slow, greedy or broken clients.
"""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.support import BerthServer

HEAD_TIMEOUT_S = 1.0
MAX_HEAD_BYTES = 4096
BODY_TIMEOUT_S = 1.0
# Generous: the server checks deadlines once per half deadline.
CLOSE_WITHIN_S = HEAD_TIMEOUT_S + 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    home: Path = tmp_path_factory.mktemp("heads") / "home"
    server = BerthServer(
        home,
        BERTH_HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S),
        BERTH_MAX_HEADER_BYTES=str(MAX_HEAD_BYTES),
        BERTH_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    ).start()
    yield server
    server.stop()


def _connect(server: BerthServer) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=CLOSE_WITHIN_S)
    return connection


def _read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails if it keeps the connection."""
    received = b""
    deadline = time.monotonic() + CLOSE_WITHIN_S
    while time.monotonic() < deadline:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open; received {received!r}")


def _send_and_read(server: BerthServer, data: bytes) -> bytes:
    """Send `data` on a new connection and return all the server sends until it closes."""
    with _connect(server) as connection:
        connection.sendall(data)
        return _read_until_closed(connection)


def _error(response: bytes) -> dict[str, object]:
    _head, _, body = response.partition(b"\r\n\r\n")
    error: dict[str, object] = orjson.loads(body)["error"]
    return error


def test_silent_connection_is_closed(server: BerthServer) -> None:
    with _connect(server) as connection:
        assert _read_until_closed(connection) == b""


def test_partial_head_gets_408(server: BerthServer) -> None:
    response = _send_and_read(
        server, b"POST /endpoints/abc/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    )

    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert _error(response)["code"] == "request_timeout"


def test_trickled_head_keeps_its_deadline(server: BerthServer) -> None:
    stop = threading.Event()
    with _connect(server) as connection:
        connection.sendall(b"GET /api/v1/health HTTP/1.1\r\n")

        def trickle() -> None:
            # One header byte every 100 ms, far longer than the deadline in total.
            for _ in range(200):
                if stop.wait(0.1):
                    return
                try:
                    connection.sendall(b"x")
                except OSError:
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            started = time.monotonic()
            response = _read_until_closed(connection)
            took = time.monotonic() - started
        finally:
            stop.set()
            sender.join()

    assert response.startswith(b"HTTP/1.1 408 ")
    assert took < CLOSE_WITHIN_S


def test_head_over_the_size_limit_gets_431(server: BerthServer) -> None:
    with _connect(server) as connection:
        connection.sendall(
            b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Padding: "
            + b"a" * (2 * MAX_HEAD_BYTES)
            + b"\r\n\r\n"
        )
        response = _read_until_closed(connection)

    assert response.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    error = _error(response)
    assert error["code"] == "request_header_fields_too_large"
    assert "BERTH_MAX_HEADER_BYTES" in str(error["message"])


def _get_health(connection: socket.socket) -> bytes:
    connection.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    response = b""
    while b"}" not in response:
        chunk = connection.recv(65536)
        assert chunk, f"the server closed the connection; received {response!r}"
        response += chunk
    return response


def test_idle_time_between_requests_does_not_count(server: BerthServer) -> None:
    with _connect(server) as connection:
        assert _get_health(connection).startswith(b"HTTP/1.1 200 ")
        # Idle for twice the head deadline, well within uvicorn's keep-alive timeout.
        time.sleep(2 * HEAD_TIMEOUT_S)
        assert _get_health(connection).startswith(b"HTTP/1.1 200 ")


def test_stalled_body_gets_408(server: BerthServer) -> None:
    with _connect(server) as connection:
        # The API reads the body before it checks anything else, so it waits for it.
        connection.sendall(
            b"POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"name"'
        )
        response = _read_until_closed(connection)

    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    error = _error(response)
    assert error["code"] == "request_timeout"
    assert "body" in str(error["message"])


def test_malformed_request_gets_json_400(server: BerthServer) -> None:
    response = _send_and_read(server, b"NOT HTTP AT ALL\r\n\r\n")

    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert _error(response)["code"] == "invalid_http_request"
