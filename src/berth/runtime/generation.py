"""The Text Generation ML App: a transformers causal LM, one generation at a time.

`generate` runs in a single worker thread, so requests queue behind each other and the
event loop keeps serving health checks. Tokens travel to the event loop one by one, as
text that is safe to send: complete characters, with stop sequences already cut.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.runtime.base import GenerationParams, LoadedModel, TextGenerator, TextStream
from berth.runtime.decoding import (
    IncrementalDetokenizer,
    LeadingWhitespaceStripper,
    StopSequenceMatcher,
)
from berth.runtime.errors import APIError, invalid_request, server_error
from berth.runtime.loading import prepare_offline_transformers
from berth.runtime.protocol import DEFAULT_MAX_TOKENS, ChatMessage

# Offline mode must be set before transformers is first imported.
prepare_offline_transformers()

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer  # noqa: E402

logger = logging.getLogger("berth.runtime")


@dataclass(frozen=True)
class _Prompt:
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


class _Job:
    """One request's link between the worker thread and the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        # Set to stop generate(): by EOS, a stop sequence, or the request going away.
        self.cancelled = threading.Event()
        # True once the request stopped reading, for example on a client disconnect.
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True
        self.cancelled.set()

    def emit(self, event: _Event) -> None:
        """Queue an event for the request. Called from the worker thread."""
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:
            # The event loop is closed because the server is shutting down.
            self.cancelled.set()


class _CancelCriteria(StoppingCriteria):
    """Stop generate() once the job is cancelled by a disconnect or a matched stop sequence."""

    def __init__(self, cancelled: threading.Event) -> None:
        self._cancelled = cancelled

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        stop = self._cancelled.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _TokenStreamer(BaseStreamer):
    """Receive tokens from generate() and send finished text pieces to the job."""

    def __init__(
        self,
        job: _Job,
        tokenizer: Any,
        prompt_ids: Sequence[int],
        params: GenerationParams,
        eos_ids: frozenset[int],
        strip_leading_whitespace: bool,
    ) -> None:
        self._job = job
        self._eos_ids = eos_ids
        self._detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids)
        self._stops = StopSequenceMatcher(params.stop)
        self._stripper = LeadingWhitespaceStripper() if strip_leading_whitespace else None
        self._prompt_skipped = False
        self._eos_seen = False
        self.token_count = 0

    def put(self, value: torch.Tensor) -> None:
        # generate() passes the prompt ids first, then each new token.
        if not self._prompt_skipped:
            self._prompt_skipped = True
            return
        for token_id in value.reshape(-1).tolist():
            if self._eos_seen or self._stops.stopped or self._job.cancelled.is_set():
                return
            self.token_count += 1
            if token_id in self._eos_ids:
                self._eos_seen = True
                self._job.cancelled.set()
                return
            self._send(self._detokenizer.push(token_id))
            if self._stops.stopped:
                self._job.cancelled.set()

    def end(self) -> None:
        return None

    def finish(self) -> None:
        """Send the held-back text and the finish reason once generate() has returned."""
        if not self._stops.stopped:
            self._send(self._detokenizer.flush())
        tail = self._stops.flush()
        if tail:
            self._job.emit(_Text(tail))
        finish_reason = "stop" if self._eos_seen or self._stops.stopped else "length"
        self._job.emit(_Finished(finish_reason, self.token_count))

    def _send(self, text: str) -> None:
        if self._stripper is not None:
            text = self._stripper.push(text)
        text = self._stops.push(text)
        if text:
            self._job.emit(_Text(text))


class _GenerationStream(TextStream):
    def __init__(self, job: _Job) -> None:
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


class CausalLMGenerator(TextGenerator):
    def __init__(self, model: Any, tokenizer: Any, model_name: str) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._model_name = model_name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="berth-generate")
        self._jobs: set[_Job] = set()
        self._base_config = model.generation_config
        self._eos_ids = _eos_token_ids(model, tokenizer)
        self._pad_id = _pad_token_id(model, tokenizer, self._eos_ids)
        context = getattr(model.config, "max_position_embeddings", None)
        self._context_length: int | None = int(context) if context else None

    async def start_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> TextStream:
        if not getattr(self._tokenizer, "chat_template", None):
            raise invalid_request(
                f"Model '{self._model_name}' has no chat template, so it cannot serve "
                "/v1/chat/completions. Use /v1/completions with a plain prompt.",
                param="messages",
            )
        turns = tuple({"role": m.role, "content": m.content} for m in messages)
        return await self._start(_Prompt(param="messages", messages=turns), params)

    async def start_completion(self, prompt: str, params: GenerationParams) -> TextStream:
        return await self._start(_Prompt(param="prompt", text=prompt), params)

    def close(self) -> None:
        for job in list(self._jobs):
            job.abandon()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _start(self, prompt: _Prompt, params: GenerationParams) -> TextStream:
        loop = asyncio.get_running_loop()
        job = _Job(loop)
        self._jobs.add(job)
        future = loop.run_in_executor(self._executor, self._run, job, prompt, params)
        future.add_done_callback(lambda _: self._jobs.discard(job))
        stream = _GenerationStream(job)
        try:
            await stream.wait_started()
        except BaseException:
            job.abandon()
            raise
        return stream

    def _run(self, job: _Job, prompt: _Prompt, params: GenerationParams) -> None:
        """Tokenize and generate for one job. Runs in the worker thread."""
        if job.cancelled.is_set():
            return
        try:
            prompt_ids = self._encode_prompt(prompt)
            max_new_tokens = self._max_new_tokens(len(prompt_ids), prompt.param, params)
            job.emit(_Started(len(prompt_ids)))
            streamer = _TokenStreamer(
                job,
                self._tokenizer,
                prompt_ids,
                params,
                self._eos_ids,
                strip_leading_whitespace=prompt.text is None,
            )
            self._generate(prompt_ids, max_new_tokens, params, streamer, job.cancelled)
            if job.abandoned:
                logger.info(
                    "generation stopped after %d of at most %d tokens: the request was "
                    "abandoned, for example by a client disconnect",
                    streamer.token_count,
                    max_new_tokens,
                )
            streamer.finish()
        except APIError as error:
            job.emit(_Failed(error))
        except Exception as error:
            logger.exception("generation failed for model %s", self._model_name)
            job.emit(_Failed(server_error(f"Generation failed: {type(error).__name__}: {error}")))

    def _encode_prompt(self, prompt: _Prompt) -> list[int]:
        if prompt.text is not None:
            return list(self._tokenizer(prompt.text)["input_ids"])
        # Render to text first: apply_chat_template(tokenize=True) returns a list of ids
        # in transformers 4 but a BatchEncoding in transformers 5. The template already
        # contains any special tokens the model expects.
        text = self._tokenizer.apply_chat_template(
            list(prompt.messages), tokenize=False, add_generation_prompt=True
        )
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _max_new_tokens(self, prompt_tokens: int, param: str, params: GenerationParams) -> int:
        if prompt_tokens == 0:
            raise invalid_request("The prompt is empty after tokenization.", param=param)
        requested = params.max_tokens if params.max_tokens is not None else DEFAULT_MAX_TOKENS
        if self._context_length is None:
            return requested
        if prompt_tokens >= self._context_length:
            raise invalid_request(
                f"The prompt is {prompt_tokens} tokens long, but model '{self._model_name}' "
                f"has a context length of {self._context_length} tokens for prompt and "
                "completion together. Shorten the prompt.",
                param=param,
            )
        return min(requested, self._context_length - prompt_tokens)

    def _generate(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        params: GenerationParams,
        streamer: _TokenStreamer,
        cancelled: threading.Event,
    ) -> None:
        config = copy.deepcopy(self._base_config)
        config.max_new_tokens = max_new_tokens
        config.pad_token_id = self._pad_id
        config.eos_token_id = sorted(self._eos_ids) or None
        if params.temperature == 0:
            # None leaves the sampling settings unset, so greedy decoding does not
            # warn about a temperature that the model's own config may carry.
            config.do_sample = False
            config.temperature = None
            config.top_p = None
            config.top_k = None
        else:
            # OpenAI sampling has no top-k, so 0 turns off the transformers default of 50.
            config.do_sample = True
            config.temperature = params.temperature
            config.top_p = params.top_p
            config.top_k = 0
        if params.seed is not None:
            torch.manual_seed(params.seed)

        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=self._model.device)
        with torch.inference_mode():
            self._model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_CancelCriteria(cancelled)]),
            )


def _eos_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = model.generation_config.eos_token_id
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(token_id) for token_id in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _pad_token_id(model: Any, tokenizer: Any, eos_ids: frozenset[int]) -> int | None:
    for candidate in (model.generation_config.pad_token_id, tokenizer.pad_token_id):
        if candidate is not None:
            return int(candidate)
    return min(eos_ids) if eos_ids else None


def load_generation_model(folder: Path, model_name: str) -> LoadedModel:
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    model.eval()
    generator = CausalLMGenerator(model, tokenizer, model_name)
    return LoadedModel(generator=generator, close=generator.close)
