"""The body limit of the management API and the web UI on a real server: a 413 before
the body arrives, for a declared Content-Length and for a chunked body."""

import json
import socket

import pytest

from berth.settings import DEFAULT_MAX_API_REQUEST_BYTES
from tests.support import BerthServer

# A 413 must come back long before the body could have been sent.
RESPONSE_TIMEOUT_S = 5.0
CHUNK_BYTES = 64 * 1024


def read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length, while the request body is unsent."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    while len(body) < int(headers["content-length"]):
        body += connection.recv(65536)
    return int(status_line.split()[1]), headers, body


def send_head(
    server: BerthServer, method: str, path: str, headers: dict[str, str]
) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=RESPONSE_TIMEOUT_S)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return connection


def assert_api_too_large(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large"
    assert error["field"] == "body"
    assert f"larger than the limit of {DEFAULT_MAX_API_REQUEST_BYTES} bytes" in error["message"]
    assert "BERTH_MAX_API_REQUEST_BYTES" in error["message"]


def test_login_declared_too_large_is_413(server: BerthServer) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(400 * 1024 * 1024)}
    with send_head(server, "POST", "/api/v1/auth/login", headers) as connection:
        connection.sendall(b'{"key": "')

        status, response_headers, body = read_response(connection)

    assert_api_too_large(status, response_headers, body)


def test_login_chunked_too_large_is_413(server: BerthServer) -> None:
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    chunks = DEFAULT_MAX_API_REQUEST_BYTES // CHUNK_BYTES + 1
    with send_head(server, "POST", "/api/v1/auth/login", headers) as connection:
        for _ in range(chunks):
            connection.sendall(b"%x\r\n" % CHUNK_BYTES + b" " * CHUNK_BYTES + b"\r\n")

        # The body has no last chunk, so only the limit can end the request.
        status, response_headers, body = read_response(connection)

    assert_api_too_large(status, response_headers, body)


def test_chunked_body_within_limit_is_read(server: BerthServer) -> None:
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    payload = json.dumps({"username": "nobody", "password": "wrong-password"}).encode()
    with send_head(server, "POST", "/api/v1/auth/login", headers) as connection:
        connection.sendall(b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n")

        status, _headers, body = read_response(connection)

    # A 401 for the password shows that the API decoded the body.
    assert status == 401, body


@pytest.mark.parametrize("path", ["/ui/tenant", "/ui/login"])
def test_ui_declared_too_large_is_413(server: BerthServer, path: str) -> None:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Content-Length": str(400 * 1024 * 1024),
    }
    with send_head(server, "POST", path, headers) as connection:
        connection.sendall(b"tenant=")

        status, response_headers, body = read_response(connection)

    assert status == 413
    assert response_headers["x-frame-options"] == "DENY"
    assert b"larger than the limit" in body
