"""The 408 and 431 responses that the HTTP layer writes carry the gateway's CORS headers.

A real `berth up` runs with BERTH_CORS_ORIGINS set, a head deadline of 1 s, a head limit
of 4 KiB and a body pause limit of 1 s. Raw sockets send heads that stop early or grow
too large, with and without the Origin header.
"""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.client import Client
from tests.faults.test_slow_requests import (
    BODY_TIMEOUT_S,
    HEAD_TIMEOUT_S,
    MAX_HEAD_BYTES,
    _connect,
    _read_until_closed,
    _send_and_read,
)
from tests.support import ADMIN_KEY, BerthServer

ORIGIN = b"https://app.example"
GATEWAY_PATH = b"/endpoints/00000000-0000-0000-0000-000000000000/v1/chat/completions"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    home: Path = tmp_path_factory.mktemp("cors-heads") / "home"
    server = BerthServer(
        home,
        BERTH_HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S),
        BERTH_MAX_HEADER_BYTES=str(MAX_HEAD_BYTES),
        BERTH_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        BERTH_CORS_ORIGINS=f"{ORIGIN.decode()}, https://other.example",
    ).start()
    yield server
    server.stop()


def _headers(response: bytes) -> dict[bytes, bytes]:
    head, _, _body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")[1:]
    return {
        name.lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines)
    }


def _oversized_head(path: bytes, origin: bytes | None) -> bytes:
    origin_line = b"Origin: " + origin + b"\r\n" if origin else b""
    return (
        b"POST "
        + path
        + b" HTTP/1.1\r\nHost: x\r\n"
        + origin_line
        + b"X-Padding: "
        + b"a" * (2 * MAX_HEAD_BYTES)
        + b"\r\n\r\n"
    )


def test_partial_gateway_head_gets_cors_408(server: BerthServer) -> None:
    # The parser reports a header line only once the next line begins, because a line
    # that starts with a blank would continue it.
    response = _send_and_read(
        server, b"POST " + GATEWAY_PATH + b" HTTP/1.1\r\nOrigin: " + ORIGIN + b"\r\nHost: x\r\n"
    )

    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    headers = _headers(response)
    assert headers[b"access-control-allow-origin"] == ORIGIN
    assert b"retry-after" in headers[b"access-control-expose-headers"]
    assert headers[b"vary"] == b"origin"


def test_partial_head_without_origin_has_no_allow_origin(server: BerthServer) -> None:
    response = _send_and_read(server, b"POST " + GATEWAY_PATH + b" HTTP/1.1\r\nHost: x\r\n")

    assert response.startswith(b"HTTP/1.1 408 ")
    headers = _headers(response)
    assert b"access-control-allow-origin" not in headers
    assert headers[b"vary"] == b"origin"


def test_other_origin_gets_no_allow_origin(server: BerthServer) -> None:
    response = _send_and_read(
        server,
        b"POST " + GATEWAY_PATH + b" HTTP/1.1\r\nOrigin: https://evil.example\r\nHost: x\r\n",
    )

    assert response.startswith(b"HTTP/1.1 408 ")
    assert b"access-control-allow-origin" not in _headers(response)


def test_partial_api_head_gets_no_cors(server: BerthServer) -> None:
    response = _send_and_read(
        server, b"POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nOrigin: " + ORIGIN + b"\r\n"
    )

    assert response.startswith(b"HTTP/1.1 408 ")
    headers = _headers(response)
    assert b"access-control-allow-origin" not in headers
    assert b"vary" not in headers


def test_oversized_gateway_head_gets_cors_431(server: BerthServer) -> None:
    response = _send_and_read(server, _oversized_head(GATEWAY_PATH, ORIGIN))

    assert response.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    headers = _headers(response)
    assert headers[b"access-control-allow-origin"] == ORIGIN
    assert headers[b"vary"] == b"origin"


def test_oversized_api_head_gets_no_cors(server: BerthServer) -> None:
    response = _send_and_read(server, _oversized_head(b"/api/v1/projects", ORIGIN))

    assert response.startswith(b"HTTP/1.1 431 ")
    assert b"access-control-allow-origin" not in _headers(response)


def _send_request(connection: socket.socket, head: bytes) -> bytes:
    """Send a request without a body and return its response, leaving the connection open."""
    connection.sendall(head)
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = connection.recv(65536)
        assert chunk, f"the server closed the connection; received {response!r}"
        response += chunk
    head_part, _, body = response.partition(b"\r\n\r\n")
    length = int(_headers(response)[b"content-length"])
    while len(body) < length:
        body += connection.recv(65536)
    return head_part


def test_oversized_head_ignores_previous_request(server: BerthServer) -> None:
    with _connect(server) as connection:
        # A complete gateway request from the allowed origin, which gets 401.
        first = _send_request(
            connection,
            b"GET " + GATEWAY_PATH + b" HTTP/1.1\r\nHost: x\r\nOrigin: " + ORIGIN + b"\r\n\r\n",
        )
        assert first.startswith(b"HTTP/1.1 401 ")
        # The next head, for the API, must not take the first request's path and Origin.
        connection.sendall(_oversized_head(b"/api/v1/projects", None))
        response = _read_until_closed(connection)

    assert response.startswith(b"HTTP/1.1 431 ")
    assert b"access-control-allow-origin" not in _headers(response)
    assert b"vary" not in _headers(response)


def test_stalled_gateway_body_gets_cors_408(server: BerthServer) -> None:
    client = Client(server.url, ADMIN_KEY)
    created = client.create_endpoint("default", "stalled-body", "echo")
    client.wait_for_state(created["id"], {"Live"}, timeout_s=120, poll_s=0.1)
    path = f"/endpoints/{created['id']}/v1/chat/completions".encode()

    with _connect(server) as connection:
        connection.sendall(
            b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nOrigin: " + ORIGIN + b"\r\n"
            b"Authorization: Bearer " + created["first_key"].encode() + b"\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"messages"'
        )
        response = _read_until_closed(connection)

    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert _headers(response)[b"access-control-allow-origin"] == ORIGIN
