"""The llama.cpp runtime serving a tiny GGUF model that the test writes with `gguf`.

Skipped when llama-cpp-python is not installed; install it with `scripts/install.sh gguf`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed; scripts/install.sh gguf"
)
pytest.importorskip("gguf", reason="the gguf package, which writes the test model, is missing")

from berth.runtime.base import GenerationParams  # noqa: E402
from berth.runtime.config import RuntimeConfig  # noqa: E402
from berth.runtime.errors import APIError  # noqa: E402
from berth.runtime.loading import ModelLoadError, describe_load_failure  # noqa: E402
from berth.states import CheckpointFormat, MLApp  # noqa: E402
from tests.gguf_model import CONTEXT_LENGTH, write_tiny_llama_gguf  # noqa: E402
from tests.runtime_support import RuntimeProcess  # noqa: E402

MODEL_NAME = "tiny-gguf"
GGUF_ARGS = ("--checkpoint-format", "gguf")
USER_MESSAGE = [{"role": "user", "content": "hello world"}]


def start_runtime(model_path: Path, log_path: Path, *extra_args: str) -> RuntimeProcess:
    return RuntimeProcess(
        "text-generation", model_path, MODEL_NAME, log_path, extra_args=(*GGUF_ARGS, *extra_args)
    )


@pytest.fixture(scope="module")
def gguf_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    folder = tmp_path_factory.mktemp("gguf")
    model_path = write_tiny_llama_gguf(folder / "tiny.gguf")
    runtime = start_runtime(model_path, folder / "runtime.log")
    try:
        runtime.wait_for("/ready", timeout_s=60)
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def client(gguf_runtime: RuntimeProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gguf_runtime.base_url}/v1", api_key="unused", max_retries=0, timeout=60
    )


def test_ready_reports_llama_cpp(gguf_runtime: RuntimeProcess) -> None:
    ready = httpx.get(gguf_runtime.base_url + "/ready").json()

    assert ready == {"status": "ready", "runtime": "llama.cpp", "runtime_note": ""}
    assert "context of 256 tokens" in gguf_runtime.log_text()


def test_chat_completion_fields(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL_NAME, messages=USER_MESSAGE, max_tokens=8, temperature=0
    )

    assert response.object == "chat.completion"
    assert response.model == MODEL_NAME
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    # Greedy decoding never picks EOS, whose output row is zero.
    assert choice.finish_reason == "length"
    usage = response.usage
    assert usage is not None
    assert usage.completion_tokens == 8
    # The template adds BOS, role markers and EOS around the message, all of them tokens.
    assert usage.prompt_tokens > len("hello world")
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_completion_counts_prompt_tokens(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=MODEL_NAME, prompt="once upon a time", max_tokens=2, temperature=0
    )

    usage = response.usage
    assert usage is not None
    # BOS, then one token per character, except "\u2581a", a word of the vocabulary.
    assert usage.prompt_tokens == 17


@pytest.mark.parametrize("max_tokens", [1, 5, 40])
def test_max_tokens_is_respected(client: openai.OpenAI, max_tokens: int) -> None:
    response = client.completions.create(
        model=MODEL_NAME, prompt="count with me", max_tokens=max_tokens, temperature=0
    )

    usage = response.usage
    assert usage is not None
    assert usage.completion_tokens == max_tokens
    assert response.choices[0].finish_reason == "length"


def test_greedy_reply_is_repeatable(client: openai.OpenAI) -> None:
    settings = {"prompt": "the cat", "max_tokens": 16, "temperature": 0.0}
    first = client.completions.create(model=MODEL_NAME, **settings)
    second = client.completions.create(model=MODEL_NAME, **settings)

    assert first.choices[0].text
    assert first.choices[0].text == second.choices[0].text


def test_seed_makes_sampling_repeatable(client: openai.OpenAI) -> None:
    settings = {"prompt": "repeat", "max_tokens": 16, "temperature": 1.0, "seed": 42}
    first = client.completions.create(model=MODEL_NAME, **settings)
    second = client.completions.create(model=MODEL_NAME, **settings)

    assert first.choices[0].text == second.choices[0].text


def test_chat_stream_matches_non_stream(client: openai.OpenAI) -> None:
    settings = {"messages": USER_MESSAGE, "max_tokens": 24, "temperature": 0.9, "seed": 11}
    whole = client.chat.completions.create(model=MODEL_NAME, **settings)
    stream = client.chat.completions.create(
        model=MODEL_NAME, stream=True, stream_options={"include_usage": True}, **settings
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    # Tokens generated while the runtime sends a piece travel together, and this tiny
    # model may finish before the first piece is sent, so one piece is allowed.
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert any(pieces)
    assert "".join(pieces) == whole.choices[0].message.content
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_cuts_text(client: openai.OpenAI, stream: bool) -> None:
    settings = {"prompt": "tell a story", "max_tokens": 40, "temperature": 0}
    full = client.completions.create(model=MODEL_NAME, **settings).choices[0].text
    assert len(full) >= 12, full
    stop = full[8:11]
    expected = full[: full.find(stop)]

    if stream:
        chunks = list(
            client.completions.create(model=MODEL_NAME, stop=[stop], stream=True, **settings)
        )
        text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
        finish_reason = chunks[-1].choices[0].finish_reason
    else:
        choice = client.completions.create(model=MODEL_NAME, stop=stop, **settings).choices[0]
        text, finish_reason = choice.text, choice.finish_reason

    assert text == expected
    assert stop not in text
    assert finish_reason == "stop"


def test_predict_generates_per_input(gguf_runtime: RuntimeProcess) -> None:
    body = {"inputs": ["first", "second"], "parameters": {"max_tokens": 3, "temperature": 0}}
    response = httpx.post(gguf_runtime.base_url + "/predict", json=body, timeout=60)

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    assert all(isinstance(text, str) and text for text in predictions)


def test_prompt_longer_than_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL_NAME, prompt="word " * CONTEXT_LENGTH, max_tokens=4)

    assert caught.value.param == "prompt"
    assert f"context length of {CONTEXT_LENGTH} tokens" in caught.value.message


def test_max_tokens_beyond_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL_NAME, prompt="a", max_tokens=4096, temperature=0)

    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "max_tokens"
    assert f"context length of {CONTEXT_LENGTH} tokens" in caught.value.message


def test_max_tokens_filling_context_runs_to_length(client: openai.OpenAI) -> None:
    probe = client.completions.create(model=MODEL_NAME, prompt="a", max_tokens=1, temperature=0)
    assert probe.usage is not None
    tokens_left = CONTEXT_LENGTH - probe.usage.prompt_tokens

    response = client.completions.create(
        model=MODEL_NAME, prompt="a", max_tokens=tokens_left, temperature=0
    )

    usage = response.usage
    assert usage is not None
    assert usage.prompt_tokens + usage.completion_tokens == CONTEXT_LENGTH
    assert response.choices[0].finish_reason == "length"


def test_embeddings_route_is_not_served(gguf_runtime: RuntimeProcess) -> None:
    response = httpx.post(gguf_runtime.base_url + "/v1/embeddings", json={"input": "x"})

    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "The Text Generation instance of model 'tiny-gguf' (runtime llama.cpp)" in message
    assert "POST /v1/chat/completions" in message


def test_chat_without_template_is_400(tmp_path: Path) -> None:
    model_path = write_tiny_llama_gguf(tmp_path / "plain.gguf", chat_template=None)
    runtime = start_runtime(model_path, tmp_path / "runtime.log")
    try:
        runtime.wait_for("/ready", timeout_s=60)
        chat = httpx.post(
            runtime.base_url + "/v1/chat/completions", json={"messages": USER_MESSAGE}
        )
        completion = httpx.post(
            runtime.base_url + "/v1/completions", json={"prompt": "hi", "max_tokens": 2}
        )
    finally:
        runtime.stop()

    assert chat.status_code == 400
    assert chat.json()["error"]["param"] == "messages"
    assert chat.json()["error"]["code"] == "no_chat_template"
    assert "has no chat template" in chat.json()["error"]["message"]
    assert completion.status_code == 200


def test_template_error_is_400(tmp_path: Path) -> None:
    template = "{{ raise_exception('system messages are not supported') }}"
    model_path = write_tiny_llama_gguf(tmp_path / "strict.gguf", chat_template=template)
    runtime = start_runtime(model_path, tmp_path / "runtime.log")
    try:
        runtime.wait_for("/ready", timeout_s=60)
        response = httpx.post(
            runtime.base_url + "/v1/chat/completions", json={"messages": USER_MESSAGE}
        )
    finally:
        runtime.stop()

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages"
    assert error["message"] == (
        "The chat template of model 'tiny-gguf' rejected the messages: "
        "system messages are not supported"
    )


@pytest.mark.parametrize(
    ("content", "runtime_args", "message"),
    [
        (b"not a model at all", (), "is not a GGUF model: it does not start with 'GGUF'"),
        (None, (), "does not exist"),
        (b"GGUF", ("--runtime", "vllm"), "runtime 'vllm' cannot serve a GGUF checkpoint"),
    ],
    ids=["not gguf", "missing file", "wrong runtime"],
)
def test_load_failure_exits_with_reason(
    tmp_path: Path, content: bytes | None, runtime_args: tuple[str, ...], message: str
) -> None:
    model_path = tmp_path / "model.gguf"
    if content is not None:
        model_path.write_bytes(content)
    runtime = start_runtime(model_path, tmp_path / "runtime.log", *runtime_args)
    try:
        status = runtime.process.wait(timeout=60)
    finally:
        runtime.stop()

    assert status == 3
    last_line = runtime.log_text().strip().splitlines()[-1]
    assert last_line.startswith("berth.runtime: error: ")
    assert message in last_line


# Penalties, logit bias and the default max_tokens, passed through to llama.cpp.


def token_id(piece: str) -> int:
    from tests.gguf_model import _vocabulary

    return _vocabulary()[0].index(piece)


@pytest.mark.slow
def test_strong_logit_bias_picks_token(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=MODEL_NAME,
        prompt="once upon a time",
        max_tokens=5,
        temperature=0,
        logit_bias={str(token_id("\u2581cat")): 100},
    )

    assert response.choices[0].text.split() == ["cat"] * 5


@pytest.mark.slow
def test_penalties_change_greedy_text(client: openai.OpenAI) -> None:
    settings = {"prompt": "the cat", "max_tokens": 40, "temperature": 0}
    plain = client.completions.create(model=MODEL_NAME, **settings).choices[0].text
    penalized = {"frequency_penalty": 2.0, "presence_penalty": 2.0}
    changed = client.completions.create(model=MODEL_NAME, **settings, **penalized)

    assert changed.choices[0].text != plain


@pytest.mark.slow
def test_frequency_penalty_counts_whole_completion(client: openai.OpenAI) -> None:
    # The bias makes "cat" win each step until its frequency penalty, 1 per earlier
    # "cat", has taken about 100 from its logit. A penalty that counted only the last 64
    # tokens would take at most 64, and all 130 tokens would be "cat".
    response = client.completions.create(
        model=MODEL_NAME,
        prompt="once upon a time",
        max_tokens=130,
        temperature=0,
        frequency_penalty=1.0,
        logit_bias={str(token_id("\u2581cat")): 100},
    )

    text = response.choices[0].text
    assert text.startswith(" cat" * 80), text
    assert text != " cat" * 130


@pytest.mark.slow
def test_logit_bias_outside_vocabulary_is_400(gguf_runtime: RuntimeProcess) -> None:
    from tests.gguf_model import _vocabulary

    vocabulary_size = len(_vocabulary()[0])
    body = {"prompt": "the cat", "logit_bias": {str(vocabulary_size): 5}}
    response = httpx.post(gguf_runtime.base_url + "/v1/completions", json=body, timeout=60)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "logit_bias"
    assert error["code"] == "invalid_value"
    assert f"contains token id {vocabulary_size}" in error["message"]


@pytest.mark.slow
def test_default_max_tokens_fills_context(client: openai.OpenAI) -> None:
    # Greedy replies of the test model never end with EOS, so only the context ends them.
    response = client.completions.create(model=MODEL_NAME, prompt="the cat", temperature=0)

    assert response.usage is not None
    assert response.usage.completion_tokens == CONTEXT_LENGTH - response.usage.prompt_tokens
    assert response.choices[0].finish_reason == "length"


# The endpoint's context_length, applied in this process by the loader of the runtime.


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf-window") / "tiny.gguf")


@pytest.mark.parametrize(
    ("setting", "trained", "expected"),
    [
        (None, 256, 256),
        (None, 32768, 4096),
        (None, None, 4096),
        (8192, 32768, 8192),
        (64, 256, 64),
        (256, 256, 256),
        (300, None, 300),
    ],
)
def test_context_window_choice(setting: int | None, trained: int | None, expected: int) -> None:
    from berth.runtime.llamacpp import context_window

    assert context_window(setting, trained, MODEL_NAME) == expected


def test_context_setting_above_trained_fails(tiny_model: Path) -> None:
    from berth.runtime.loading import load_model

    config = RuntimeConfig(
        ml_app=MLApp.TEXT_GENERATION,
        model_path=tiny_model,
        model_name=MODEL_NAME,
        instance_id="test",
        checkpoint_format=CheckpointFormat.GGUF,
        context_length=CONTEXT_LENGTH + 1,
    )

    with pytest.raises(ModelLoadError) as caught:
        load_model(config)

    assert describe_load_failure(caught.value, config) == (
        f"the endpoint's context_length {CONTEXT_LENGTH + 1} exceeds the trained context "
        f"length of model '{MODEL_NAME}' ({CONTEXT_LENGTH} tokens). Set context_length to at "
        f"most {CONTEXT_LENGTH}, or reset it to use the trained length."
    )


def test_context_setting_sets_window(tiny_model: Path) -> None:
    from berth.runtime.llamacpp import LlamaCppGenerator, load_llamacpp_model

    window = 64
    loaded = load_llamacpp_model(tiny_model, MODEL_NAME, context_length=window)
    generator = loaded.generator
    assert isinstance(generator, LlamaCppGenerator)

    async def complete(max_tokens: int | None) -> tuple[int, int, str | None]:
        params = GenerationParams(
            max_tokens=max_tokens, temperature=0.0, top_p=1.0, stop=(), seed=None
        )
        stream = await generator.start_completion("once upon a time", params)
        await stream.collect()
        return stream.prompt_tokens, stream.completion_tokens, stream.finish_reason

    try:
        prompt_tokens, completion_tokens, finish_reason = asyncio.run(complete(None))
        with pytest.raises(APIError) as caught:
            asyncio.run(complete(window - prompt_tokens + 1))
    finally:
        loaded.close()

    # Greedy replies of the test model never end with EOS, so the window ends the reply.
    assert prompt_tokens + completion_tokens == window
    assert finish_reason == "length"
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "max_tokens"
    assert f"context length of {window} tokens" in caught.value.message
    assert f"Set max_tokens to at most {window - prompt_tokens}" in caught.value.message
