"""Interfaces between the HTTP routes and the loaded model of each ML App."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from berth.runtime.errors import INVALID_VALUE, invalid_request
from berth.runtime.protocol import ChatMessage, SamplingParameters

FinishReason = str  # "stop" (EOS or a stop sequence) or "length" (token limit)


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings of one request. max_tokens None means the generator's default."""

    max_tokens: int | None
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    # Name of the request field that set max_tokens, for error messages.
    max_tokens_param: str = "max_tokens"
    # OpenAI's penalties: each subtracts from the logit of a token that the completion
    # already contains, the frequency penalty once per occurrence and the presence
    # penalty once.
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # Pairs of a token id and the value added to its logit, sorted by token id.
    logit_bias: tuple[tuple[int, float], ...] = ()
    # Prefix of the request's field names in error messages: "parameters." for /predict.
    param_prefix: str = ""

    @classmethod
    def from_request(
        cls,
        request: SamplingParameters,
        max_tokens: int | None = None,
        max_tokens_param: str = "max_tokens",
        param_prefix: str = "",
    ) -> GenerationParams:
        return cls(
            max_tokens=max_tokens if max_tokens is not None else request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=tuple(request.stop),
            seed=request.seed,
            max_tokens_param=max_tokens_param,
            frequency_penalty=request.frequency_penalty,
            presence_penalty=request.presence_penalty,
            logit_bias=tuple(sorted(request.logit_bias.items())),
            param_prefix=param_prefix,
        )

    @property
    def adjusts_logits(self) -> bool:
        """Whether a penalty or a logit bias changes the model's logits."""
        return bool(self.frequency_penalty or self.presence_penalty or self.logit_bias)

    def check_logit_bias(self, vocab_size: int) -> None:
        """Raise APIError (400, invalid_value) for a logit_bias key outside the vocabulary."""
        outside = [token_id for token_id, _ in self.logit_bias if token_id >= vocab_size]
        if not outside:
            return
        field = f"{self.param_prefix}logit_bias"
        raise invalid_request(
            f"{field} contains token id {outside[0]}, but the model's vocabulary has "
            f"{vocab_size} tokens, with ids from 0 to {vocab_size - 1}. "
            "Use token ids of this model's tokenizer.",
            param=field,
            code=INVALID_VALUE,
        )

    def check_max_tokens_limit(self, limit: int) -> None:
        """Raise APIError (400, invalid_value) for a max_tokens above `limit`.

        `limit` is the endpoint's max_completion_tokens setting. A runtime with a known
        context length checks the context first, so that a max_tokens that does not fit
        beside the prompt gets context_length_exceeded.
        """
        if self.max_tokens is None or self.max_tokens <= limit:
            return
        field = self.max_tokens_param
        raise invalid_request(
            f"{field} is {self.max_tokens}, but this endpoint generates at most "
            f"{limit} tokens per completion. Set {field} to at most {limit}.",
            param=field,
            code=INVALID_VALUE,
        )


class TextStream(abc.ABC):
    """Text of one running generation, as an async iterator of text deltas.

    The prompt is already tokenized when the stream is returned. `finish_reason` and
    `completion_tokens` are final once iteration has ended.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None
    # False for streams that finish at once, where watching for a client disconnect
    # would only add overhead.
    watch_disconnect: bool = True

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[str]: ...

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop the generation early, for example because the client disconnected."""

    async def collect(self) -> str:
        """Consume the whole stream and return its text."""
        pieces = [piece async for piece in self]
        return "".join(pieces)


class TextGenerator(abc.ABC):
    @property
    def queued_requests(self) -> int:
        """Return the number of requests waiting for generation to start."""
        return 0

    @abc.abstractmethod
    async def start_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> TextStream:
        """Start a chat completion. Raises APIError (400) for a prompt the model cannot take."""

    @abc.abstractmethod
    async def start_completion(self, prompt: str, params: GenerationParams) -> TextStream:
        """Start a text completion. Raises APIError (400) for a prompt the model cannot take."""


@dataclass
class EmbeddingResult:
    """Vectors in input order (each a float sequence or a 1-D numpy array) and the token count."""

    vectors: Sequence[Sequence[float]]
    prompt_tokens: int


class Embedder(abc.ABC):
    dimension: int

    @abc.abstractmethod
    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Return one L2-normalized vector per text."""


@dataclass
class LoadedModel:
    """A model ready to serve. Each ML App fills in the capabilities its routes need."""

    generator: TextGenerator | None = None
    embedder: Embedder | None = None
    close: Callable[[], None] = field(default=lambda: None)
    # The library that runs the model ("transformers", "llama.cpp", ...), sent by /ready.
    runtime: str = ""
    # Why this runtime serves the model instead of a faster one, or "".
    runtime_note: str = ""
