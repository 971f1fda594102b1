"""Table width when the CLI's standard output is a pipe, checked on a real `berth` process."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from berth.client import Client
from tests.cli.conftest import unique
from tests.support import ADMIN_KEY, BerthServer

# Longer than any width that Rich assumes without a terminal (80 columns).
LONG_DESCRIPTION = "a project description that is much longer than eighty columns " * 3


@pytest.fixture(scope="module")
def project(client: Client) -> str:
    name = unique("wide")
    client.create_project(name, description=LONG_DESCRIPTION.strip())
    return name


def run_piped(server: BerthServer, *args: str, stderr: int = subprocess.PIPE, **env: str) -> str:
    """Run `berth ARGS...` with standard output on a pipe and return that output."""
    environment = {
        **{name: value for name, value in os.environ.items() if name != "COLUMNS"},
        "BERTH_SERVER": server.url,
        "BERTH_API_KEY": ADMIN_KEY,
        "NO_COLOR": "1",
        **env,
    }
    environment.pop("BERTH_TENANT", None)
    completed = subprocess.run(
        [sys.executable, "-m", "berth", *args],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.decode()


def project_row(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(name))


def test_piped_table_rows_do_not_wrap(server: BerthServer, project: str) -> None:
    output = run_piped(server, "project", "list")

    assert LONG_DESCRIPTION.strip() in project_row(output, project)


def test_piped_table_takes_columns(server: BerthServer, project: str) -> None:
    output = run_piped(server, "project", "list", COLUMNS="100")

    assert max(len(line.rstrip()) for line in output.splitlines()) <= 100
    assert LONG_DESCRIPTION.strip() not in project_row(output, project)


def test_piped_table_ignores_terminal_on_stderr(server: BerthServer, project: str) -> None:
    # As in `berth project list | grep NAME` typed at a 60-column terminal, which Rich
    # would measure on stderr.
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    try:
        output = run_piped(server, "project", "list", stderr=terminal)
    finally:
        os.close(terminal)
        os.close(controller)

    assert LONG_DESCRIPTION.strip() in project_row(output, project)
