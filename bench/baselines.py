"""Baselines without any server: a model's own encode() and generate() in a plain process.

Run as `python -m bench.baselines`, it reads one JSON command per line on stdin and
writes one JSON result per line on stdout, so that a benchmark can load a model once
and then alternate baseline rounds with Berth rounds. `BaselineWorker` is the benchmark
side of that pipe. The process uses torch's default thread settings, as an instance does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.child import JsonLineChild


class _Models:
    def __init__(self) -> None:
        self.embedding: Any = None
        self.generator: Any = None
        self.tokenizer: Any = None

    def load_embedding(self, path: str) -> dict[str, Any]:
        from berth.runtime.loading import prepare_offline_transformers

        prepare_offline_transformers()
        from sentence_transformers import SentenceTransformer

        started = time.perf_counter()
        self.embedding = SentenceTransformer(path, device="cpu", local_files_only=True)
        self.embedding.eval()
        return {"load_s": time.perf_counter() - started}

    def encode(
        self, texts: list[str], batch_size: int, repeat: int, max_seconds: float = 60.0
    ) -> dict[str, Any]:
        """Encode `texts` up to `repeat` times, in batches of `batch_size`, and stop
        repeating after `max_seconds`."""
        durations: list[float] = []
        deadline = time.perf_counter() + max_seconds
        for _ in range(repeat):
            if durations and time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            self.embedding.encode(
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            durations.append(time.perf_counter() - started)
        return {"durations_s": durations}

    def load_generation(self, path: str) -> dict[str, Any]:
        from berth.runtime.loading import prepare_offline_transformers

        prepare_offline_transformers()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.generator = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        self.generator.eval()
        return {"load_s": time.perf_counter() - started}

    def generate(
        self,
        prompt: str,
        max_new_tokens: int,
        batch: int,
        repeat: int,
        max_seconds: float = 60.0,
    ) -> dict[str, Any]:
        """Run greedy generate() on `batch` copies of `prompt` at once, up to `repeat`
        times, and stop repeating after `max_seconds`.

        Returns the wall time of each call and the number of new tokens per sequence.
        """
        import torch

        prompt_ids = self.tokenizer(prompt)["input_ids"]
        input_ids = torch.tensor([prompt_ids] * batch, dtype=torch.long)
        pad_id = self.tokenizer.pad_token_id
        durations: list[float] = []
        new_tokens = 0
        deadline = time.perf_counter() + max_seconds
        for _ in range(repeat):
            if durations and time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            with torch.inference_mode():
                output = self.generator.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad_id,
                )
            durations.append(time.perf_counter() - started)
            new_tokens = int(output.shape[1] - input_ids.shape[1])
        return {"durations_s": durations, "new_tokens": new_tokens}


def main() -> None:
    models = _Models()
    for line in sys.stdin:
        command = json.loads(line)
        operation = command.pop("op")
        try:
            result = getattr(models, operation)(**command)
        except Exception as error:  # reported to the benchmark, which raises it
            result = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


class BaselineWorker(JsonLineChild):
    """The benchmark's handle on one `python -m bench.baselines` process."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        super().__init__(
            "bench.baselines",
            stderr=self._log,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})},
            close_timeout_s=30,
        )

    def call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        return self.request({"op": operation, **arguments}, f"baseline {operation}")

    def close(self) -> None:
        super().close()
        self._log.close()


if __name__ == "__main__":
    main()
