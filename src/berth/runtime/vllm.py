"""The Text Generation ML App on vLLM, for transformers checkpoints on a CUDA GPU.

vLLM schedules concurrent requests together (continuous batching), so requests do not
wait for each other as they do in the transformers runtime. Prompts are tokenized here
with the model's transformers tokenizer, so chat templates, context checks and prompt
token counts match the transformers runtime, and vLLM receives token ids.

vllm is imported only by load_vllm_model, so this module imports without it.
NOTE: written against vLLM's documented AsyncLLMEngine API (`from_engine_args`, and
`generate(prompt, sampling_params, request_id)` yielding cumulative RequestOutputs).
Berth's tests have no GPU, so they run this adapter against a stand-in for the engine
(tests/unit/test_runtime_vllm.py) and never against vLLM itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from berth.runtime.base import GenerationParams, LoadedModel, TextGenerator, TextStream
from berth.runtime.config import DEFAULT_MAX_COMPLETION_TOKENS
from berth.runtime.decoding import LeadingWhitespaceStripper
from berth.runtime.generation import chat_prompt, encode_prompt
from berth.runtime.protocol import ChatMessage
from berth.runtime.selection import Runtime
from berth.runtime.threaded import PromptInput, limit_new_tokens


class _VLLMStream(TextStream):
    """Text deltas of one vLLM request, cut from the cumulative text of each output."""

    def __init__(self, outputs: Any, prompt_tokens: int, strip_leading_whitespace: bool) -> None:
        self._outputs = outputs
        self.prompt_tokens = prompt_tokens
        self._stripper = LeadingWhitespaceStripper() if strip_leading_whitespace else None

    async def _iterate(self) -> AsyncIterator[str]:
        sent_length = 0
        async for output in self._outputs:
            completion = output.outputs[0]
            delta = completion.text[sent_length:]
            sent_length = len(completion.text)
            if self._stripper is not None:
                delta = self._stripper.push(delta)
            if delta:
                yield delta
            self.completion_tokens = len(completion.token_ids)
            if output.finished:
                # vLLM reports "stop" for EOS and stop strings, "length" for max_tokens.
                self.finish_reason = "length" if completion.finish_reason == "length" else "stop"

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def aclose(self) -> None:
        # Closing vLLM's generator aborts the request in the engine.
        await self._outputs.aclose()


class VLLMGenerator(TextGenerator):
    def __init__(
        self,
        engine: Any,
        sampling_params_type: Any,
        tokenizer: Any,
        model_name: str,
        context_length: int | None,
        vocab_size: int | None = None,
        max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS,
    ) -> None:
        self._engine = engine
        self._max_completion_tokens = max_completion_tokens
        # The token ids that logit_bias may name: vLLM's vocabulary size, else the
        # tokenizer's.
        self._vocab_size = vocab_size if vocab_size is not None else len(tokenizer)
        self._sampling_params_type = sampling_params_type
        self._tokenizer = tokenizer
        self._model_name = model_name
        self._context_length = context_length

    async def start_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> TextStream:
        return await self._start(chat_prompt(self._tokenizer, messages, self._model_name), params)

    async def start_completion(self, prompt: str, params: GenerationParams) -> TextStream:
        return await self._start(PromptInput(param="prompt", text=prompt), params)

    async def _start(self, prompt: PromptInput, params: GenerationParams) -> TextStream:
        params.check_logit_bias(self._vocab_size)
        prompt_ids = await asyncio.to_thread(encode_prompt, self._tokenizer, prompt)
        max_new_tokens = limit_new_tokens(
            len(prompt_ids),
            prompt.param,
            params,
            self._context_length,
            self._model_name,
            self._max_completion_tokens,
        )
        sampling = self._sampling_params_type(
            n=1,
            max_tokens=max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            logit_bias=dict(params.logit_bias) or None,
        )
        outputs = self._engine.generate(
            {"prompt_token_ids": prompt_ids}, sampling, request_id=uuid.uuid4().hex
        )
        return _VLLMStream(outputs, len(prompt_ids), strip_leading_whitespace=prompt.text is None)

    def close(self) -> None:
        shutdown = getattr(self._engine, "shutdown", None)
        if shutdown is not None:
            shutdown()


def load_vllm_model(
    folder: Path,
    model_name: str,
    max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS,
    context_length: int | None = None,
) -> LoadedModel:
    """Start vLLM's engine on `folder`, with `context_length` as its max_model_len.

    None lets vLLM derive max_model_len from the model's config. vLLM itself rejects a
    max_model_len above that derived length (unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 is
    set), and its ValueError becomes the load failure.
    """
    from transformers import AutoTokenizer
    from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    # NOTE: vLLM reserves 90% of the GPU memory by default, so a second instance on the
    # same GPU fails to start. Give each endpoint one instance per GPU.
    engine = AsyncLLMEngine.from_engine_args(
        AsyncEngineArgs(
            model=str(folder),
            tokenizer=str(folder),
            max_model_len=context_length,
            disable_log_stats=True,
        )
    )
    model_config = getattr(engine, "model_config", None)
    context_length = getattr(model_config, "max_model_len", None)
    get_vocab_size = getattr(model_config, "get_vocab_size", None)
    vocab_size = get_vocab_size() if get_vocab_size is not None else None
    generator = VLLMGenerator(
        engine,
        SamplingParams,
        tokenizer,
        model_name,
        context_length,
        vocab_size,
        max_completion_tokens,
    )
    return LoadedModel(generator=generator, close=generator.close, runtime=Runtime.VLLM)
