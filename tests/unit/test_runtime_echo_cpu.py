"""Echo's CPU work (`--echo-cpu-rounds`): the option, the rounds per text and per
request, and replies that do not change."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from berth.runtime import echo
from berth.runtime.__main__ import parse_args
from berth.runtime.base import GenerationParams, LoadedModel
from berth.runtime.config import RuntimeConfig
from berth.runtime.loading import load_model
from berth.runtime.protocol import ChatMessage
from berth.states import MLApp

REQUIRED_ARGS = ["--ml-app", "echo", "--model-path", "", "--model-name", "echo", "--port", "0"]
PARAMS = GenerationParams(max_tokens=None, temperature=1.0, top_p=1.0, stop=(), seed=None)


def load_echo_model(cpu_rounds: int) -> LoadedModel:
    config = RuntimeConfig(
        ml_app=MLApp.ECHO,
        model_path=None,
        model_name="echo",
        instance_id="test",
        echo_cpu_rounds=cpu_rounds,
    )
    return load_model(config)


async def collect_text(model: LoadedModel, text: str) -> tuple[str, str]:
    """Return the chat reply and the completion reply to `text`, each joined from its deltas."""
    assert model.generator is not None
    chat = await model.generator.start_chat([ChatMessage(role="user", content=text)], PARAMS)
    chat_reply = "".join([piece async for piece in chat])
    completion = await model.generator.start_completion(text, PARAMS)
    completion_reply = "".join([piece async for piece in completion])
    return chat_reply, completion_reply


def test_hash_repeatedly_chains_digests() -> None:
    expected = "bät".encode()
    for _ in range(3):
        expected = hashlib.sha256(expected).digest()

    assert echo.hash_repeatedly("bät", 3) == expected
    assert echo.hash_repeatedly("bät", 0) == "bät".encode()


def test_option_defaults_to_no_work() -> None:
    assert parse_args(REQUIRED_ARGS).echo_cpu_rounds == 0
    assert parse_args([*REQUIRED_ARGS, "--echo-cpu-rounds", "2500"]).echo_cpu_rounds == 2500


@pytest.mark.parametrize("value", ["-1", "2.5", "many", ""])
def test_option_rejects_invalid_value(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*REQUIRED_ARGS, "--echo-cpu-rounds", value])

    assert exit_info.value.code == 2
    assert (
        f"argument --echo-cpu-rounds: must be a whole number, 0 or more, got '{value}'"
        in capsys.readouterr().err
    )


def test_rounds_run_per_text_and_request(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    real_hash_repeatedly = echo.hash_repeatedly

    def recording_hash_repeatedly(text: str, rounds: int) -> bytes:
        calls.append((text, rounds))
        return real_hash_repeatedly(text, rounds)

    monkeypatch.setattr(echo, "hash_repeatedly", recording_hash_repeatedly)
    model = load_echo_model(cpu_rounds=7)
    assert model.embedder is not None

    asyncio.run(model.embedder.embed(["first text", "second text"]))
    assert calls == [("first text", 7), ("second text", 7)]

    calls.clear()
    asyncio.run(collect_text(model, "one two"))
    assert calls == [("one two", 7), ("one two", 7)]


def test_no_rounds_without_option(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(echo, "hash_repeatedly", lambda text, rounds: calls.append((text, rounds)))
    model = load_echo_model(cpu_rounds=0)
    assert model.embedder is not None

    asyncio.run(model.embedder.embed(["a text"]))
    asyncio.run(collect_text(model, "one two"))

    assert calls == []


def test_rounds_leave_replies_unchanged() -> None:
    plain = load_echo_model(cpu_rounds=0)
    busy = load_echo_model(cpu_rounds=50)
    assert plain.embedder is not None
    assert busy.embedder is not None
    texts = ["a small boat", "drifts across the harbor"]

    plain_embeddings = asyncio.run(plain.embedder.embed(texts))
    busy_embeddings = asyncio.run(busy.embedder.embed(texts))

    assert busy_embeddings.vectors == plain_embeddings.vectors
    assert busy_embeddings.vectors == [echo.hash_vector(text) for text in texts]
    assert busy_embeddings.prompt_tokens == plain_embeddings.prompt_tokens
    assert asyncio.run(collect_text(busy, "one two three")) == ("one two three", "one two three")
