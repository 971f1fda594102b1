"""The Echo ML App: responds at once without a model, to measure the platform's own overhead.

Chat returns the last user message, completions return the prompt, and embeddings are
8-dimensional unit vectors derived from a SHA-256 of each text. Token counts are
whitespace-separated words. A max_tokens the client sets cuts the reply to that many
words, and stop sequences apply as they do for a real model. An optional delay before each
streamed word (and once before an embedding reply) makes requests last long
enough to be in flight while tests change or break the platform. Optional CPU work
(rounds of SHA-256 per embedded text and per chat or completion request) makes Echo
stand in for a model that computes on one core: it runs in the request's thread and
needs the GIL throughout, and it leaves the replies unchanged.

This module must not import torch, transformers or sentence_transformers, so that an
Echo instance starts in well under a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import struct
from collections.abc import AsyncIterator, Sequence

from berth.runtime.base import (
    Embedder,
    EmbeddingResult,
    GenerationParams,
    LoadedModel,
    TextGenerator,
    TextStream,
)
from berth.runtime.config import DEFAULT_MAX_COMPLETION_TOKENS
from berth.runtime.decoding import StopSequenceMatcher
from berth.runtime.protocol import ChatMessage

ECHO_DIMENSION = 8
_WORD_WITH_LEADING_SPACE = re.compile(r"\s*\S+")
_FLOAT32_VECTOR = struct.Struct(f"<{ECHO_DIMENSION}f")
_INT32_VECTOR = struct.Struct(f"<{ECHO_DIMENSION}i")


def count_words(text: str) -> int:
    return len(text.split())


def split_words(text: str) -> list[str]:
    """Split text into pieces of one word each whose concatenation is the original text."""
    pieces = _WORD_WITH_LEADING_SPACE.findall(text)
    trailing = text[sum(len(piece) for piece in pieces) :]
    if trailing:
        if pieces:
            pieces[-1] += trailing
        else:
            pieces.append(trailing)
    return pieces


def hash_vector(text: str) -> list[float]:
    """Return a deterministic unit vector for `text`, exactly representable as float32."""
    components = _INT32_VECTOR.unpack(hashlib.sha256(text.encode("utf-8")).digest())
    norm = math.sqrt(sum(value * value for value in components)) or 1.0
    # Rounding through float32 makes the JSON floats equal to the base64 encoding.
    return list(_FLOAT32_VECTOR.unpack(_FLOAT32_VECTOR.pack(*(v / norm for v in components))))


def hash_repeatedly(text: str, rounds: int) -> bytes:
    """Return SHA-256 applied `rounds` times, first to the UTF-8 text and then to each digest.

    The work per round is fixed, so a request costs the same CPU time on an idle and on a
    loaded machine. Every round after the first hashes 32 bytes, and CPython's hashlib
    keeps the GIL for data under 2048 bytes (HASHLIB_GIL_MINSIZE), so the rounds use one
    core however many threads wait. Zero rounds return the UTF-8 text itself.
    """
    data = text.encode("utf-8")
    for _ in range(rounds):
        data = hashlib.sha256(data).digest()
    return data


class EchoStream(TextStream):
    """Stream of a precomputed reply, one word per delta, with no delay between them."""

    def __init__(
        self, reply: str, prompt_tokens: int, params: GenerationParams, delay_s: float = 0.0
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self._pieces, self._final_finish_reason = self._apply_limits(split_words(reply), params)
        self._delay_s = delay_s
        # Without a delay the reply is complete at once, so watching for a disconnect
        # would only add overhead.
        self.watch_disconnect = delay_s > 0

    @staticmethod
    def _apply_limits(pieces: list[str], params: GenerationParams) -> tuple[list[str], str]:
        finish_reason = "stop"
        if params.max_tokens is not None and len(pieces) > params.max_tokens:
            pieces = pieces[: params.max_tokens]
            finish_reason = "length"

        matcher = StopSequenceMatcher(params.stop)
        limited: list[str] = []
        for piece in pieces:
            limited.append(matcher.push(piece))
            if matcher.stopped:
                return limited, "stop"
        limited.append(matcher.flush())
        return limited, finish_reason

    async def _iterate(self) -> AsyncIterator[str]:
        for piece in self._pieces:
            if piece:
                if self._delay_s:
                    await asyncio.sleep(self._delay_s)
                yield piece
        self.completion_tokens = count_words("".join(self._pieces))
        self.finish_reason = self._final_finish_reason

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def aclose(self) -> None:
        return None


class EchoGenerator(TextGenerator):
    def __init__(self, delay_s: float = 0.0, cpu_rounds: int = 0) -> None:
        self._delay_s = delay_s
        self._cpu_rounds = cpu_rounds

    async def start_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> TextStream:
        params.check_max_tokens_limit(DEFAULT_MAX_COMPLETION_TOKENS)
        reply = next((m.content for m in reversed(messages) if m.role == "user"), "")
        prompt_tokens = sum(count_words(message.content) for message in messages)
        if self._cpu_rounds:
            hash_repeatedly(reply, self._cpu_rounds)
        return EchoStream(reply, prompt_tokens, params, self._delay_s)

    async def start_completion(self, prompt: str, params: GenerationParams) -> TextStream:
        params.check_max_tokens_limit(DEFAULT_MAX_COMPLETION_TOKENS)
        if self._cpu_rounds:
            hash_repeatedly(prompt, self._cpu_rounds)
        return EchoStream(prompt, count_words(prompt), params, self._delay_s)


class EchoEmbedder(Embedder):
    dimension = ECHO_DIMENSION

    def __init__(self, delay_s: float = 0.0, cpu_rounds: int = 0) -> None:
        self._delay_s = delay_s
        self._cpu_rounds = cpu_rounds

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        if self._cpu_rounds:
            for text in texts:
                hash_repeatedly(text, self._cpu_rounds)
        vectors = [hash_vector(text) for text in texts]
        return EmbeddingResult(vectors, sum(count_words(text) for text in texts))


def load_echo(delay_s: float = 0.0, cpu_rounds: int = 0) -> LoadedModel:
    """Return the Echo model.

    `delay_s` is the pause before each streamed word. `cpu_rounds` is the number of
    SHA-256 rounds (see `hash_repeatedly`) per embedded text and per chat or completion
    request.
    """
    return LoadedModel(
        generator=EchoGenerator(delay_s, cpu_rounds), embedder=EchoEmbedder(delay_s, cpu_rounds)
    )
