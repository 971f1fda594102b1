"""Real models behind endpoints, called with the official openai client."""

import math

import pytest
from openai import OpenAI

from berth.client import Client
from tests.e2e.conftest import create_live

pytestmark = pytest.mark.slow


def cosine(first: list[float], second: list[float]) -> float:
    dot = sum(a * b for a, b in zip(first, second, strict=True))
    return dot / (math.sqrt(sum(a * a for a in first)) * math.sqrt(sum(b * b for b in second)))


@pytest.fixture(scope="module")
def embeddings(client: Client) -> OpenAI:
    endpoint, key = create_live(client, "real-embeddings", model="all-MiniLM-L6-v2")
    return OpenAI(base_url=endpoint["openai_base_url"], api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def generation(client: Client) -> OpenAI:
    endpoint, key = create_live(client, "real-generation", model="demo-tiny-llama")
    return OpenAI(base_url=endpoint["openai_base_url"], api_key=key, max_retries=0)


def test_embeddings_are_semantic(embeddings: OpenAI) -> None:
    result = embeddings.embeddings.create(
        model="all-MiniLM-L6-v2",
        input=[
            "a cat sits on the mat",
            "a kitten is sitting on a rug",
            "quarterly stock market report",
        ],
    )

    cat, kitten, stocks = (item.embedding for item in result.data)
    assert len(cat) == 384
    assert cosine(cat, kitten) > cosine(cat, stocks)
    assert cosine(cat, kitten) > 0.5
    assert result.usage.prompt_tokens > 0


def test_embedding_of_single_string(embeddings: OpenAI) -> None:
    result = embeddings.embeddings.create(model="all-MiniLM-L6-v2", input="hello world")

    assert len(result.data) == 1
    assert result.data[0].index == 0


def test_chat_completion(generation: OpenAI) -> None:
    result = generation.chat.completions.create(
        model="demo-tiny-llama",
        messages=[{"role": "user", "content": "Say something"}],
        max_tokens=8,
    )

    assert result.choices[0].message.role == "assistant"
    assert isinstance(result.choices[0].message.content, str)
    assert result.choices[0].finish_reason in ("stop", "length")
    assert 0 < result.usage.completion_tokens <= 8
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_chat_completion_streamed(generation: OpenAI) -> None:
    stream = generation.chat.completions.create(
        model="demo-tiny-llama",
        messages=[{"role": "user", "content": "Tell a story"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )

    chunks = list(stream)

    content_chunks = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert content_chunks
    assert finish[-1] in ("stop", "length")
    assert chunks[-1].usage is not None
    assert 0 < chunks[-1].usage.completion_tokens <= 8


def test_text_completion(generation: OpenAI) -> None:
    result = generation.completions.create(
        model="demo-tiny-llama", prompt="Once upon a time", max_tokens=5
    )

    assert isinstance(result.choices[0].text, str)
    assert result.usage.completion_tokens <= 5
