"""Dynamic batching: texts of concurrent requests are encoded together in one worker thread."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("berth.runtime")

# Encodes a batch of texts and returns one vector and one token count per text.
EncodeBatch = Callable[[list[str]], tuple[Sequence[Any], Sequence[int]]]


class BatchError(Exception):
    """Encoding a batch failed. Every request with a text in that batch fails with it."""


@dataclass
class _PendingRequest:
    texts: Sequence[str]
    future: asyncio.Future[tuple[list[Any], int]]
    vectors: list[Any] = field(default_factory=list)
    token_count: int = 0
    remaining: int = 0

    def __post_init__(self) -> None:
        self.vectors = [None] * len(self.texts)
        self.remaining = len(self.texts)


@dataclass
class _QueuedText:
    request: _PendingRequest
    index: int
    enqueued_at: float


class EmbeddingBatcher:
    """Collect texts from concurrent requests into batches of up to `max_batch_size`.

    A batch is encoded in a single worker thread, so the event loop stays free. While
    the worker is busy, new texts queue up and form the next batch, so batches fill
    under load without any waiting. When the worker is idle, a batch starts at once
    (with the default `max_wait_s` of 0) or once it is full or `max_wait_s` after its
    oldest text arrived, whichever comes first. A request with more
    texts than `max_batch_size` spans several batches and gets its vectors back in
    input order.
    """

    def __init__(self, encode: EncodeBatch, max_batch_size: int, max_wait_s: float) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self._encode = encode
        self._max_batch_size = max_batch_size
        self._max_wait_s = max(0.0, max_wait_s)
        self._queue: deque[_QueuedText] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="berth-embed")

    async def submit(self, texts: Sequence[str]) -> tuple[list[Any], int]:
        """Encode `texts` and return their vectors in order plus the total token count.

        Raises BatchError when a batch that contains one of the texts fails.
        """
        loop = asyncio.get_running_loop()
        self._ensure_worker(loop)
        assert self._wakeup is not None
        request = _PendingRequest(texts=texts, future=loop.create_future())
        now = loop.time()
        self._queue.extend(_QueuedText(request, index, now) for index in range(len(texts)))
        self._wakeup.set()
        return await request.future

    def close(self) -> None:
        if self._worker_task is not None:
            self._worker_task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._worker_task is None or self._worker_task.done():
            self._wakeup = asyncio.Event()
            self._worker_task = loop.create_task(self._run(), name="berth-embedding-batcher")

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                await self._encode_batch(batch)
            except Exception:
                # A bug here must not stop batching for later requests.
                logger.exception("embedding batcher failed on a batch of %d texts", len(batch))
                self._fail(batch, BatchError("internal error in the embedding batcher"))

    async def _next_batch(self) -> list[_QueuedText]:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        # One pass of the event loop lets requests that arrived together join the batch.
        await asyncio.sleep(0)

        deadline = self._queue[0].enqueued_at + self._max_wait_s
        while len(self._queue) < self._max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break

        size = min(self._max_batch_size, len(self._queue))
        return [self._queue.popleft() for _ in range(size)]

    async def _encode_batch(self, batch: list[_QueuedText]) -> None:
        # Skip texts of requests that already failed in an earlier batch.
        batch = [item for item in batch if not item.request.future.done()]
        if not batch:
            return
        texts = [item.request.texts[item.index] for item in batch]
        loop = asyncio.get_running_loop()
        try:
            vectors, token_counts = await loop.run_in_executor(self._executor, self._encode, texts)
        except Exception as error:
            logger.exception("encoding a batch of %d texts failed", len(texts))
            self._fail(batch, BatchError(f"encoding failed: {type(error).__name__}: {error}"))
            return

        for item, vector, tokens in zip(batch, vectors, token_counts, strict=True):
            request = item.request
            request.vectors[item.index] = vector
            request.token_count += tokens
            request.remaining -= 1
            if request.remaining == 0 and not request.future.done():
                request.future.set_result((request.vectors, request.token_count))

    @staticmethod
    def _fail(batch: list[_QueuedText], error: BatchError) -> None:
        for item in batch:
            if not item.request.future.done():
                item.request.future.set_exception(error)
