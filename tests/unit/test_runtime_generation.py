"""The Text Generation runtime with the demo model, plus the streaming text helpers it uses."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from berth.runtime.base import GenerationParams
from berth.runtime.decoding import (
    IncrementalDetokenizer,
    LeadingWhitespaceStripper,
    StopSequenceMatcher,
)
from berth.runtime.errors import APIError
from berth.runtime.threaded import limit_new_tokens
from tests.runtime_support import RuntimeProcess, wait_until

MODEL_NAME = "demo-test"
CONTEXT_LENGTH = 512  # max_position_embeddings of the demo model
# A max_tokens that fits beside a prompt of a few tokens and takes a while to generate.
LONG_GENERATION_TOKENS = CONTEXT_LENGTH - 16
# How long a request may wait behind long generations.
BLOCKED_TIMEOUT_S = 180


# Streaming text helpers, without a model.


def feed(matcher: StopSequenceMatcher, deltas: Sequence[str]) -> str:
    sent = "".join(matcher.push(delta) for delta in deltas)
    return sent + matcher.flush()


def test_stop_matcher_cuts_at_first_stop() -> None:
    matcher = StopSequenceMatcher(["END", "xyz"])

    assert feed(matcher, ["hello ", "wor", "ld xy", "z and END"]) == "hello world "
    assert matcher.stopped


def test_stop_matcher_stop_spanning_deltas() -> None:
    matcher = StopSequenceMatcher(["\n\n"])

    assert matcher.push("line one\n") == "line one"
    assert matcher.push("\nline two") == ""
    assert matcher.stopped


def test_stop_matcher_releases_false_prefix() -> None:
    matcher = StopSequenceMatcher(["STOP"])

    assert matcher.push("a ST") == "a "
    assert matcher.push("ART") == "START"
    assert matcher.push(" ST") == " "
    assert matcher.flush() == "ST"
    assert not matcher.stopped


def test_stop_matcher_without_stops_passes_text() -> None:
    matcher = StopSequenceMatcher([])

    assert matcher.push("any STOP text") == "any STOP text"
    assert matcher.flush() == ""


class ByteTokenizer:
    """Tokenizer stand-in whose tokens are raw UTF-8 bytes, like byte-level BPE."""

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def test_detokenizer_holds_partial_characters() -> None:
    text = "añb€ ok"
    detokenizer = IncrementalDetokenizer(ByteTokenizer(), prompt_ids=list(b"x "))

    deltas = [detokenizer.push(byte) for byte in text.encode()]
    deltas.append(detokenizer.flush())

    assert "".join(deltas) == text
    assert all("\ufffd" not in delta for delta in deltas)
    # The two bytes of "ñ" produce one delta, sent when the second byte arrives.
    assert deltas[1:3] == ["", "ñ"]


def test_detokenizer_flush_drops_incomplete_tail() -> None:
    detokenizer = IncrementalDetokenizer(ByteTokenizer(), prompt_ids=[])

    assert detokenizer.push(ord("a")) == "a"
    assert detokenizer.push("€".encode()[0]) == ""
    assert detokenizer.flush() == ""


def test_batch_row_finishes_before_the_batch_ends() -> None:
    """A request of a batch gets its finish reason with its last token, not at batch end."""
    import torch

    from berth.runtime.base import GenerationParams
    from berth.runtime.generation import _BatchStreamerAdapter
    from berth.runtime.threaded import BatchRow, GenerationJob, TokenTextSender, _Finished, _Text

    async def scenario() -> tuple[list[object], list[object]]:
        loop = asyncio.get_running_loop()
        jobs = [GenerationJob(loop), GenerationJob(loop)]
        params = GenerationParams(max_tokens=None, temperature=0.0, top_p=1.0, stop=(), seed=None)
        prompt = list(b"x ")
        rows = [
            BatchRow(
                prompt,
                limit,
                TokenTextSender(job, ByteTokenizer(), prompt, params, frozenset(), False),
                job.cancelled,
            )
            for limit, job in zip((1, 3), jobs, strict=True)
        ]
        adapter = _BatchStreamerAdapter(rows)
        adapter.put(torch.tensor([prompt, prompt]))
        adapter.put(torch.tensor([ord("a"), ord("b")]))
        # One turn of the event loop moves what the worker emitted.
        await asyncio.sleep(0)
        return _drain_events(jobs[0]), _drain_events(jobs[1])

    short, long = asyncio.run(scenario())

    assert short == [_Text("a"), _Finished("length", 1)]
    assert long == [_Text("b")]


def _drain_events(job: object) -> list[object]:
    events = []
    queue = job.events  # type: ignore[attr-defined]
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


def test_leading_whitespace_stripper() -> None:
    stripper = LeadingWhitespaceStripper()

    assert [stripper.push(d) for d in [" ", "  hi", " there"]] == ["", "hi", " there"]


# The endpoint's max_completion_tokens, as limit_new_tokens applies it for every runtime.


def sampling(max_tokens: int | None) -> GenerationParams:
    return GenerationParams(max_tokens=max_tokens, temperature=0.0, top_p=1.0, stop=(), seed=None)


def new_tokens(max_tokens: int | None, context_length: int | None, limit: int) -> int:
    return limit_new_tokens(10, "prompt", sampling(max_tokens), context_length, "m", limit)


def test_limit_is_default_max_tokens() -> None:
    assert new_tokens(None, context_length=100_000, limit=20_000) == 20_000
    assert new_tokens(None, context_length=None, limit=20_000) == 20_000


def test_context_bounds_default_max_tokens() -> None:
    assert new_tokens(None, context_length=512, limit=20_000) == 502


def test_max_tokens_up_to_limit_is_kept() -> None:
    assert new_tokens(8000, context_length=100_000, limit=8000) == 8000


@pytest.mark.parametrize("context_length", [100_000, None])
def test_max_tokens_above_limit_is_invalid(context_length: int | None) -> None:
    with pytest.raises(APIError) as caught:
        new_tokens(8001, context_length=context_length, limit=8000)

    error = caught.value
    assert error.status_code == 400
    assert error.code == "invalid_value"
    assert error.param == "max_tokens"
    assert error.message == (
        "max_tokens is 8001, but this endpoint generates at most 8000 tokens per "
        "completion. Set max_tokens to at most 8000."
    )


def test_max_tokens_beyond_context_names_context() -> None:
    with pytest.raises(APIError) as caught:
        new_tokens(600, context_length=512, limit=20_000)

    assert caught.value.code == "context_length_exceeded"
    assert "Set max_tokens to at most 502" in caught.value.message


def test_generator_applies_completion_limit(generation_folder: Path) -> None:
    from berth.runtime.generation import CausalLMGenerator, load_generation_model

    loaded = load_generation_model(
        generation_folder, MODEL_NAME, max_batch_size=1, max_completion_tokens=6
    )
    generator = loaded.generator
    assert isinstance(generator, CausalLMGenerator)
    # Banning the end-of-sequence tokens makes the limit the only end of the reply.
    no_eos = tuple((token_id, -100.0) for token_id in sorted(generator._eos_ids))

    async def complete(max_tokens: int | None) -> tuple[int, str | None]:
        params = dataclasses.replace(sampling(max_tokens), logit_bias=no_eos)
        stream = await generator.start_completion("once upon a time", params)
        await stream.collect()
        return stream.completion_tokens, stream.finish_reason

    try:
        default = asyncio.run(complete(None))
        with pytest.raises(APIError) as caught:
            asyncio.run(complete(7))
    finally:
        loaded.close()

    assert default == (6, "length")
    assert caught.value.code == "invalid_value"
    assert "this endpoint generates at most 6 tokens per completion" in caught.value.message


def test_generator_applies_context_length(generation_folder: Path) -> None:
    from berth.runtime.generation import CausalLMGenerator, load_generation_model

    window = 40
    loaded = load_generation_model(
        generation_folder, MODEL_NAME, max_batch_size=1, context_length=window
    )
    generator = loaded.generator
    assert isinstance(generator, CausalLMGenerator)
    no_eos = tuple((token_id, -100.0) for token_id in sorted(generator._eos_ids))

    async def complete(max_tokens: int | None) -> tuple[int, int, str | None]:
        params = dataclasses.replace(sampling(max_tokens), logit_bias=no_eos)
        stream = await generator.start_completion("once upon a time", params)
        await stream.collect()
        return stream.prompt_tokens, stream.completion_tokens, stream.finish_reason

    try:
        prompt_tokens, completion_tokens, finish_reason = asyncio.run(complete(None))
        with pytest.raises(APIError) as caught:
            asyncio.run(complete(window - prompt_tokens + 1))
    finally:
        loaded.close()

    # The demo model's own context is 512 tokens, so the setting ends the reply.
    assert prompt_tokens + completion_tokens == window
    assert finish_reason == "length"
    assert caught.value.code == "context_length_exceeded"
    assert f"context length of {window} tokens" in caught.value.message
    assert f"Set max_tokens to at most {window - prompt_tokens}" in caught.value.message


def test_context_length_above_trained_fails(generation_folder: Path) -> None:
    from berth.runtime.generation import load_generation_model
    from berth.runtime.loading import ModelLoadError

    with pytest.raises(ModelLoadError) as caught:
        load_generation_model(generation_folder, MODEL_NAME, max_batch_size=1, context_length=513)

    assert str(caught.value) == (
        f"the endpoint's context_length 513 exceeds the trained context length of model "
        f"'{MODEL_NAME}' (512 tokens). Set context_length to at most 512, or reset it to use "
        "the trained length."
    )


# The runtime as a subprocess, serving the demo model.


@pytest.fixture(scope="module")
def generation_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from berth.hub.demo import build_demo_generation_model

    return build_demo_generation_model(tmp_path_factory.mktemp("demo") / "demo-model")


@pytest.fixture(scope="module")
def generation(
    tmp_path_factory: pytest.TempPathFactory, generation_folder: Path
) -> Iterator[RuntimeProcess]:
    folder = tmp_path_factory.mktemp("generation")
    runtime = RuntimeProcess(
        "text-generation", generation_folder, MODEL_NAME, folder / "runtime.log"
    )
    try:
        runtime.wait_for("/ready", timeout_s=120)
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def client(generation: RuntimeProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{generation.base_url}/v1", api_key="unused", max_retries=0, timeout=60
    )


USER_MESSAGE = [{"role": "user", "content": "hello world"}]
# Token ids of the demo model's WordPiece vocabulary.
THE_TOKEN = 1996
HARBOR_TOKEN = 6496
VOCABULARY_SIZE = 30522
PENALTIES = {"frequency_penalty": 1.5, "presence_penalty": 0.7, "logit_bias": {"1996": 2.5}}


@pytest.mark.slow
def test_chat_completion_fields(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="ignored", messages=USER_MESSAGE, max_tokens=8, temperature=0
    )

    assert response.object == "chat.completion"
    assert response.model == MODEL_NAME
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage is not None
    # "[CLS]user: hello world\nassistant:" is 7 tokens with the demo chat template.
    assert usage.prompt_tokens == 7
    assert 1 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.slow
@pytest.mark.parametrize("max_tokens", [1, 5, 30])
def test_max_tokens_is_respected(client: openai.OpenAI, max_tokens: int) -> None:
    response = client.completions.create(
        model=MODEL_NAME, prompt="count with me", max_tokens=max_tokens, temperature=1.0, seed=3
    )

    usage = response.usage
    assert usage is not None
    assert usage.completion_tokens <= max_tokens
    if response.choices[0].finish_reason == "length":
        assert usage.completion_tokens == max_tokens


@pytest.mark.slow
def test_chat_stream_matches_non_stream(client: openai.OpenAI) -> None:
    settings = {"messages": USER_MESSAGE, "max_tokens": 24, "temperature": 0.9, "seed": 11}
    whole = client.chat.completions.create(model=MODEL_NAME, **settings)
    stream = client.chat.completions.create(
        model=MODEL_NAME, stream=True, stream_options={"include_usage": True}, **settings
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert sum(1 for piece in pieces if piece) > 1
    assert "".join(pieces) == whole.choices[0].message.content
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage


@pytest.mark.slow
def test_completion_stream_matches_non_stream(client: openai.OpenAI) -> None:
    settings = {"prompt": "once upon a time", "max_tokens": 24, "temperature": 0.9, "seed": 5}
    whole = client.completions.create(model=MODEL_NAME, **settings)
    chunks = list(
        client.completions.create(
            model=MODEL_NAME, stream=True, stream_options={"include_usage": True}, **settings
        )
    )

    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].text
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == 5
    assert chunks[-1].usage == whole.usage


@pytest.mark.slow
def test_seed_makes_sampling_repeatable(client: openai.OpenAI) -> None:
    settings = {"prompt": "repeat", "max_tokens": 16, "temperature": 1.0, "seed": 42}
    first = client.completions.create(model=MODEL_NAME, **settings)
    second = client.completions.create(model=MODEL_NAME, **settings)

    assert first.choices[0].text == second.choices[0].text


@pytest.mark.slow
def test_seed_leaves_later_requests_random(client: openai.OpenAI) -> None:
    """A seeded request must not make the unseeded ones after it repeat themselves."""
    seeded = {"prompt": "repeat", "max_tokens": 4, "temperature": 1.0, "seed": 42}
    unseeded = {"prompt": "tell a story", "max_tokens": 16, "temperature": 1.0}
    texts = []
    for _ in range(2):
        client.completions.create(model=MODEL_NAME, **seeded)
        texts.append(client.completions.create(model=MODEL_NAME, **unseeded).choices[0].text)

    assert texts[0] != texts[1]


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_cuts_text(client: openai.OpenAI, stream: bool) -> None:
    settings = {"prompt": "tell a story", "max_tokens": 30, "temperature": 1.0, "seed": 7}
    full = client.completions.create(model=MODEL_NAME, **settings).choices[0].text
    words = full.split()
    assert len(words) >= 6, full
    stop = words[4]
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


@pytest.mark.slow
def test_predict_generates_per_input(generation: RuntimeProcess) -> None:
    body = {
        "inputs": ["first prompt", "second prompt"],
        "parameters": {"max_tokens": 4, "temperature": 0},
    }
    response = httpx.post(generation.base_url + "/predict", json=body, timeout=60)

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model"] == MODEL_NAME
    assert len(result["predictions"]) == 2
    assert all(isinstance(text, str) for text in result["predictions"])


@pytest.mark.slow
def test_predict_rejects_bad_parameter(generation: RuntimeProcess) -> None:
    body = {"inputs": ["x"], "parameters": {"max_tokens": 0}}
    response = httpx.post(generation.base_url + "/predict", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "parameters.max_tokens"
    assert "'parameters.max_tokens'" in error["message"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body", "param", "seed"),
    [
        ("/v1/completions", {"prompt": "x"}, "seed", 2**70),
        ("/v1/completions", {"prompt": "x"}, "seed", 2**63),
        ("/v1/chat/completions", {"messages": USER_MESSAGE}, "seed", -(2**63) - 1),
        ("/predict", {"inputs": ["x"]}, "parameters.seed", 2**70),
    ],
)
def test_seed_outside_int64_is_400(
    generation: RuntimeProcess, path: str, body: dict[str, object], param: str, seed: int
) -> None:
    if path == "/predict":
        body = {**body, "parameters": {"seed": seed}}
    else:
        body = {**body, "seed": seed}

    # httpx writes the body with the json module, which keeps the integer exact.
    response = httpx.post(generation.base_url + path, json=body, timeout=60)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["message"] == (
        f"Invalid value for '{param}': {seed}. Expected an integer from "
        "-9223372036854775808 to 9223372036854775807 (signed 64 bits)."
    )


@pytest.mark.slow
def test_prompt_longer_than_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL_NAME, prompt="word " * CONTEXT_LENGTH, max_tokens=4)

    assert caught.value.param == "prompt"
    assert caught.value.code == "context_length_exceeded"
    assert str(CONTEXT_LENGTH) in caught.value.message


@pytest.mark.slow
def test_max_tokens_beyond_context_is_400(client: openai.OpenAI) -> None:
    prompt = "word " * 400
    probe = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=1)
    assert probe.usage is not None
    prompt_tokens = probe.usage.prompt_tokens
    tokens_left = CONTEXT_LENGTH - prompt_tokens
    assert tokens_left > 1

    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=tokens_left + 1)

    error = caught.value
    assert error.code == "context_length_exceeded"
    assert error.param == "max_tokens"
    assert isinstance(error.body, dict)
    assert error.body["message"] == (
        f"The prompt is {prompt_tokens} tokens long and max_tokens is {tokens_left + 1}, "
        f"{CONTEXT_LENGTH + 1} tokens together, but model '{MODEL_NAME}' has a context "
        f"length of {CONTEXT_LENGTH} tokens for prompt and completion together. "
        f"Set max_tokens to at most {tokens_left}, or shorten the prompt."
    )


@pytest.mark.slow
def test_max_tokens_filling_context_is_accepted(client: openai.OpenAI) -> None:
    prompt = "word " * 400
    probe = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=1)
    assert probe.usage is not None
    tokens_left = CONTEXT_LENGTH - probe.usage.prompt_tokens

    response = client.completions.create(
        model=MODEL_NAME, prompt=prompt, max_tokens=tokens_left, temperature=1.0
    )

    assert response.usage is not None
    assert response.usage.completion_tokens <= tokens_left


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": USER_MESSAGE, "max_tokens": 4096}, "max_tokens"),
        (
            "/v1/chat/completions",
            {"messages": USER_MESSAGE, "max_completion_tokens": 4096},
            "max_completion_tokens",
        ),
        (
            "/predict",
            {"inputs": ["x"], "parameters": {"max_tokens": 4096}},
            "parameters.max_tokens",
        ),
    ],
)
def test_context_error_names_token_field(
    generation: RuntimeProcess, path: str, body: dict[str, object], param: str
) -> None:
    response = httpx.post(generation.base_url + path, json=body, timeout=60)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == param
    assert f"{param} is 4096" in error["message"]
    assert f"Set {param} to at most" in error["message"]


@pytest.mark.slow
def test_max_tokens_above_limit_names_context(generation: RuntimeProcess) -> None:
    # The demo model's context is shorter than the default max_completion_tokens, so the
    # context is what limits max_tokens here.
    body = {"messages": USER_MESSAGE, "max_tokens": 5000}

    response = httpx.post(generation.base_url + "/v1/chat/completions", json=body, timeout=60)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "max_tokens"
    assert "max_tokens is 5000" in error["message"]
    assert f"context length of {CONTEXT_LENGTH} tokens" in error["message"]


@pytest.mark.slow
def test_embeddings_route_is_not_served(generation: RuntimeProcess) -> None:
    response = httpx.post(generation.base_url + "/v1/embeddings", json={"input": "x"})

    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "Text Generation" in message
    assert "POST /v1/chat/completions" in message


@pytest.mark.slow
def test_disconnect_stops_generation(generation: RuntimeProcess) -> None:
    body = {
        "prompt": "a long story",
        "max_tokens": LONG_GENERATION_TOKENS,
        "temperature": 1.0,
        "stream": True,
    }
    with httpx.stream(
        "POST", generation.base_url + "/v1/completions", json=body, timeout=60
    ) as response:
        assert response.status_code == 200
        first_event = next(line for line in response.iter_lines() if line.startswith("data: "))
        assert "text_completion" in orjson.loads(first_event.removeprefix("data: "))["object"]
        # The event loop keeps serving requests while the worker thread generates.
        assert httpx.get(generation.base_url + "/health", timeout=5).status_code == 200

    pattern = re.compile(r"generation stopped after (\d+) of at most (\d+) tokens")
    wait_until(
        lambda: pattern.search(generation.log_text()) is not None,
        timeout_s=30,
        description="the log line of the stopped generation",
    )
    match = pattern.search(generation.log_text())
    assert match is not None
    generated, limit = int(match.group(1)), int(match.group(2))
    assert generated < limit
    # The next request is served once the worker thread is free again.
    after = httpx.post(
        generation.base_url + "/v1/completions",
        json={"prompt": "next", "max_tokens": 2},
        timeout=60,
    )
    assert after.status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("adjustments", [{}, PENALTIES], ids=["plain", "penalties"])
def test_batched_requests_match_requests_alone(
    generation: RuntimeProcess, adjustments: dict[str, object]
) -> None:
    """Requests generated together in one padded batch give the text they give alone."""
    url = generation.base_url + "/v1/completions"
    requests: list[dict[str, object]] = [
        {"prompt": "once upon a time", "max_tokens": 20, "temperature": 0, **adjustments},
        {"prompt": "hello", "max_tokens": 7, "temperature": 0, **adjustments},
        {
            "prompt": "a much longer prompt with many more words in it",
            "max_tokens": 12,
            **adjustments,
        },
    ]
    requests[2]["temperature"] = 0
    alone = [httpx.post(url, json=body, timeout=60).json() for body in requests]
    stop_word = alone[0]["choices"][0]["text"].split()[2]
    requests.append({**requests[0], "stop": [stop_word]})
    alone.append(httpx.post(url, json=requests[3], timeout=60).json())

    # Long seeded generations keep the worker busy. Each runs alone, because it has a
    # seed, so the requests above queue behind them and then share one batch.
    blockers = [
        {
            "prompt": "a long story",
            "max_tokens": LONG_GENERATION_TOKENS,
            "temperature": 1.0,
            "seed": seed,
        }
        for seed in (1, 2, 3)
    ]
    # On a loaded machine torch's two threads can slow to a few dozen tokens a second, so
    # that the three blockers take most of a minute.
    with ThreadPoolExecutor(len(blockers) + len(requests)) as pool:
        for body in blockers:
            pool.submit(httpx.post, url, json=body, timeout=BLOCKED_TIMEOUT_S)
        # All blockers but the running one must be queued before the compared requests
        # are sent. On a loaded machine a blocker sent last could otherwise arrive after
        # them, and the compared requests would never be the whole queue.
        wait_until(
            lambda: (
                httpx.get(generation.base_url + "/health").json()["queued_requests"]
                == len(blockers) - 1
            ),
            timeout_s=BLOCKED_TIMEOUT_S,
            description="the blocking generations queued",
        )
        pending = [
            pool.submit(httpx.post, url, json=body, timeout=BLOCKED_TIMEOUT_S) for body in requests
        ]
        wait_until(
            lambda: (
                httpx.get(generation.base_url + "/health").json()["queued_requests"]
                == len(requests)
            ),
            timeout_s=BLOCKED_TIMEOUT_S,
            description="only the compared requests queued",
        )
        together = [future.result().json() for future in pending]

    for single, batched in zip(alone, together, strict=True):
        assert batched["choices"][0]["text"] == single["choices"][0]["text"]
        assert batched["choices"][0]["finish_reason"] == single["choices"][0]["finish_reason"]
        assert batched["usage"] == single["usage"]
    assert together[1]["usage"]["completion_tokens"] <= 7
    assert together[3]["choices"][0]["finish_reason"] == "stop"
    assert stop_word not in together[3]["choices"][0]["text"]


@pytest.mark.slow
@pytest.mark.parametrize(("option", "expected"), [(None, 8), (1, 1), (3, 3)])
def test_batch_size_option_reaches_generator(
    generation_folder: Path, option: int | None, expected: int
) -> None:
    from berth.runtime.config import RuntimeConfig
    from berth.runtime.generation import CausalLMGenerator
    from berth.runtime.loading import load_model
    from berth.states import MLApp

    config = RuntimeConfig(
        ml_app=MLApp.TEXT_GENERATION,
        model_path=generation_folder,
        model_name=MODEL_NAME,
        instance_id="batch-size-test",
        runtime="transformers",
        max_batch_size=option,
    )
    loaded = load_model(config)
    try:
        assert isinstance(loaded.generator, CausalLMGenerator)
        assert loaded.generator.max_batch_size == expected
    finally:
        loaded.close()


@pytest.mark.slow
def test_load_failure_exits_with_status_3(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    runtime = RuntimeProcess("text-generation", missing, "broken", tmp_path / "runtime.log")
    try:
        status = runtime.process.wait(timeout=60)
    finally:
        runtime.stop()

    assert status == 3
    last_line = runtime.log_text().strip().splitlines()[-1]
    assert last_line == f"berth.runtime: error: model folder {missing} does not exist"


@pytest.mark.slow
def test_load_failure_names_missing_config(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"")
    runtime = RuntimeProcess("text-generation", tmp_path, "broken", tmp_path / "runtime.log")
    try:
        status = runtime.process.wait(timeout=60)
    finally:
        runtime.stop()

    assert status == 3
    assert f"model folder {tmp_path} has no config.json" in runtime.log_text()


# Penalties, logit bias, the default max_tokens and the developer role.


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_strong_logit_bias_picks_token(client: openai.OpenAI, stream: bool) -> None:
    settings = {
        "prompt": "the lighthouse",
        "max_tokens": 5,
        "temperature": 0,
        "logit_bias": {str(HARBOR_TOKEN): 100},
    }
    if stream:
        chunks = list(client.completions.create(model=MODEL_NAME, stream=True, **settings))
        text = "".join(chunk.choices[0].text for chunk in chunks)
    else:
        text = client.completions.create(model=MODEL_NAME, **settings).choices[0].text

    assert text.split() == ["harbor"] * 5


@pytest.mark.slow
def test_penalties_change_greedy_text(client: openai.OpenAI) -> None:
    settings = {"prompt": "the lighthouse keeper", "max_tokens": 40, "temperature": 0}
    plain = client.completions.create(model=MODEL_NAME, **settings).choices[0].text
    penalized = {"frequency_penalty": 2.0, "presence_penalty": 2.0}
    changed = client.completions.create(model=MODEL_NAME, **settings, **penalized)

    words = plain.split()
    # Without penalties, the demo model repeats itself, which the penalties then prevent.
    assert len(set(words)) < len(words)
    assert changed.choices[0].text != plain


@pytest.mark.slow
def test_predict_applies_logit_bias(generation: RuntimeProcess) -> None:
    parameters = {"max_tokens": 3, "temperature": 0, "logit_bias": {str(HARBOR_TOKEN): 100}}
    body = {"inputs": ["the sea"], "parameters": parameters}
    response = httpx.post(generation.base_url + "/predict", json=body, timeout=60)

    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0].split() == ["harbor"] * 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"prompt": "x"}, "logit_bias"),
        ("/v1/chat/completions", {"messages": USER_MESSAGE}, "logit_bias"),
        ("/predict", {"inputs": ["x"]}, "parameters.logit_bias"),
    ],
)
def test_logit_bias_outside_vocabulary_is_400(
    generation: RuntimeProcess, path: str, body: dict[str, object], param: str
) -> None:
    bias = {str(THE_TOKEN): 1, str(VOCABULARY_SIZE): 1}
    if path == "/predict":
        body = {**body, "parameters": {"logit_bias": bias}}
    else:
        body = {**body, "logit_bias": bias}

    response = httpx.post(generation.base_url + path, json=body, timeout=60)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_value"
    assert error["param"] == param
    assert error["message"] == (
        f"{param} contains token id {VOCABULARY_SIZE}, but the model's vocabulary has "
        f"{VOCABULARY_SIZE} tokens, with ids from 0 to {VOCABULARY_SIZE - 1}. "
        "Use token ids of this model's tokenizer."
    )


@pytest.mark.slow
def test_default_max_tokens_fills_context(client: openai.OpenAI, generation_folder: Path) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    # Without an end-of-sequence token, only the end of the context stops generation.
    eos_ids = {AutoTokenizer.from_pretrained(str(generation_folder)).eos_token_id}
    configured = GenerationConfig.from_pretrained(str(generation_folder)).eos_token_id
    eos_ids.update(configured if isinstance(configured, list) else [configured])
    ban_eos = {str(token_id): -100 for token_id in eos_ids if token_id is not None}

    response = client.completions.create(
        model=MODEL_NAME, prompt="once upon a time", temperature=0, logit_bias=ban_eos
    )

    assert response.usage is not None
    assert response.usage.completion_tokens == CONTEXT_LENGTH - response.usage.prompt_tokens
    assert response.choices[0].finish_reason == "length"


@pytest.mark.slow
def test_developer_role_reads_as_system(client: openai.OpenAI) -> None:
    def reply(role: str) -> tuple[str | None, int]:
        messages = [{"role": role, "content": "answer briefly"}, *USER_MESSAGE]
        response = client.chat.completions.create(
            model=MODEL_NAME, messages=messages, max_tokens=8, temperature=0
        )
        assert response.usage is not None
        return response.choices[0].message.content, response.usage.prompt_tokens

    assert reply("developer") == reply("system")
