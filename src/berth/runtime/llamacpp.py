"""The Text Generation ML App on llama.cpp (llama-cpp-python), for GGUF checkpoints.

Chat prompts are rendered from the chat template in the GGUF metadata
(`tokenizer.chat_template`) by llama-cpp-python's Jinja2ChatFormatter, the formatter its
own chat completion handler builds from that template. Tokens are sampled one at a time
in the worker thread of ThreadedGenerator, so stop sequences, streaming, usage counts
and client disconnects behave as in the transformers runtime.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from berth.runtime.base import GenerationParams, LoadedModel, TextStream
from berth.runtime.config import DEFAULT_MAX_COMPLETION_TOKENS, LLAMA_CPP_DEFAULT_CONTEXT_LENGTH
from berth.runtime.errors import invalid_request
from berth.runtime.loading import check_context_length
from berth.runtime.protocol import ChatMessage
from berth.runtime.selection import Runtime
from berth.runtime.threaded import (
    PromptInput,
    ThreadedGenerator,
    TokenTextSender,
    chat_turns,
    no_chat_template_error,
)

logger = logging.getLogger("berth.runtime")

# Room for one metadata value; context lengths and architecture names are short.
_METADATA_VALUE_BYTES = 256

# llama.cpp takes a 32-bit seed, and with this value it chooses a random one.
_RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED


class _GGUFTextDecoder:
    """The `decode` that IncrementalDetokenizer needs, over llama.cpp's detokenizer."""

    def __init__(self, llm: llama_cpp.Llama) -> None:
        self._llm = llm

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        # Bytes of a character split across tokens decode to U+FFFD, which the
        # detokenizer holds back until the next token completes the character.
        data = self._llm.detokenize(list(ids), special=not skip_special_tokens)
        return data.decode("utf-8", errors="replace")


class LlamaCppGenerator(ThreadedGenerator):
    """Generates with `llm`, whose prompt and completion together stay within
    `context_length` tokens (llm.n_ctx() when None)."""

    def __init__(
        self,
        llm: llama_cpp.Llama,
        model_name: str,
        max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS,
        context_length: int | None = None,
    ) -> None:
        decoder = _GGUFTextDecoder(llm)
        super().__init__(
            model_name,
            decoder,
            _end_of_generation_ids(llm),
            context_length if context_length is not None else llm.n_ctx(),
            vocab_size=llm.n_vocab(),
            max_completion_tokens=max_completion_tokens,
        )
        self._llm = llm
        self._chat_formatter = _chat_formatter(llm)

    async def start_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> TextStream:
        if self._chat_formatter is None:
            raise no_chat_template_error(self._model_name)
        prompt = PromptInput(param="messages", messages=chat_turns(messages))
        return await self._start(prompt, params)

    def _encode_prompt(self, prompt: PromptInput) -> list[int]:
        if prompt.text is not None:
            # special=True parses special tokens written in the text, such as "</s>", as
            # transformers tokenizers do in the transformers runtime.
            return self._llm.tokenize(prompt.text.encode("utf-8"), add_bos=True, special=True)
        assert self._chat_formatter is not None
        try:
            turns: list[Any] = list(prompt.messages)
            formatted = self._chat_formatter(messages=turns)
        except (jinja2.TemplateError, ValueError) as error:
            # Templates reject some conversations with raise_exception(), which
            # llama-cpp-python turns into ValueError, for example a system message that
            # the model does not support.
            raise invalid_request(
                f"The chat template of model '{self._model_name}' rejected the messages: {error}",
                param="messages",
            ) from error
        # Chat templates write the BOS token themselves ({{ bos_token }}) when the model
        # needs one, and the formatter reports that as added_special.
        return self._llm.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )

    def _generate(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        params: GenerationParams,
        sender: TokenTextSender,
        cancelled: threading.Event,
    ) -> None:
        seed = _RANDOM_SEED if params.seed is None else _llama_seed(params.seed)
        self._llm.set_seed(seed)
        # top_k 0, min_p 0 and typical_p 1 turn those samplers off: OpenAI sampling has
        # only temperature and top_p. Temperature 0 selects greedy decoding.
        tokens = self._llm.generate(
            prompt_ids,
            top_k=0,
            top_p=params.top_p,
            min_p=0.0,
            typical_p=1.0,
            temp=params.temperature,
            repeat_penalty=1.0,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            logits_processor=_logit_bias_processors(params),
        )
        try:
            for token_id in tokens:
                if not sender.push(token_id) or sender.token_count >= max_new_tokens:
                    return
        finally:
            tokens.close()


def _logit_bias_processors(params: GenerationParams) -> llama_cpp.LogitsProcessorList | None:
    """Return a processor that adds the request's logit_bias, or None without one.

    llama-cpp-python runs it before its other samplers, on the logits of the whole
    vocabulary in token id order.
    """
    if not params.logit_bias:
        return None
    token_ids = np.array([token_id for token_id, _ in params.logit_bias], dtype=np.intc)
    values = np.array([value for _, value in params.logit_bias], dtype=np.single)

    def add_bias(
        input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]
    ) -> npt.NDArray[np.single]:
        biased = np.copy(scores)
        biased[token_ids] += values
        return biased

    return llama_cpp.LogitsProcessorList([add_bias])


def _llama_seed(seed: int) -> int:
    """Map a request's 64-bit seed to llama.cpp's 32 bits, avoiding the random-seed value."""
    value = seed % (1 << 32)
    return value - 1 if value == _RANDOM_SEED else value


def _end_of_generation_ids(llm: llama_cpp.Llama) -> frozenset[int]:
    """Return every token that llama.cpp counts as an end of generation (EOS, EOT, ...)."""
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return frozenset(
        token_id
        for token_id in range(llm.n_vocab())
        if llama_cpp.llama_vocab_is_eog(vocab, token_id)
    )


def read_trained_context_length(path: Path) -> int | None:
    """Return `<architecture>.context_length` from the GGUF metadata, or None if absent.

    Loads only the vocabulary and the metadata, which takes milliseconds.
    """
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ValueError(f"llama.cpp cannot read the GGUF file {path}")
    try:
        architecture = _metadata_value(model, "general.architecture") or ""
        value = _metadata_value(model, f"{architecture}.context_length") or ""
    finally:
        llama_cpp.llama_model_free(model)
    return int(value) if value.isdigit() and int(value) > 0 else None


def _metadata_value(model: llama_cpp.llama_model_p, key: str) -> str | None:
    buffer = ctypes.create_string_buffer(_METADATA_VALUE_BYTES)
    length = llama_cpp.llama_model_meta_val_str(model, key.encode(), buffer, len(buffer))
    return buffer.value.decode("utf-8", errors="replace") if length >= 0 else None


def _chat_formatter(llm: llama_cpp.Llama) -> Jinja2ChatFormatter | None:
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=_token_text(llm, eos_id),
        bos_token=_token_text(llm, bos_id),
        add_generation_prompt=True,
    )


def _token_text(llm: llama_cpp.Llama, token_id: int) -> str:
    if token_id < 0:
        return ""
    return llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")


def thread_counts() -> tuple[int, int]:
    """Return the threads for generating tokens and for reading the prompt.

    OMP_NUM_THREADS, which torch instances on the same machine obey too, sets both when
    it is a positive number. Otherwise generation uses half of the cores this process may
    run on and prompt reading uses all of them, as llama-cpp-python's defaults do for
    the cores of the whole machine.
    """
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured), int(configured)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return max(cores // 2, 1), cores


def context_window(setting: int | None, trained: int | None, model_name: str) -> int:
    """Return n_ctx, the tokens of prompt and completion together, for llama.cpp.

    `setting` is the endpoint's context_length and `trained` the model's trained context
    length, each None when absent. Without a setting the window is the trained length,
    at most LLAMA_CPP_DEFAULT_CONTEXT_LENGTH. Raises ModelLoadError for a setting above
    the trained length. The endpoint's max_completion_tokens does not change the window,
    so a request without max_tokens stops at the window's end at the latest, and a
    max_tokens that does not fit beside the prompt is rejected with
    context_length_exceeded.
    """
    check_context_length(setting, trained, model_name)
    if setting is not None:
        return setting
    if trained is None:
        return LLAMA_CPP_DEFAULT_CONTEXT_LENGTH
    return min(trained, LLAMA_CPP_DEFAULT_CONTEXT_LENGTH)


def load_llamacpp_model(
    path: Path,
    model_name: str,
    max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS,
    context_length: int | None = None,
) -> LoadedModel:
    """Load the GGUF file at `path`, with the context window that context_window chooses."""
    # Quiet llama.cpp's own log lines before the first call into it. Llama(verbose=False)
    # would do so only once the model is loaded.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    trained = read_trained_context_length(path)
    window = context_window(context_length, trained, model_name)
    threads, batch_threads = thread_counts()
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=window,
        n_threads=threads,
        n_threads_batch=batch_threads,
        # llama.cpp's penalty sampler counts sampled tokens, never the prompt, and keeps
        # only the last last_n_tokens_size of them (64 by default in llama-cpp-python
        # 0.3.36). A completion never outgrows the context, so with the context size the
        # penalties count the whole completion, as in the transformers runtime. The
        # sampler's ring buffer then takes 4 bytes per token of the context.
        last_n_tokens_size=window,
        verbose=False,
    )
    logger.info(
        "llama.cpp loaded %s: context of %d tokens, %d threads (%d for prompts)",
        path.name,
        window,
        threads,
        batch_threads,
    )
    if max_completion_tokens > window:
        logger.info(
            "max_completion_tokens %d exceeds the context of %d tokens, so each completion "
            "ends at the end of the context at the latest",
            max_completion_tokens,
            window,
        )
    # The llama.cpp of llama-cpp-python 0.3.36 rounds n_ctx up to a multiple of 256 (n_ctx
    # 64 allocates 256), so the generator applies the window itself.
    generator = LlamaCppGenerator(llm, model_name, max_completion_tokens, window)
    return LoadedModel(generator=generator, close=generator.close, runtime=Runtime.LLAMA_CPP)
