"""Helpers for tests that run a real Berth server as a child process, and for tests
that stand in for instances with small asyncio HTTP servers."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
from sqlalchemy import update

from berth.client import Client
from berth.db.engine import Database
from berth.db.models import Endpoint

T = TypeVar("T")
ADMIN_KEY = "e2e-admin-key-0123456789abcdef"
# The maintenance database of the PostgreSQL server the tests create databases on.
POSTGRES_ADMIN_URL = os.environ.get(
    "BERTH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SERVER_START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    condition: Callable[[], T | None], timeout_s: float, message: str, interval_s: float = 0.1
) -> T:
    """Poll `condition` until it returns a truthy value; fail with `message` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # the condition may fail while things settle
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval_s)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s: {message}{detail}")


async def wait_until_async(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `condition` from a coroutine until it is true; fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in {timeout_s:g} s")
        await asyncio.sleep(0.005)


async def read_http_request(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP/1.1 request with a Content-Length body (or none) and return it whole.

    Raises asyncio.IncompleteReadError when the connection closes first.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


class BerthServer:
    """A `berth up` process with its own home folder and port."""

    def __init__(self, home: Path, port: int | None = None, **env: str) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home.parent / f"{home.name}-server.log"
        self.env = {
            **os.environ,
            "BERTH_HOME": str(home),
            "BERTH_ADMIN_KEY": ADMIN_KEY,
            "XDG_CONFIG_HOME": str(home.parent / f"{home.name}-config"),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "BerthServer":
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps writing to it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "berth", "up", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_until(self._healthy, SERVER_START_TIMEOUT_S, f"server on {self.url} to answer /health")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> Client:
        return Client(server=self.url, api_key=ADMIN_KEY)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 60.0, signal_number: int = signal.SIGTERM) -> int:
        """Stop gracefully (SIGTERM by default) and return the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal_number)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


def server_database(server: BerthServer) -> Database:
    """The server's own database, for what the API does not expose."""
    url = server.env.get("BERTH_DATABASE_URL") or f"sqlite:///{server.home / 'berth.db'}"
    return Database(url)


def set_endpoint_settings(server: BerthServer, endpoint_id: str, **values: object) -> None:
    database = server_database(server)
    try:
        with database.session() as session:
            session.execute(
                update(Endpoint).where(Endpoint.id == endpoint_id).values(settings=dict(values))
            )
    finally:
        database.dispose()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still accepts signal 0, so read its state from /proc.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(")", 1)[1].split()[0] != "Z"


def fresh_postgres_database(prefix: str = "berth_test") -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its SQLAlchemy URL, then drop it.

    Skips the test when the server is not reachable, unless BERTH_TEST_REQUIRE_POSTGRES=1.
    BERTH_TEST_POSTGRES_PREFIX, when set, goes in front of every database name, so that
    runs sharing the server can tell their databases apart.
    """
    import pytest

    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("BERTH_TEST_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    run_prefix = os.environ.get("BERTH_TEST_POSTGRES_PREFIX", "")
    name = f"{run_prefix}{prefix}_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
            yield f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
