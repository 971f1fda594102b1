"""The reason recorded when an instance process ends: its exit and, where it helps, its
last log line."""

import signal
from pathlib import Path

import pytest

from berth.backends.local import _exit_reason

INFO_LINE = "2026-12-05 02:36:48,743 INFO berth.runtime [i-1] model demo loaded in 9.10 s"
ERROR_LINE = "2026-12-05 02:36:49,001 ERROR berth.runtime [i-1] generation failed"


@pytest.mark.parametrize(
    ("code", "last_line", "expected"),
    [
        (-signal.SIGKILL, INFO_LINE, "killed by SIGKILL"),
        (
            -signal.SIGKILL,
            "Token indices sequence length is longer than (9 > 5)",
            "killed by SIGKILL",
        ),
        (-signal.SIGTERM, ERROR_LINE, f"killed by SIGTERM: {ERROR_LINE}"),
        (
            -signal.SIGSEGV,
            "MemoryError: out of memory",
            "killed by SIGSEGV: MemoryError: out of memory",
        ),
        (3, INFO_LINE, f"exited with status 3: {INFO_LINE}"),
        (1, "", "exited with status 1"),
    ],
)
def test_exit_reason(tmp_path: Path, code: int, last_line: str, expected: str) -> None:
    log = tmp_path / "instance.log"
    log.write_text(f"earlier line\n{last_line}\n" if last_line else "")

    assert _exit_reason(code, log) == expected
