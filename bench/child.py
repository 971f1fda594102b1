"""A helper process that reads one JSON object per line on its standard input and
writes one JSON line in reply to each on its standard output.

The load generator and the baseline worker run this way, so that their work runs in a
process of its own and not in the benchmark process that drives them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import IO, Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent


class JsonLineChild:
    """The benchmark's end of the pipe to one `python -m MODULE` process."""

    def __init__(
        self,
        module: str,
        *,
        stderr: IO[bytes] | None = None,
        env: dict[str, str] | None = None,
        close_timeout_s: float = 10.0,
    ) -> None:
        self._module = module
        self._close_timeout_s = close_timeout_s
        self._process = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO_ROOT,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def request(self, message: dict[str, Any], failure: str) -> dict[str, Any]:
        """Send `message` and return the reply.

        Raises RuntimeError when the reply reports an error, with `failure` naming what
        failed, and when the process has exited.
        """
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self._module} exited with {self._process.wait()}")
        result: dict[str, Any] = json.loads(line)
        if "error" in result:
            raise RuntimeError(f"{failure} failed: {result['error']}")
        return result

    def close(self) -> None:
        """End the process by closing its input, and kill it if it does not exit in time."""
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=self._close_timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
