"""Instances run at a lower CPU priority than the server (nice 5).

Meant to let the gateway take a core first when it and a computing instance both want
one, so that it passes a streamed piece on sooner. In the generation benchmark of
2026-12-05 it did not shorten the stream's TTFB.
"""

from __future__ import annotations

import os


def apply() -> None:
    from berth.backends import local

    start_child = local.die_with_parent

    def lower_priority_then_start() -> None:
        os.nice(5)
        start_child()

    local.die_with_parent = lower_priority_then_start  # type: ignore[assignment]
