"""The Text Embedding ML App: a sentence-transformers model behind the dynamic batcher."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from berth.runtime.base import Embedder, EmbeddingResult, LoadedModel
from berth.runtime.batching import BatchError, EmbeddingBatcher
from berth.runtime.errors import server_error
from berth.runtime.loading import ModelLoadError, prepare_offline_transformers


class SentenceTransformerEmbedder(Embedder):
    """Encode texts with a SentenceTransformer, L2-normalized, in batches.

    Texts longer than the model's max_seq_length are truncated, as sentence-transformers
    does, and the token count covers only the tokens the model saw, special tokens
    included.
    """

    def __init__(self, model: Any, max_batch_size: int, max_batch_wait_s: float) -> None:
        self._model = model
        self._tokenizer = model.tokenizer
        self._max_seq_length = model.max_seq_length
        self.dimension = _embedding_dimension(model)
        self._batcher = EmbeddingBatcher(self._encode, max_batch_size, max_batch_wait_s)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        try:
            vectors, prompt_tokens = await self._batcher.submit(texts)
        except BatchError as error:
            raise server_error(str(error)) from None
        return EmbeddingResult(vectors, prompt_tokens)

    def close(self) -> None:
        self._batcher.close()

    def _encode(self, texts: list[str]) -> tuple[Any, list[int]]:
        """Encode one batch. Runs in the batcher's worker thread, never on the event loop."""
        vectors = self._model.encode(
            texts,
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        encoded = self._tokenizer(
            texts, truncation=self._max_seq_length is not None, max_length=self._max_seq_length
        )
        token_counts = [len(ids) for ids in encoded["input_ids"]]
        return vectors, token_counts


def _embedding_dimension(model: Any) -> int:
    # sentence-transformers 6 renamed get_sentence_embedding_dimension to
    # get_embedding_dimension and deprecated the old name.
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    dimension = getter()
    if not dimension:
        raise ModelLoadError("the embedding model does not report its output dimension")
    return int(dimension)


def load_embedding_model(folder: Path, max_batch_size: int, max_batch_wait_s: float) -> LoadedModel:
    prepare_offline_transformers()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    model.eval()
    embedder = SentenceTransformerEmbedder(model, max_batch_size, max_batch_wait_s)
    return LoadedModel(embedder=embedder, close=embedder.close)
