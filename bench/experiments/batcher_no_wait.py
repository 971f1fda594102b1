"""Experiment: the embedding batcher starts a batch at once instead of waiting for more.

`EmbeddingBatcher._next_batch` waits up to `max_batch_wait_ms` after the first queued
text, even when the encoder thread is idle, so a lone request always pays that wait.
Here the batcher takes whatever is queued as soon as the encoder is free. Texts that
arrive while a batch is being encoded queue up and form the next batch, so batches still
fill under load. One pass of the event loop lets requests that arrived together join.
"""

from __future__ import annotations

import asyncio
from typing import Any


def apply() -> None:
    from berth.runtime import batching

    async def _next_batch(self: Any) -> list[Any]:
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        await asyncio.sleep(0)
        size = min(self._max_batch_size, len(self._queue))
        return [self._queue.popleft() for _ in range(size)]

    batching.EmbeddingBatcher._next_batch = _next_batch  # type: ignore[method-assign]
