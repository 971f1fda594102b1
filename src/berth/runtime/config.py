"""Settings of one instance process, parsed from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from berth.runtime.selection import AUTO
from berth.states import CheckpointFormat, MLApp

# Text Embedding batching, for instances whose endpoint does not set it. A wait of 0
# starts a batch as soon as the encoder is idle. Texts that arrive while it encodes
# form the next batch.
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_WAIT_MS = 0.0
# Text Generation on transformers: queued requests generated together at most. A batch
# keeps a KV cache per request, so memory grows with it. 8 is an estimate for the small
# models that run on CPUs.
DEFAULT_GENERATION_MAX_BATCH_SIZE = 8
# Text Generation: the max tokens that one request may generate, which is also how many
# a request without max_tokens generates at most. The model's context bounds both.
DEFAULT_MAX_COMPLETION_TOKENS = 4096
# The largest values that the management API accepts for an endpoint. The runtime's
# command line accepts any positive batch size and completion limit, and any wait of 0
# or more.
MAX_BATCH_SIZE_LIMIT = 1024
MAX_BATCH_WAIT_MS_LIMIT = 1000.0
# 2**20 tokens, a bound that catches only clearly wrong values, because the model's
# context length bounds each request anyway.
MAX_COMPLETION_TOKENS_LIMIT = 1_048_576
# Text Generation: the range of an endpoint's context_length, the tokens of prompt and
# completion together. 16 is an estimate of the smallest window that fits a chat
# template and a short reply. The maximum only catches clearly wrong values, as for
# max_completion_tokens, because each runtime rejects a window above the model's
# trained context length when the model states one.
MIN_CONTEXT_LENGTH = 16
MAX_CONTEXT_LENGTH = 1_048_576
# Context window that llama.cpp allocates at load, for an endpoint without
# context_length, when the model was trained on a longer one. llama.cpp allocates the KV
# cache for the whole window up front, so a model trained on 128k tokens would otherwise
# reserve gigabytes.
LLAMA_CPP_DEFAULT_CONTEXT_LENGTH = 4096


@dataclass(frozen=True)
class RuntimeConfig:
    ml_app: MLApp
    model_path: Path | None  # None when --model-path is empty, as Echo allows
    model_name: str
    instance_id: str
    # How the model files are laid out; None means the ML App's usual folder layout.
    checkpoint_format: CheckpointFormat | None = None
    # The library to run a Text Generation model with, or "auto" to let the instance
    # choose (see berth.runtime.selection).
    runtime: str = AUTO
    # None means the ML App's default: DEFAULT_MAX_BATCH_SIZE texts for Text Embedding,
    # DEFAULT_GENERATION_MAX_BATCH_SIZE requests for Text Generation.
    max_batch_size: int | None = None
    max_batch_wait_ms: float = DEFAULT_MAX_BATCH_WAIT_MS
    # Text Generation: the max tokens per request, and the default for a request without
    # max_tokens.
    max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS
    # Text Generation: the context window in tokens, prompt and completion together. None
    # leaves it to the runtime: the model's trained context length, at most
    # LLAMA_CPP_DEFAULT_CONTEXT_LENGTH on llama.cpp.
    context_length: int | None = None
    # Echo only: pause before each streamed word, standing in for a model's generation time.
    echo_delay_ms: float = 0.0
    # Echo only: SHA-256 rounds per embedded text and per chat or completion request,
    # standing in for a model that computes on one core.
    echo_cpu_rounds: int = 0
    # /health reports the instance stalled when requests are in flight and no response
    # bytes were sent for this long; None turns the check off.
    stall_timeout_s: float | None = None
