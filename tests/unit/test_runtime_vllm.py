"""The vLLM runtime's adapter, against a stand-in for vLLM's engine.

vLLM needs a CUDA GPU, which the test machines do not have. These tests therefore
replace its AsyncLLMEngine with an object that follows the same contract:
`generate(prompt, sampling_params, request_id)` returns an async generator of outputs
whose text and token ids grow with each step, and closing the generator aborts the
request. They check Berth's side (prompts, sampling settings, text deltas, token counts
and the finish reason), not that vLLM itself runs.
"""

from __future__ import annotations

import sys
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from berth.runtime.base import GenerationParams
from berth.runtime.errors import APIError
from berth.runtime.protocol import ChatMessage

pytestmark = pytest.mark.anyio


@dataclass
class SamplingParams:
    """The fields of vllm.SamplingParams that the adapter sets."""

    n: int
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str] | None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class Output:
    outputs: list[Completion]
    finished: bool


@dataclass
class FakeEngine:
    """Replies with `words`, one per step, as cumulative outputs like vLLM's."""

    words: list[str]
    finish_reason: str = "length"
    calls: list[tuple[Any, SamplingParams, str]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)

    def generate(
        self, prompt: Any, sampling: SamplingParams, request_id: str
    ) -> AsyncIterator[Output]:
        self.calls.append((prompt, sampling, request_id))

        async def outputs() -> AsyncIterator[Output]:
            text = ""
            try:
                for index, word in enumerate(self.words):
                    text += word
                    last = index == len(self.words) - 1
                    completion = Completion(
                        text, list(range(index + 1)), self.finish_reason if last else None
                    )
                    yield Output([completion], finished=last)
            except GeneratorExit:
                self.aborted.append(request_id)
                raise

        return outputs()


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from berth.hub.demo import build_demo_generation_model

    return Path(build_demo_generation_model(tmp_path_factory.mktemp("vllm") / "demo"))


@pytest.fixture(scope="module")
def tokenizer(demo_folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(demo_folder), local_files_only=True)


def params(**overrides: Any) -> GenerationParams:
    values: dict[str, Any] = {
        "max_tokens": 8,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ("END",),
        "seed": 7,
    }
    return GenerationParams(**{**values, **overrides})


def generator(
    engine: FakeEngine,
    tokenizer: Any,
    context_length: int | None = 512,
    max_completion_tokens: int = 4096,
) -> Any:
    from berth.runtime.vllm import VLLMGenerator

    return VLLMGenerator(
        engine,
        SamplingParams,
        tokenizer,
        "tiny",
        context_length,
        max_completion_tokens=max_completion_tokens,
    )


async def test_completion_streams_deltas_and_counts(tokenizer: Any) -> None:
    engine = FakeEngine(["Once", " upon", " a time"])

    stream = await generator(engine, tokenizer).start_completion("Tell me", params())
    pieces = [piece async for piece in stream]

    assert pieces == ["Once", " upon", " a time"]
    assert stream.completion_tokens == 3
    assert stream.finish_reason == "length"
    assert stream.prompt_tokens == len(tokenizer("Tell me")["input_ids"])


async def test_sampling_settings_reach_the_engine(tokenizer: Any) -> None:
    engine = FakeEngine(["x"], finish_reason="stop")

    stream = await generator(engine, tokenizer).start_completion("hi", params())
    _pieces = [piece async for piece in stream]

    ((prompt, sampling, request_id),) = engine.calls
    assert prompt == {"prompt_token_ids": tokenizer("hi")["input_ids"]}
    assert sampling == SamplingParams(1, 8, 0.5, 0.9, 7, ["END"])
    assert request_id
    assert stream.finish_reason == "stop"


async def test_chat_uses_the_chat_template(tokenizer: Any) -> None:
    engine = FakeEngine(["  Hello"])
    messages = [ChatMessage(role="user", content="hello")]

    stream = await generator(engine, tokenizer).start_chat(messages, params(stop=()))
    pieces = [piece async for piece in stream]

    (call,) = engine.calls
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    assert call[0]["prompt_token_ids"] == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    # A chat reply starts without the leading whitespace, as in the transformers runtime.
    assert "".join(pieces) == "Hello"
    assert call[1].stop is None


async def test_prompt_longer_than_context_is_rejected(tokenizer: Any) -> None:
    engine = FakeEngine(["x"])

    with pytest.raises(APIError) as raised:
        await generator(engine, tokenizer, context_length=4).start_completion(
            "a prompt that is clearly longer than four tokens", params()
        )

    assert "context length of 4 tokens" in str(raised.value.message)
    assert engine.calls == []


async def test_max_tokens_beyond_context_is_rejected(tokenizer: Any) -> None:
    engine = FakeEngine(["x"])

    with pytest.raises(APIError) as raised:
        await generator(engine, tokenizer, context_length=16).start_completion(
            "hello", params(max_tokens=16)
        )

    assert raised.value.status_code == 400
    assert raised.value.code == "context_length_exceeded"
    assert raised.value.param == "max_tokens"
    assert "Set max_tokens to at most" in raised.value.message
    assert engine.calls == []


async def test_closing_the_stream_aborts_the_request(tokenizer: Any) -> None:
    engine = FakeEngine(["a", "b", "c", "d"])

    stream = await generator(engine, tokenizer).start_completion("hi", params())
    iterator = aiter(stream)
    first = await anext(iterator)
    await stream.aclose()

    assert first == "a"
    assert engine.aborted == [engine.calls[0][2]]


async def test_penalties_and_logit_bias_reach_the_engine(tokenizer: Any) -> None:
    engine = FakeEngine(["x"], finish_reason="stop")
    settings = params(frequency_penalty=0.5, presence_penalty=-1.0, logit_bias=((5, -100.0),))

    stream = await generator(engine, tokenizer).start_completion("hi", settings)
    _pieces = [piece async for piece in stream]

    ((_prompt, sampling, _request_id),) = engine.calls
    assert sampling.frequency_penalty == 0.5
    assert sampling.presence_penalty == -1.0
    assert sampling.logit_bias == {5: -100.0}


async def test_logit_bias_outside_vocabulary_is_rejected(tokenizer: Any) -> None:
    engine = FakeEngine(["x"])
    settings = params(logit_bias=((len(tokenizer), 1.0),))

    with pytest.raises(APIError) as raised:
        await generator(engine, tokenizer).start_completion("hi", settings)

    assert raised.value.status_code == 400
    assert raised.value.param == "logit_bias"
    assert f"contains token id {len(tokenizer)}" in raised.value.message
    assert engine.calls == []


async def test_default_max_tokens_fills_context(tokenizer: Any) -> None:
    engine = FakeEngine(["x"], finish_reason="stop")

    stream = await generator(engine, tokenizer, context_length=100).start_completion(
        "hi", params(max_tokens=None)
    )
    _pieces = [piece async for piece in stream]

    ((_prompt, sampling, _request_id),) = engine.calls
    assert sampling.max_tokens == 100 - stream.prompt_tokens


async def test_completion_limit_is_default_max_tokens(tokenizer: Any) -> None:
    engine = FakeEngine(["x"], finish_reason="stop")
    limited = generator(engine, tokenizer, context_length=100_000, max_completion_tokens=20_000)

    stream = await limited.start_completion("hi", params(max_tokens=None))
    _pieces = [piece async for piece in stream]

    ((_prompt, sampling, _request_id),) = engine.calls
    assert sampling.max_tokens == 20_000


async def test_max_tokens_above_completion_limit_is_rejected(tokenizer: Any) -> None:
    engine = FakeEngine(["x"])
    limited = generator(engine, tokenizer, context_length=100_000, max_completion_tokens=20)

    with pytest.raises(APIError) as raised:
        await limited.start_completion("hi", params(max_tokens=21))

    assert raised.value.code == "invalid_value"
    assert raised.value.param == "max_tokens"
    assert "this endpoint generates at most 20 tokens per completion" in raised.value.message
    assert engine.calls == []


# load_vllm_model, against a stand-in for the vllm package.

# The max_model_len that the stand-in derives from the demo model's config, as vLLM does.
DERIVED_MAX_MODEL_LEN = 512


@dataclass
class EngineArgs:
    """Records the keyword arguments that vllm.AsyncEngineArgs received."""

    model: str
    tokenizer: str
    max_model_len: int | None = None
    disable_log_stats: bool = False


@dataclass
class ModelConfig:
    max_model_len: int


def fake_vllm(started: list[EngineArgs]) -> types.ModuleType:
    """Return a stand-in for the vllm module that records each engine's arguments."""

    class AsyncLLMEngine:
        @staticmethod
        def from_engine_args(args: EngineArgs) -> FakeEngine:
            started.append(args)
            engine = FakeEngine(["x"])
            length = args.max_model_len or DERIVED_MAX_MODEL_LEN
            engine.model_config = ModelConfig(max_model_len=length)  # type: ignore[attr-defined]
            return engine

    module = types.ModuleType("vllm")
    module.AsyncEngineArgs = EngineArgs  # type: ignore[attr-defined]
    module.AsyncLLMEngine = AsyncLLMEngine  # type: ignore[attr-defined]
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(("context_length", "window"), [(None, DERIVED_MAX_MODEL_LEN), (64, 64)])
async def test_context_length_is_max_model_len(
    demo_folder: Path, monkeypatch: pytest.MonkeyPatch, context_length: int | None, window: int
) -> None:
    from berth.runtime.vllm import load_vllm_model

    started: list[EngineArgs] = []
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(started))

    loaded = load_vllm_model(demo_folder, "tiny", context_length=context_length)
    try:
        with pytest.raises(APIError) as raised:
            await loaded.generator.start_completion("hi", params(max_tokens=window))
    finally:
        loaded.close()

    (args,) = started
    assert args.max_model_len == context_length
    assert args.model == str(demo_folder)
    assert raised.value.code == "context_length_exceeded"
    assert f"context length of {window} tokens" in raised.value.message
