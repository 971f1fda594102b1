"""The runtime's decoding loop chooses the tokens that transformers' generate() chooses."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from berth.hub.demo import build_demo_generation_model
from berth.runtime.base import GenerationParams
from berth.runtime.generation import CausalLMGenerator, load_generation_model

torch = pytest.importorskip("torch")

PROMPT = "The lighthouse keeper wrote in the log that"
TOKENS = 40


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> CausalLMGenerator:
    folder = build_demo_generation_model(tmp_path_factory.mktemp("model") / "demo")
    loaded = load_generation_model(Path(folder), "demo-test", max_batch_size=4)
    assert isinstance(loaded.generator, CausalLMGenerator)
    return loaded.generator


def prompt_ids(generator: CausalLMGenerator) -> list[int]:
    return list(generator._tokenizer(PROMPT)["input_ids"])


def with_generate(generator: CausalLMGenerator, **settings: Any) -> list[int]:
    ids = prompt_ids(generator)
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        output = generator._model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=TOKENS,
            min_new_tokens=TOKENS,
            **settings,
        )
    return [int(token_id) for token_id in output[0, len(ids) :]]


def with_loop(generator: CausalLMGenerator, temperature: float, top_p: float) -> list[int]:
    assert generator._loop is not None
    chosen: list[int] = []
    generator._loop.run(
        prompt_ids(generator),
        TOKENS,
        temperature,
        top_p,
        lambda token: chosen.append(token) or True,
    )
    return chosen


def test_loop_serves_demo_model(generator: CausalLMGenerator) -> None:
    assert generator._loop is not None


def test_greedy_tokens_match_generate(generator: CausalLMGenerator) -> None:
    # min_new_tokens keeps generate() from stopping early. The demo model's end token
    # does not come up among the first greedy tokens of this prompt.
    expected = with_generate(generator, do_sample=False)
    assert with_loop(generator, temperature=0, top_p=1.0) == expected


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.8), (1.3, 0.5)])
def test_seeded_sampling_matches_generate(
    generator: CausalLMGenerator, temperature: float, top_p: float
) -> None:
    torch.manual_seed(1234)
    expected = with_generate(
        generator, do_sample=True, temperature=temperature, top_p=top_p, top_k=0
    )
    torch.manual_seed(1234)
    chosen = with_loop(generator, temperature, top_p)

    assert chosen == expected
    # Sampling, not greedy choice, made these tokens.
    assert chosen != with_loop(generator, temperature=0, top_p=1.0)


def test_loop_stops_when_push_returns_false(generator: CausalLMGenerator) -> None:
    assert generator._loop is not None
    pushed: list[int] = []

    def push(token_id: int) -> bool:
        pushed.append(token_id)
        return len(pushed) < 3

    generator._loop.run(prompt_ids(generator), TOKENS, 0, 1.0, push)

    assert len(pushed) == 3


def test_unhandled_config_uses_generate(
    generator: CausalLMGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    model = copy.copy(generator._model)
    model.generation_config = copy.deepcopy(generator._model.generation_config)
    model.generation_config.repetition_penalty = 1.3
    model.generation_config.no_repeat_ngram_size = 2

    with caplog.at_level(logging.INFO, logger="berth.runtime.decode_loop"):
        fallback = CausalLMGenerator(model, generator._tokenizer, "demo-test", max_batch_size=4)

    assert fallback._loop is None
    assert "no_repeat_ngram_size, repetition_penalty" in caplog.text
    fallback.close()


# Penalties and logit bias. The bias favours " the", a token of the prompt, so that the
# bias and the penalties pull against each other.
ADJUSTED = GenerationParams(
    max_tokens=None,
    temperature=0,
    top_p=1.0,
    stop=(),
    seed=None,
    frequency_penalty=1.5,
    presence_penalty=0.7,
    logit_bias=((1996, 2.5),),
)


def adjusted_with_generate(generator: CausalLMGenerator, params: GenerationParams) -> list[int]:
    """Return the tokens of generate() with the runtime's own config and processors."""
    ids = prompt_ids(generator)
    config = generator._generation_config(TOKENS, params)
    # Generate all TOKENS tokens, as the loop does, even past an end-of-sequence token.
    config.eos_token_id = None
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        output = generator._model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
            logits_processor=generator._logits_processors(params, len(ids)),
        )
    return [int(token_id) for token_id in output[0, len(ids) :]]


def adjusted_with_loop(generator: CausalLMGenerator, params: GenerationParams) -> list[int]:
    assert generator._loop is not None
    chosen: list[int] = []
    generator._loop.run(
        prompt_ids(generator),
        TOKENS,
        params.temperature,
        params.top_p,
        lambda token: chosen.append(token) or True,
        generator._adjustment(params),
    )
    return chosen


def test_greedy_penalties_match_generate(generator: CausalLMGenerator) -> None:
    expected = adjusted_with_generate(generator, ADJUSTED)
    chosen = adjusted_with_loop(generator, ADJUSTED)

    assert chosen == expected
    # The penalties and the bias changed the tokens.
    assert chosen != with_loop(generator, temperature=0, top_p=1.0)


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.8)])
def test_seeded_penalties_match_generate(
    generator: CausalLMGenerator, temperature: float, top_p: float
) -> None:
    # The demo model's sampled tokens rarely repeat, so a strong bias makes " the" come
    # up, and the bias and the penalties change which tokens follow.
    params = dataclasses.replace(
        ADJUSTED, temperature=temperature, top_p=top_p, logit_bias=((1996, 8.0),)
    )
    torch.manual_seed(99)
    expected = adjusted_with_generate(generator, params)
    torch.manual_seed(99)
    chosen = adjusted_with_loop(generator, params)

    assert chosen == expected
    assert 1996 in chosen
    torch.manual_seed(99)
    assert chosen != with_loop(generator, temperature, top_p)


def test_strong_logit_bias_picks_token(generator: CausalLMGenerator) -> None:
    params = dataclasses.replace(ADJUSTED, frequency_penalty=0.0, presence_penalty=0.0)
    params = dataclasses.replace(params, logit_bias=((6496, 100.0),))

    assert adjusted_with_loop(generator, params) == [6496] * TOKENS
    assert adjusted_with_generate(generator, params) == [6496] * TOKENS


def test_frequency_penalty_counts_each_occurrence(generator: CausalLMGenerator) -> None:
    # A bias of 10 keeps the token on top until the frequency penalty of 2 per
    # occurrence has taken back more than the bias and the gap to the next token.
    params = dataclasses.replace(
        ADJUSTED, frequency_penalty=2.0, presence_penalty=0.0, logit_bias=((6496, 10.0),)
    )
    chosen = adjusted_with_loop(generator, params)

    assert chosen == adjusted_with_generate(generator, params)
    assert 1 < chosen.count(6496) < TOKENS
