"""A text generator that runs generations in a single worker thread.

Requests queue for the worker, and the event loop keeps serving health checks. A
runtime whose library can generate several sequences at once (transformers) sets
`max_batch_size` above 1: the worker then takes the queued requests that can share a
batch and generates them together, so concurrent streams do not wait for each other
one by one. Tokens travel to the event loop as text that is safe to send: complete
characters, with stop sequences already cut, one token or several at a time.
Subclasses supply the prompt encoding and the token loop of their library.

This module must not import torch or transformers, so that the llama.cpp runtime starts
without them.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from berth.runtime.base import GenerationParams, TextGenerator, TextStream
from berth.runtime.config import DEFAULT_MAX_COMPLETION_TOKENS
from berth.runtime.decoding import (
    IncrementalDetokenizer,
    LeadingWhitespaceStripper,
    StopSequenceMatcher,
)
from berth.runtime.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    NO_CHAT_TEMPLATE,
    APIError,
    invalid_request,
    server_error,
)
from berth.runtime.protocol import ChatMessage

logger = logging.getLogger("berth.runtime")

# An estimate of the most characters that one token covers. A prompt longer than the
# context length times this cannot fit, so it is rejected before tokenizing, which for a
# prompt of megabytes would hold the worker for seconds.
MAX_CHARACTERS_PER_TOKEN = 128
# While a stream generates, its text reaches the event loop at most this often, apart
# from the first text, which leaves at once. Waking the loop for every token takes a
# core from torch's threads in the middle of the next token: one stream reached 0.84 of
# plain generate() with ticks of 20 ms against 0.76 with a wake-up per token, measured
# with a runtime started by hand. Each tick also wakes the caller, and the gateway when
# there is one, so ticks of 50 ms gave 0.96 against 0.94 with 20 ms (docs/benchmarks.md).
# Twenty pieces a second still read as a steady stream.
TEXT_INTERVAL_S = 0.05


@dataclass(frozen=True)
class PromptInput:
    """A prompt and the request field it came from, for error messages."""

    param: str
    text: str | None = None
    messages: tuple[dict[str, str], ...] = ()


# Events that the worker thread sends to the request's event loop.
@dataclass(frozen=True)
class _Started:
    prompt_tokens: int


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Finished:
    finish_reason: str
    completion_tokens: int


@dataclass(frozen=True)
class _Failed:
    error: APIError


_Event = _Started | _Text | _Finished | _Failed


class GenerationJob:
    """One request's link between the worker thread and the event loop.

    Events pass through a buffer that the loop moves to `events`, joining consecutive
    texts into one. The first text of a stream and every other kind of event wake the
    loop at once. Texts that follow wait for the loop's next tick, every
    TEXT_INTERVAL_S while text keeps coming, so the worker does not wake the loop for
    every token. The ticks stop at the first one that finds nothing new, and the next
    text wakes the loop at once again.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        # Set to stop the generation: by EOS, a stop sequence, or the request going away.
        self.cancelled = threading.Event()
        # True once the request stopped reading, for example on a client disconnect.
        self.abandoned = False
        self._lock = threading.Lock()
        self._buffer: list[_Event] = []
        # Guarded by _lock: a move is scheduled to run at once, and a tick is pending.
        self._wake_scheduled = False
        self._tick_pending = False

    def abandon(self) -> None:
        self.abandoned = True
        self.cancelled.set()

    def emit(self, event: _Event) -> None:
        """Queue an event for the request. Called from the worker thread."""
        with self._lock:
            self._buffer.append(event)
            if self._wake_scheduled or (self._tick_pending and isinstance(event, _Text)):
                # A move that takes this event is on its way.
                return
            self._wake_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._move_now)
        except RuntimeError:
            # The event loop is closed because the server is shutting down.
            self.cancelled.set()

    def _move_now(self) -> None:
        with self._lock:
            self._wake_scheduled = False
        if self._move_buffer() and not self._tick_pending:
            with self._lock:
                self._tick_pending = True
            self._loop.call_later(TEXT_INTERVAL_S, self._tick)

    def _tick(self) -> None:
        if not self._move_buffer():
            with self._lock:
                if not self._buffer:
                    self._tick_pending = False
                    return
            # A text arrived after the move above found the buffer empty.
            self._move_buffer()
        self._loop.call_later(TEXT_INTERVAL_S, self._tick)

    def _move_buffer(self) -> bool:
        """Move the buffered events to the queue, joining consecutive texts, and return
        whether any text moved. Runs on the loop."""
        with self._lock:
            buffered, self._buffer = self._buffer, []
        text: list[str] = []
        moved_text = False
        for event in buffered:
            if isinstance(event, _Text):
                text.append(event.text)
                moved_text = True
                continue
            if text:
                self.events.put_nowait(_Text("".join(text)))
                text = []
            self.events.put_nowait(event)
        if text:
            self.events.put_nowait(_Text("".join(text)))
        return moved_text


class TokenTextSender:
    """Turn one job's generated token ids into text events.

    `tokenizer` needs only `decode(ids, skip_special_tokens=True)`, as IncrementalDetokenizer
    uses it.
    """

    def __init__(
        self,
        job: GenerationJob,
        tokenizer: Any,
        prompt_ids: Sequence[int],
        params: GenerationParams,
        eos_ids: frozenset[int],
        strip_leading_whitespace: bool,
    ) -> None:
        self.job = job
        self.params = params
        self._eos_ids = eos_ids
        self._detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids)
        self._stops = StopSequenceMatcher(params.stop)
        self._stripper = LeadingWhitespaceStripper() if strip_leading_whitespace else None
        self._eos_seen = False
        self._finished = False
        self.token_count = 0
        # Without stop sequences nothing needs the text before the event loop takes it,
        # so tokens are decoded in groups, twice per TEXT_INTERVAL_S, after the first
        # text left. Decoding every token cost about 5 % of the generation time of a
        # small model, far more than the decoding itself takes alone.
        self._decode_each_token = self._stops.active
        self._decode_after = 0.0

    def push(self, token_id: int) -> bool:
        """Take one generated token, and return False once generation should stop.

        Generation stops at EOS, at a stop sequence and when the job is cancelled. Each
        of them also sets `job.cancelled`, which the transformers runtime polls.
        """
        if self._eos_seen or self._stops.stopped or self.job.cancelled.is_set():
            return False
        self.token_count += 1
        if token_id in self._eos_ids:
            self._eos_seen = True
            self.job.cancelled.set()
            return False
        self._detokenizer.add(token_id)
        if self._decode_each_token:
            self._send(self._detokenizer.take())
            if self._stops.stopped:
                self.job.cancelled.set()
                return False
        elif time.monotonic() >= self._decode_after and self._send(self._detokenizer.take()):
            # Twice per tick, so that each tick of the loop finds fresh text.
            self._decode_after = time.monotonic() + TEXT_INTERVAL_S / 2
        return True

    def finish(self) -> None:
        """Send the held-back text and the finish reason, once: after the request's last
        token, which in a batch can come well before the batch ends."""
        if self._finished:
            return
        self._finished = True
        if not self._stops.stopped:
            self._send(self._detokenizer.flush())
        tail = self._stops.flush()
        if tail:
            self.job.emit(_Text(tail))
        finish_reason = "stop" if self._eos_seen or self._stops.stopped else "length"
        self.job.emit(_Finished(finish_reason, self.token_count))

    def _send(self, text: str) -> bool:
        """Emit what is safe to send of `text`, and return whether any text was emitted."""
        if self._stripper is not None:
            text = self._stripper.push(text)
        text = self._stops.push(text)
        if text:
            self.job.emit(_Text(text))
        return bool(text)


class _ThreadedStream(TextStream):
    def __init__(self, job: GenerationJob) -> None:
        self._job = job

    async def wait_started(self) -> None:
        """Wait until the worker has tokenized the prompt, raising its APIError if any."""
        event = await self._job.events.get()
        if isinstance(event, _Failed):
            raise event.error
        assert isinstance(event, _Started), event
        self.prompt_tokens = event.prompt_tokens

    async def _iterate(self) -> AsyncIterator[str]:
        while True:
            event = await self._job.events.get()
            if isinstance(event, _Text):
                yield event.text
            elif isinstance(event, _Finished):
                self.finish_reason = event.finish_reason
                self.completion_tokens = event.completion_tokens
                return
            elif isinstance(event, _Failed):
                raise event.error

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def aclose(self) -> None:
        self._job.abandon()


def limit_new_tokens(
    prompt_tokens: int,
    param: str,
    params: GenerationParams,
    context_length: int | None,
    model_name: str,
    max_completion_tokens: int,
) -> int:
    """Return the max tokens to generate for a prompt, raising APIError (400) if they don't fit.

    `param` names the request field of the prompt, and `context_length` (prompt and
    completion together) is None when the model states none. `max_completion_tokens` is
    the endpoint's limit per request. A max_tokens from the request must fit beside the
    prompt, and then within that limit. Without one, generation runs until the
    end-of-sequence token, the end of the context or `max_completion_tokens` tokens,
    whichever comes first.
    """
    if prompt_tokens == 0:
        raise invalid_request("The prompt is empty after tokenization.", param=param)
    requested = params.max_tokens if params.max_tokens is not None else max_completion_tokens
    if context_length is None:
        params.check_max_tokens_limit(max_completion_tokens)
        return requested
    if prompt_tokens >= context_length:
        raise invalid_request(
            f"The prompt is {prompt_tokens} tokens long, but model '{model_name}' "
            f"has a context length of {context_length} tokens for prompt and "
            "completion together. Shorten the prompt.",
            param=param,
            code=CONTEXT_LENGTH_EXCEEDED,
        )
    tokens_left = context_length - prompt_tokens
    if params.max_tokens is None:
        return min(requested, tokens_left)
    if requested > tokens_left:
        field = params.max_tokens_param
        raise invalid_request(
            f"The prompt is {prompt_tokens} tokens long and {field} is {requested}, "
            f"{prompt_tokens + requested} tokens together, but model '{model_name}' has a "
            f"context length of {context_length} tokens for prompt and completion together. "
            f"Set {field} to at most {tokens_left}, or shorten the prompt.",
            param=field,
            code=CONTEXT_LENGTH_EXCEEDED,
        )
    params.check_max_tokens_limit(max_completion_tokens)
    return requested


def no_chat_template_error(model_name: str) -> APIError:
    return invalid_request(
        f"Model '{model_name}' has no chat template, so it cannot serve "
        "/v1/chat/completions. Use /v1/completions with a plain prompt.",
        param="messages",
        code=NO_CHAT_TEMPLATE,
    )


def chat_turns(messages: Sequence[ChatMessage]) -> tuple[dict[str, str], ...]:
    return tuple({"role": m.role, "content": m.content} for m in messages)


@dataclass
class _Request:
    """A queued request: its job, prompt and sampling settings."""

    job: GenerationJob
    prompt: PromptInput
    params: GenerationParams


@dataclass
class BatchRow:
    """One request of a batch, ready to generate: what `_generate_batch` receives."""

    prompt_ids: list[int]
    max_new_tokens: int
    sender: TokenTextSender
    cancelled: threading.Event


_BatchKey = tuple[float, float, float, float, tuple[tuple[int, float], ...]]


def _batch_key(params: GenerationParams) -> _BatchKey | None:
    """Return what requests must share to be generated together, or None for "alone".

    A batch is generated with one set of sampling settings and one logits processor, so
    requests share a batch only when all of those settings are equal. A seeded request
    runs alone, so that its seed gives the same text as on its own.
    """
    if params.seed is not None:
        return None
    return (
        params.temperature,
        params.top_p,
        params.frequency_penalty,
        params.presence_penalty,
        params.logit_bias,
    )


class ThreadedGenerator(TextGenerator):
    """Base of the runtimes that generate token by token in a worker thread.

    `tokenizer` decodes generated ids (see TokenTextSender), `eos_ids` are the token ids
    that end a reply, and `context_length` is the maximum of prompt and completion tokens
    together, or None when the model states none. `vocab_size` is the number of token ids
    that logit_bias may name, or None to leave that check to the subclass.
    `max_completion_tokens` is the endpoint's limit on the tokens of one completion, and
    the default for a request without max_tokens.
    """

    # Requests generated together at most. A subclass that implements _generate_batch
    # raises it; 1 keeps one generation at a time.
    max_batch_size = 1

    def __init__(
        self,
        model_name: str,
        tokenizer: Any,
        eos_ids: frozenset[int],
        context_length: int | None,
        vocab_size: int | None = None,
        max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS,
    ) -> None:
        self._model_name = model_name
        self._max_completion_tokens = max_completion_tokens
        self._vocab_size = vocab_size
        self._tokenizer = tokenizer
        self._eos_ids = eos_ids
        self._context_length = context_length
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="berth-generate")
        self._jobs: set[GenerationJob] = set()
        # Requests waiting for the worker, oldest first.
        self._queue: deque[_Request] = deque()
        self._queue_lock = threading.Lock()

    @abc.abstractmethod
    def _encode_prompt(self, prompt: PromptInput) -> list[int]:
        """Return the token ids of the prompt. Runs in the worker thread."""

    @abc.abstractmethod
    def _generate(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        params: GenerationParams,
        sender: TokenTextSender,
        cancelled: threading.Event,
    ) -> None:
        """Generate at most `max_new_tokens` tokens into `sender` until its push() is False.

        Runs in the worker thread.
        """

    def _generate_batch(self, rows: list[BatchRow], params: GenerationParams) -> None:
        """Generate every row together until each row's sender stops or has its tokens.

        Runs in the worker thread. Only called when `max_batch_size` is above 1.
        """
        raise NotImplementedError

    async def start_completion(self, prompt: str, params: GenerationParams) -> TextStream:
        return await self._start(PromptInput(param="prompt", text=prompt), params)

    @property
    def queued_requests(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        for job in list(self._jobs):
            job.abandon()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _start(self, prompt: PromptInput, params: GenerationParams) -> TextStream:
        if self._vocab_size is not None:
            params.check_logit_bias(self._vocab_size)
        loop = asyncio.get_running_loop()
        job = GenerationJob(loop)
        self._jobs.add(job)
        with self._queue_lock:
            self._queue.append(_Request(job, prompt, params))
        # Each request schedules one turn of the worker. A turn can take several
        # queued requests, and a turn that finds the queue empty returns at once.
        future = loop.run_in_executor(self._executor, self._run_queued)
        future.add_done_callback(lambda _: self._jobs.discard(job))
        stream = _ThreadedStream(job)
        try:
            await stream.wait_started()
        except BaseException:
            job.abandon()
            raise
        return stream

    def _take_batch(self) -> list[_Request]:
        """Take the oldest queued request and the queued ones that can share its batch."""
        with self._queue_lock:
            if not self._queue:
                return []
            first = self._queue.popleft()
            batch = [first]
            key = _batch_key(first.params)
            if key is None or self.max_batch_size <= 1:
                return batch
            remaining: deque[_Request] = deque()
            while self._queue:
                request = self._queue.popleft()
                if len(batch) < self.max_batch_size and _batch_key(request.params) == key:
                    batch.append(request)
                else:
                    remaining.append(request)
            self._queue = remaining
            return batch

    def _run_queued(self) -> None:
        """Generate the next batch of queued requests. Runs in the worker thread."""
        rows: list[BatchRow] = []
        for request in self._take_batch():
            row = self._prepare(request)
            if row is not None:
                rows.append(row)
        if not rows:
            return
        try:
            if len(rows) == 1:
                row = rows[0]
                self._generate(
                    row.prompt_ids, row.max_new_tokens, row.sender.params, row.sender, row.cancelled
                )
            else:
                self._generate_batch(rows, rows[0].sender.params)
        except APIError as error:
            for row in rows:
                row.sender.job.emit(_Failed(error))
            return
        except Exception as error:
            logger.exception("generation failed for model %s", self._model_name)
            failure = server_error(f"Generation failed: {type(error).__name__}: {error}")
            for row in rows:
                row.sender.job.emit(_Failed(failure))
            return
        for row in rows:
            if row.sender.job.abandoned:
                logger.info(
                    "generation stopped after %d of at most %d tokens: the request was "
                    "abandoned, for example by a client disconnect",
                    row.sender.token_count,
                    row.max_new_tokens,
                )
            row.sender.finish()

    def _check_prompt_characters(self, prompt: PromptInput) -> None:
        """Raise APIError (400) for a prompt too long to fit whatever its tokens."""
        if self._context_length is None:
            return
        if prompt.text is not None:
            characters = len(prompt.text)
        else:
            characters = sum(len(message["content"]) for message in prompt.messages)
        limit = self._context_length * MAX_CHARACTERS_PER_TOKEN
        if characters > limit:
            raise invalid_request(
                f"The prompt is {characters} characters long, more than model "
                f"'{self._model_name}' can take: its context length is "
                f"{self._context_length} tokens for prompt and completion together, about "
                f"{limit} characters at most. Shorten the prompt.",
                param=prompt.param,
                code=CONTEXT_LENGTH_EXCEEDED,
            )

    def _prepare(self, request: _Request) -> BatchRow | None:
        """Tokenize a request's prompt and check its length, or fail its job and return None."""
        job, prompt, params = request.job, request.prompt, request.params
        if job.cancelled.is_set():
            return None
        try:
            self._check_prompt_characters(prompt)
            prompt_ids = self._encode_prompt(prompt)
            max_new_tokens = limit_new_tokens(
                len(prompt_ids),
                prompt.param,
                params,
                self._context_length,
                self._model_name,
                self._max_completion_tokens,
            )
        except APIError as error:
            job.emit(_Failed(error))
            return None
        except Exception as error:
            logger.exception("tokenizing the prompt failed for model %s", self._model_name)
            job.emit(_Failed(server_error(f"Generation failed: {type(error).__name__}: {error}")))
            return None
        job.emit(_Started(len(prompt_ids)))
        sender = TokenTextSender(
            job,
            self._tokenizer,
            prompt_ids,
            params,
            self._eos_ids,
            strip_leading_whitespace=prompt.text is None,
        )
        return BatchRow(prompt_ids, max_new_tokens, sender, job.cancelled)
