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
        self.dimension = _embedding_dimension(model)
        # sentence-transformers 6 renamed tokenize to preprocess and deprecated the old name.
        self._preprocess = getattr(model, "preprocess", None) or model.tokenize
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
        """Encode one batch. Runs in the batcher's worker thread, never on the event loop.

        The texts are tokenized once, and the token counts come from that same
        tokenization; `SentenceTransformer.encode` would tokenize them a second time.
        """
        import torch

        features = self._preprocess(texts)
        token_counts = [int(count) for count in features["attention_mask"].sum(dim=1)]
        features = {
            name: value.to(self._model.device) if isinstance(value, torch.Tensor) else value
            for name, value in features.items()
        }
        with torch.inference_mode():
            embeddings = self._model.forward(features)["sentence_embedding"]
            embeddings = torch.nn.functional.normalize(embeddings.float(), p=2, dim=1)
        return embeddings.cpu().numpy(), token_counts


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
