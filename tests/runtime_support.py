"""Start `python -m berth.runtime` as a subprocess for tests, and wait for it with bounded polls."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

POLL_INTERVAL_S = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout_s: float, description: str) -> None:
    """Poll `condition` until it is true, raising TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {description}")
        time.sleep(POLL_INTERVAL_S)


class RuntimeProcess:
    """One runtime subprocess listening on 127.0.0.1, with stderr captured to a file."""

    def __init__(
        self,
        ml_app: str,
        model_path: str | Path,
        model_name: str,
        log_path: Path,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_name = model_name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "berth.runtime",
            "--ml-app",
            ml_app,
            "--model-path",
            str(model_path),
            "--model-name",
            model_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--instance-id",
            f"test-{ml_app}",
            *extra_args,
        ]
        self._log_file = log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self._log_file)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self, path: str) -> int | None:
        """Return the status code of GET `path`, or None while the connection fails."""
        try:
            return httpx.get(self.base_url + path, timeout=2.0).status_code
        except httpx.TransportError:
            return None

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"runtime exited with status {self.process.returncode}:\n{self.log_text()}"
            )

    def wait_for(self, path: str, timeout_s: float) -> None:
        """Wait until GET `path` returns 200, failing early if the process exits."""

        def answered() -> bool:
            self._check_alive()
            return self.status(path) == 200

        try:
            wait_until(answered, timeout_s, f"{path} of {self.model_name}")
        except TimeoutError as error:
            raise TimeoutError(f"{error}\nlog:\n{self.log_text()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log_file.close()
