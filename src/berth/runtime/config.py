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
