"""Which queued requests ThreadedGenerator generates together, with a scripted token loop.

The worker takes the oldest queued request and every queued one with the same sampling
settings, up to `max_batch_size`. Seeded requests and requests with other settings wait
for a later turn, so they keep their order and a seed keeps giving the same text.
"""

import asyncio
import dataclasses
import threading
from collections.abc import Sequence

import pytest

from berth.runtime.base import GenerationParams
from berth.runtime.errors import APIError
from berth.runtime.threaded import (
    MAX_CHARACTERS_PER_TOKEN,
    BatchRow,
    PromptInput,
    ThreadedGenerator,
    TokenTextSender,
    _batch_key,
)
from tests.support import wait_until_async

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CharTokenizer:
    """Tokens are character codes."""

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(token_id) for token_id in ids)


class ScriptedGenerator(ThreadedGenerator):
    """Generates the prompt's text upper-cased, one character per token.

    The first generation waits for `release`, so that the test can queue requests
    behind it. Every turn of the worker is recorded as the list of its prompts.
    """

    max_batch_size = 3

    def __init__(self, context_length: int | None = None) -> None:
        super().__init__("scripted", CharTokenizer(), frozenset(), context_length)
        self.release = threading.Event()
        self.turns: list[list[str]] = []
        self.encoded: list[str] = []

    async def start_chat(self, messages, params):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _encode_prompt(self, prompt: PromptInput) -> list[int]:
        assert prompt.text is not None
        self.encoded.append(prompt.text)
        return [ord(character) for character in prompt.text]

    def _generate(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        params: GenerationParams,
        sender: TokenTextSender,
        cancelled: threading.Event,
    ) -> None:
        self._generate_batch([BatchRow(prompt_ids, max_new_tokens, sender, cancelled)], params)

    def _generate_batch(self, rows: list[BatchRow], params: GenerationParams) -> None:
        self.turns.append(["".join(map(chr, row.prompt_ids)) for row in rows])
        if len(self.turns) == 1:
            assert self.release.wait(10), "the test did not release the first generation"
        for row in rows:
            for token_id in row.prompt_ids[: row.max_new_tokens]:
                if not row.sender.push(ord(chr(token_id).upper())):
                    break


def _params(seed: int | None = None, temperature: float = 0.0, max_tokens: int = 16):  # type: ignore[no-untyped-def]
    return GenerationParams(
        max_tokens=max_tokens, temperature=temperature, top_p=1.0, stop=(), seed=seed
    )


async def _text(generator: ScriptedGenerator, prompt: str, params: GenerationParams) -> str:
    stream = await generator.start_completion(prompt, params)
    return "".join([piece async for piece in stream])


async def test_queued_requests_share_a_batch() -> None:
    generator = ScriptedGenerator()
    try:
        first = asyncio.ensure_future(_text(generator, "first", _params()))
        await wait_until_async(lambda: len(generator.turns) == 1)
        queued = [
            asyncio.ensure_future(_text(generator, prompt, params))
            for prompt, params in [
                ("alpha", _params()),
                ("seeded", _params(seed=7)),
                ("beta", _params(max_tokens=2)),
                ("warm", _params(temperature=0.8)),
                ("gamma", _params()),
                ("delta", _params()),
            ]
        ]
        await wait_until_async(lambda: generator.queued_requests == len(queued))
        generator.release.set()
        texts = await asyncio.gather(first, *queued)
    finally:
        generator.close()

    assert texts == ["FIRST", "ALPHA", "SEEDED", "BE", "WARM", "GAMMA", "DELTA"]
    assert generator.turns[0] == ["first"]
    # Up to 3 requests with the first queued one's settings, oldest first.
    assert generator.turns[1] == ["alpha", "beta", "gamma"]
    # A seeded request runs alone, and the others follow in their order.
    assert generator.turns[2] == ["seeded"]
    assert generator.turns[3] == ["warm"]
    assert generator.turns[4] == ["delta"]
    assert len(generator.turns) == 5


async def test_one_generation_at_a_time_without_batching() -> None:
    generator = ScriptedGenerator()
    generator.max_batch_size = 1
    try:
        first = asyncio.ensure_future(_text(generator, "one", _params()))
        await wait_until_async(lambda: len(generator.turns) == 1)
        queued = [asyncio.ensure_future(_text(generator, p, _params())) for p in ("two", "six")]
        await wait_until_async(lambda: generator.queued_requests == 2)
        generator.release.set()
        texts = await asyncio.gather(first, *queued)
    finally:
        generator.close()

    assert texts == ["ONE", "TWO", "SIX"]
    assert generator.turns == [["one"], ["two"], ["six"]]


async def test_oversized_prompt_skips_tokenizing() -> None:
    generator = ScriptedGenerator(context_length=4)
    generator.release.set()
    too_long = "x" * (4 * MAX_CHARACTERS_PER_TOKEN + 1)
    try:
        with pytest.raises(APIError) as caught:
            await _text(generator, too_long, _params())
        fitting = await _text(generator, "ok", _params(max_tokens=2))
    finally:
        generator.close()

    assert caught.value.status_code == 400
    assert caught.value.param == "prompt"
    assert f"The prompt is {len(too_long)} characters long" in caught.value.message
    assert "context length is 4 tokens" in caught.value.message
    assert generator.encoded == ["ok"]
    assert fitting == "OK"


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.5},
        {"top_p": 0.5},
        {"frequency_penalty": 0.5},
        {"presence_penalty": 0.5},
        {"logit_bias": ((7, 3.0),)},
    ],
)
def test_batch_key_separates_sampling_settings(change: dict[str, object]) -> None:
    base = GenerationParams(max_tokens=None, temperature=1.0, top_p=1.0, stop=(), seed=None)
    changed = dataclasses.replace(base, **change)  # type: ignore[arg-type]

    assert _batch_key(base) is not None
    assert _batch_key(changed) != _batch_key(base)
    # Settings that only change the text after generation do not split a batch.
    assert _batch_key(dataclasses.replace(changed, stop=("x",), max_tokens=3)) == _batch_key(
        changed
    )
