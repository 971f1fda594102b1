"""What `berth up` does before it serves: a busy port, a CLI profile that exists, a
home folder that another server uses, and a server secret that does not fit the database."""

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from tests.support import BerthServer, free_port, wait_until


def _berth_up(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("BERTH_ADMIN_KEY", "BERTH_API_KEY")
    }
    env.update(BERTH_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    # Wide enough that no message wraps the text that the tests look for.
    env["COLUMNS"] = "200"
    return subprocess.Popen(
        [sys.executable, "-m", "berth", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_address_of_no_interface_names_the_fix(tmp_path: Path) -> None:
    # 192.0.2.1 is reserved for documentation (RFC 5737), so no interface has it. Binding
    # fails locally; nothing is sent.
    env = os.environ.copy()
    env.update(BERTH_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    env["COLUMNS"] = "200"
    env["BERTH_CAPCITY"] = "3"
    result = subprocess.run(
        [sys.executable, "-m", "berth", "up", "--host", "192.0.2.1", "--port", "19999"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "cannot listen on 192.0.2.1:19999" in output
    assert "no network interface of this machine has that address" in output
    assert "stop the program" not in output
    # A misspelt setting is named before the server gives up.
    assert "BERTH_CAPCITY is not a Berth setting" in output


def test_busy_port_creates_nothing(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = _berth_up(tmp_path, port)
        output, _ = process.communicate(timeout=60)

    assert process.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in output
    assert "--port or BERTH_PORT" in output
    # Neither the admin nor the profile was created for a server that never ran.
    assert "Created the organization admin" not in output
    assert not (tmp_path / "config" / "berth" / "profile.json").exists()


def test_existing_profile_is_kept(tmp_path: Path) -> None:
    profile = tmp_path / "config" / "berth" / "profile.json"
    profile.parent.mkdir(parents=True)
    profile.write_text('{"server": "http://127.0.0.1:9", "api_key": "kept"}')
    port = free_port()
    process = _berth_up(tmp_path, port)
    lines: list[str] = []
    try:
        assert process.stdout is not None

        def login_hint_shown() -> bool:
            line = process.stdout.readline()  # type: ignore[union-attr]
            lines.append(line)
            return "berth login --server" in line or not line

        wait_until(login_hint_shown, 60, "the login hint")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)

    assert f"berth login --server http://127.0.0.1:{port}" in lines[-1]
    assert "exists and was left as it is" in "".join(lines)
    assert profile.read_text() == '{"server": "http://127.0.0.1:9", "api_key": "kept"}'


def test_unwritable_profile_still_starts(tmp_path: Path) -> None:
    # A file where the profile's folder should be.
    (tmp_path / "config").write_text("not a folder")
    port = free_port()
    process = _berth_up(tmp_path, port)
    try:
        wait_until(lambda: _healthy(port) or process.poll() is not None, 60, "the server")
        running = process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)

    assert running, output
    assert "Could not save the CLI profile" in output
    assert "Traceback" not in output


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_second_server_on_same_home_stops(tmp_path: Path) -> None:
    first_port, second_port = free_port(), free_port()
    first = _berth_up(tmp_path, first_port)
    try:
        wait_until(lambda: _healthy(first_port), 60, "the first server")
        second = _berth_up(tmp_path, second_port)
        output, _ = second.communicate(timeout=60)
        first_still_healthy = _healthy(first_port)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)

    # The command line was fine, so this is an error (1), not a usage error (2).
    assert second.returncode == 1
    assert f"another Berth server (pid {first.pid}, http://127.0.0.1:{first_port})" in output
    assert "--home or BERTH_HOME" in output
    assert first_still_healthy


def _database_dump(home: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(home / "berth.db")) as connection:
        return list(connection.iterdump())


def test_other_secret_key_stops_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    original = Fernet.generate_key().decode()
    server = BerthServer(home, BERTH_SECRET_KEY=original).start()
    try:
        with server.client() as client:
            endpoint = client.create_endpoint("default", "kept-keys", "echo")
            client.stop_endpoint(endpoint["id"])
    finally:
        server.stop()
    before = _database_dump(home)
    other = Fernet.generate_key().decode()

    restarted = BerthServer(home, BERTH_SECRET_KEY=other)
    restarted.env["COLUMNS"] = "200"
    process = subprocess.run(
        [sys.executable, "-m", "berth", "up", "--port", str(restarted.port)],
        env=restarted.env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # The command line was fine, so this is an error (1), not a usage error (2).
    assert process.returncode == 1, process.stderr
    assert "cannot be decrypted with BERTH_SECRET_KEY" in process.stderr
    assert "Traceback" not in process.stderr
    assert other not in process.stderr
    assert _database_dump(home) == before

    # With the key that encrypted them, the stored keys can be read again.
    server = BerthServer(home, BERTH_SECRET_KEY=original).start()
    try:
        with server.client() as client:
            keys = client.list_keys(endpoint["id"])
    finally:
        server.stop()
    assert [key["key"] for key in keys] == [endpoint["first_key"]]
