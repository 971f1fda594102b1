"""Settings of one instance process, parsed from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from berth.states import MLApp


@dataclass(frozen=True)
class RuntimeConfig:
    ml_app: MLApp
    model_path: Path | None  # None when --model-path is empty, as Echo allows
    model_name: str
    instance_id: str
    max_batch_size: int = 32
    max_batch_wait_ms: float = 2.0
    # Echo only: pause before each streamed word, standing in for a model's generation time.
    echo_delay_ms: float = 0.0
    # /health reports the instance stalled when requests are in flight and no response
    # bytes were sent for this long; None turns the check off.
    stall_timeout_s: float | None = None
