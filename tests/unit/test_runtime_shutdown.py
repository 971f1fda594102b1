"""Shutdown and stall detection of the instance runtime.

On SIGTERM an instance must stop accepting connections at once (so a gateway's new
request is refused and goes to another instance) while its streams in flight finish.
An instance whose requests make no progress reports itself unhealthy.
"""

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from berth.runtime.server import ProgressTracker
from tests.runtime_support import RuntimeProcess, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_tracker_counts_only_busy_time() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(clock)

    clock.now += 50
    assert tracker.stalled_for() == 0.0
    tracker.started()
    clock.now += 7
    assert tracker.stalled_for() == 7
    tracker.progressed()
    clock.now += 2
    assert tracker.stalled_for() == 2
    tracker.finished()
    clock.now += 30
    assert tracker.stalled_for() == 0.0


class InheritedSocketRuntime:
    """An echo runtime serving on a socket it inherits, as the local backend starts it."""

    def __init__(self, log_path: Path, *extra_args: str) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("wb")
        command = [sys.executable, "-m", "berth.runtime", "--ml-app", "echo"]
        command += ["--model-path", "", "--model-name", "echo", "--fd", str(listener.fileno())]
        self.process = subprocess.Popen(
            [*command, *extra_args],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            pass_fds=(listener.fileno(),),
        )
        # As in the local backend, the child has the only copy of the socket from here on.
        listener.close()

    def connect_refused(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return False
        except ConnectionRefusedError:
            return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=15)
        self._log.close()


@pytest.fixture
def paced_runtime(tmp_path: Path) -> Iterator[InheritedSocketRuntime]:
    runtime = InheritedSocketRuntime(
        tmp_path / "runtime.log", "--echo-delay-ms", "50", "--shutdown-timeout-s", "10"
    )
    wait_until(
        lambda: _status(f"{runtime.base_url}/ready") == 200, 30, "the echo runtime to be ready"
    )
    yield runtime
    runtime.stop()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None


def test_sigterm_closes_listener_keeps_streams(
    paced_runtime: InheritedSocketRuntime,
) -> None:
    # 60 words at 50 ms each: the stream lasts about 3 s.
    text = " ".join(f"w{index}" for index in range(60))
    chunks: list[bytes] = []
    begun = threading.Event()

    def read_stream() -> None:
        with httpx.stream(
            "POST",
            f"{paced_runtime.base_url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": text}], "stream": True},
            timeout=30,
        ) as response:
            for chunk in response.iter_raw():
                chunks.append(chunk)
                begun.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    assert begun.wait(timeout=10), "the stream did not begin"
    paced_runtime.process.send_signal(signal.SIGTERM)

    wait_until(paced_runtime.connect_refused, 1, "the listener to close after SIGTERM")
    # Refused while the stream still runs, not merely because the process has ended.
    assert paced_runtime.process.poll() is None
    assert reader.is_alive()
    reader.join(timeout=20)
    status = paced_runtime.process.wait(timeout=20)

    assert b"".join(chunks).rstrip().endswith(b"data: [DONE]")
    assert status == -signal.SIGTERM


def test_health_reports_stalled_requests(tmp_path: Path) -> None:
    runtime = RuntimeProcess(
        "echo",
        "",
        "echo",
        tmp_path / "runtime.log",
        extra_args=["--echo-delay-ms", "3000", "--stall-timeout-s", "0.5"],
    )
    try:
        runtime.wait_for("/ready", timeout_s=30)
        slow = threading.Thread(
            target=lambda: httpx.post(
                f"{runtime.base_url}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "one two"}]},
                timeout=30,
            )
        )
        slow.start()
        wait_until(lambda: runtime.status("/health") == 503, 5, "/health to report the stall")
        body = httpx.get(f"{runtime.base_url}/health", timeout=2).json()
        slow.join(timeout=30)

        assert body["status"] == "stalled"
        # Once the request has finished the instance is healthy again.
        assert runtime.status("/health") == 200
    finally:
        runtime.stop()
