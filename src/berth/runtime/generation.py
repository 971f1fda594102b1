"""The Text Generation ML App on transformers: a causal LM behind ThreadedGenerator.

`generate` runs in the single worker thread of ThreadedGenerator, so the event loop
keeps serving health checks. Requests that arrive while the worker is busy and share
their sampling settings are generated together in one left-padded batch.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from berth.runtime.base import GenerationParams, LoadedModel, TextStream
from berth.runtime.config import DEFAULT_MAX_COMPLETION_TOKENS
from berth.runtime.loading import (
    TRAINED_CONTEXT_LENGTH_ATTRIBUTE,
    check_context_length,
    prepare_offline_transformers,
    trained_context_length,
)
from berth.runtime.protocol import ChatMessage
from berth.runtime.threaded import (
    BatchRow,
    PromptInput,
    ThreadedGenerator,
    TokenTextSender,
    chat_turns,
    no_chat_template_error,
)

# Offline mode must be set before transformers is first imported.
prepare_offline_transformers()

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from berth.runtime.decode_loop import DecodeLoop  # noqa: E402
from berth.runtime.logit_adjustment import LogitAdjustment  # noqa: E402

# The prompt of the check that DecodeLoop.for_model runs at load.
_CHECK_PROMPT = "A harbor at dawn"


class _CancelCriteria(StoppingCriteria):
    """Stop generate() once the job is cancelled by a disconnect or a matched stop sequence."""

    def __init__(self, cancelled: threading.Event) -> None:
        self._cancelled = cancelled
        # The results for (not cancelled, cancelled), made on the first call. generate()
        # only reads them, and a new tensor per token cost about 2 % of a small model's
        # generation time.
        self._flags: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        if self._flags is None:
            shape, device = (input_ids.shape[0],), input_ids.device
            self._flags = (
                torch.zeros(shape, dtype=torch.bool, device=device),
                torch.ones(shape, dtype=torch.bool, device=device),
            )
        return self._flags[self._cancelled.is_set()]  # type: ignore[return-value]


class _AdjustLogitsProcessor(LogitsProcessor):
    """Apply a request's penalties and logit bias in generate(), counting the tokens
    generated after the first `prompt_length` positions of each row."""

    def __init__(self, adjustment: LogitAdjustment, prompt_length: int) -> None:
        self._adjustment = adjustment
        self._prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        counts = None
        if self._adjustment.counts_tokens:
            counts = self._adjustment.count(input_ids[:, self._prompt_length :])
        return self._adjustment.apply(scores, counts)  # type: ignore[return-value]


class _StreamerAdapter(BaseStreamer):
    """Pass the tokens of generate() to a TokenTextSender, skipping the prompt ids."""

    def __init__(self, sender: TokenTextSender) -> None:
        self._sender = sender
        self._prompt_skipped = False

    def put(self, value: torch.Tensor) -> None:
        # generate() passes the prompt ids first, then each new token.
        if not self._prompt_skipped:
            self._prompt_skipped = True
            return
        for token_id in value.reshape(-1).tolist():
            if not self._sender.push(token_id):
                return

    def end(self) -> None:
        return None


class _BatchStreamerAdapter(BaseStreamer):
    """Pass each row's tokens of a batched generate() to the row's sender.

    A row stops receiving tokens once its sender stops or it has its maximum, so the
    padding that generate() adds after a finished row never reaches the sender. The row's
    request is finished at that moment, so a short request does not wait for the longest
    one in its batch.
    """

    def __init__(self, rows: list[BatchRow]) -> None:
        self._rows = rows
        self._prompt_skipped = False
        self._active = [True] * len(rows)
        self._counts = [0] * len(rows)

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_skipped:
            self._prompt_skipped = True
            return
        for index, token_id in enumerate(value.reshape(-1).tolist()):
            if not self._active[index]:
                continue
            row = self._rows[index]
            self._counts[index] += 1
            if not row.sender.push(token_id) or self._counts[index] >= row.max_new_tokens:
                self._active[index] = False
                row.sender.finish()

    def end(self) -> None:
        return None


class _RowStopCriteria(StoppingCriteria):
    """Finish each row of a batch once its request is cancelled or has its maximum tokens."""

    def __init__(self, rows: list[BatchRow], prompt_length: int) -> None:
        self._rows = rows
        self._prompt_length = prompt_length

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self._prompt_length
        flags = [row.cancelled.is_set() or generated >= row.max_new_tokens for row in self._rows]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


class CausalLMGenerator(ThreadedGenerator):
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_name: str,
        max_batch_size: int,
        max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS,
        context_length: int | None = None,
    ) -> None:
        eos_ids = _eos_token_ids(model, tokenizer)
        trained = trained_context_length(
            getattr(model.config, TRAINED_CONTEXT_LENGTH_ATTRIBUTE, None)
        )
        # The endpoint's context_length caps prompt and completion together below the
        # model's own maximum. Raises ModelLoadError above it.
        check_context_length(context_length, trained, model_name)
        super().__init__(
            model_name,
            tokenizer,
            eos_ids,
            context_length if context_length is not None else trained,
            vocab_size=_logits_width(model),
            max_completion_tokens=max_completion_tokens,
        )
        self._model = model
        self._base_config = model.generation_config
        self._pad_id = _pad_token_id(model, tokenizer, eos_ids)
        self.max_batch_size = max_batch_size
        if self._pad_id is None:
            # Rows of different lengths cannot be padded without a padding token.
            self.max_batch_size = 1
        # Serves requests generated alone, when it chooses the tokens generate() would.
        self._loop = DecodeLoop.for_model(
            model,
            self._base_config,
            encode_prompt(tokenizer, PromptInput(param="prompt", text=_CHECK_PROMPT)),
        )

    async def start_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> TextStream:
        return await self._start(chat_prompt(self._tokenizer, messages, self._model_name), params)

    def _encode_prompt(self, prompt: PromptInput) -> list[int]:
        return encode_prompt(self._tokenizer, prompt)

    def _generate(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        params: GenerationParams,
        sender: TokenTextSender,
        cancelled: threading.Event,
    ) -> None:
        try:
            if self._loop is not None:
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                self._loop.run(
                    prompt_ids,
                    max_new_tokens,
                    params.temperature,
                    params.top_p,
                    sender.push,
                    self._adjustment(params),
                )
                return
            config = self._generation_config(max_new_tokens, params)
            input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=self._model.device)
            with torch.inference_mode():
                self._model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    generation_config=config,
                    logits_processor=self._logits_processors(params, len(prompt_ids)),
                    streamer=_StreamerAdapter(sender),
                    stopping_criteria=StoppingCriteriaList([_CancelCriteria(cancelled)]),
                )
        finally:
            if params.seed is not None:
                # The seed set torch's global generator, which every request samples
                # from. Reseed it at random, or the requests after this one would
                # repeat the same "random" text.
                torch.seed()

    def _generate_batch(self, rows: list[BatchRow], params: GenerationParams) -> None:
        config = self._generation_config(max(row.max_new_tokens for row in rows), params)
        length = max(len(row.prompt_ids) for row in rows)
        pad_id = self._pad_id
        assert pad_id is not None, "max_batch_size is 1 without a padding token"
        # Decoder-only models continue from the last position, so padding goes on the left.
        padded = [[pad_id] * (length - len(row.prompt_ids)) + row.prompt_ids for row in rows]
        mask = [[0] * (length - len(row.prompt_ids)) + [1] * len(row.prompt_ids) for row in rows]
        device = self._model.device
        input_ids = torch.tensor(padded, dtype=torch.long, device=device)
        with torch.inference_mode():
            self._model.generate(
                input_ids=input_ids,
                attention_mask=torch.tensor(mask, dtype=torch.long, device=device),
                generation_config=config,
                logits_processor=self._logits_processors(params, length),
                streamer=_BatchStreamerAdapter(rows),
                stopping_criteria=StoppingCriteriaList([_RowStopCriteria(rows, length)]),
            )

    def _generation_config(self, max_new_tokens: int, params: GenerationParams) -> Any:
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
        elif params.adjusts_logits:
            # _logits_processors applies temperature and top-p after the penalties and
            # logit bias. generate() would run its own warpers first, so they are off.
            config.do_sample = True
            config.temperature = 1.0
            config.top_p = 1.0
            config.top_k = 0
        else:
            # OpenAI sampling has no top-k, so 0 turns off the transformers default of 50.
            config.do_sample = True
            config.temperature = params.temperature
            config.top_p = params.top_p
            config.top_k = 0
        if params.seed is not None:
            torch.manual_seed(params.seed)
        return config

    def _adjustment(self, params: GenerationParams) -> LogitAdjustment | None:
        if not params.adjusts_logits:
            return None
        return LogitAdjustment(params, _logits_width(self._model), self._model.device)

    def _logits_processors(
        self, params: GenerationParams, prompt_length: int
    ) -> LogitsProcessorList | None:
        """Return the processors of a request with penalties or a logit bias, else None.

        generate() appends custom processors after its own, so temperature and top-p come
        here too, in the order that DecodeLoop uses: penalties and bias, temperature, top-p.
        """
        adjustment = self._adjustment(params)
        if adjustment is None:
            return None
        processors = LogitsProcessorList([_AdjustLogitsProcessor(adjustment, prompt_length)])
        if params.temperature == 0:
            return processors
        if params.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(params.temperature))
        if params.top_p < 1.0:
            processors.append(TopPLogitsWarper(params.top_p))
        return processors


def chat_prompt(tokenizer: Any, messages: Sequence[ChatMessage], model_name: str) -> PromptInput:
    """Return the chat prompt, raising APIError (400) when the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise no_chat_template_error(model_name)
    return PromptInput(param="messages", messages=chat_turns(messages))


def encode_prompt(tokenizer: Any, prompt: PromptInput) -> list[int]:
    """Return the token ids of a plain or chat prompt with a transformers tokenizer."""
    if prompt.text is not None:
        return list(tokenizer(prompt.text)["input_ids"])
    # Render to text first: apply_chat_template(tokenize=True) returns a list of ids
    # in transformers 4 but a BatchEncoding in transformers 5. The template already
    # contains any special tokens the model expects.
    text = tokenizer.apply_chat_template(
        list(prompt.messages), tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


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


def _logits_width(model: Any) -> int:
    """Return the number of logits per position, which can exceed the tokenizer's size."""
    output_embeddings = model.get_output_embeddings()
    if output_embeddings is not None and hasattr(output_embeddings, "weight"):
        return int(output_embeddings.weight.shape[0])
    return int(model.config.vocab_size)


def _pad_token_id(model: Any, tokenizer: Any, eos_ids: frozenset[int]) -> int | None:
    for candidate in (model.generation_config.pad_token_id, tokenizer.pad_token_id):
        if candidate is not None:
            return int(candidate)
    return min(eos_ids) if eos_ids else None


def load_generation_model(
    folder: Path,
    model_name: str,
    max_batch_size: int,
    max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS,
    context_length: int | None = None,
) -> LoadedModel:
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    model.eval()
    generator = CausalLMGenerator(
        model, tokenizer, model_name, max_batch_size, max_completion_tokens, context_length
    )
    return LoadedModel(generator=generator, close=generator.close)
