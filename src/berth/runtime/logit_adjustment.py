"""OpenAI's frequency and presence penalties and logit_bias, applied to a model's logits.

The decoding loop and the LogitsProcessor that the transformers runtime passes to
generate() both call `LogitAdjustment.apply`, so both paths choose the same tokens. As in
OpenAI's description of the parameters, the adjustment runs on the raw logits, before
temperature and top-p, and the penalties count only the tokens of the completion, not
those of the prompt:

    logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty
    logit[j] += logit_bias[j]
"""

from __future__ import annotations

from typing import Any

import torch

from berth.runtime.base import GenerationParams


class LogitAdjustment:
    """The penalties and logit bias of one request, for logits `vocab_size` wide."""

    def __init__(self, params: GenerationParams, vocab_size: int, device: Any) -> None:
        self.vocab_size = vocab_size
        self._frequency_penalty = params.frequency_penalty
        self._presence_penalty = params.presence_penalty
        self._bias: torch.Tensor | None = None
        if params.logit_bias:
            bias = torch.zeros(vocab_size, dtype=torch.float32, device=device)
            token_ids = torch.tensor([token_id for token_id, _ in params.logit_bias], device=device)
            values = torch.tensor(
                [value for _, value in params.logit_bias], dtype=torch.float32, device=device
            )
            bias[token_ids] = values
            self._bias = bias

    @property
    def counts_tokens(self) -> bool:
        """Whether `apply` needs the counts of the generated tokens."""
        return bool(self._frequency_penalty or self._presence_penalty)

    def count(self, generated_ids: torch.Tensor) -> torch.Tensor:
        """Return float32 counts of shape (batch, vocab_size) of each row's generated ids."""
        counts = torch.zeros(
            (generated_ids.shape[0], self.vocab_size),
            dtype=torch.float32,
            device=generated_ids.device,
        )
        if generated_ids.shape[1] == 0:
            return counts
        ones = torch.ones(generated_ids.shape, dtype=torch.float32, device=generated_ids.device)
        return counts.scatter_add_(1, generated_ids, ones)

    def apply(self, scores: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        """Return float32 `scores` (batch, vocab_size) with the penalties and the bias applied.

        `counts` comes from `count`, or is None when `counts_tokens` is False.
        """
        if counts is not None and self._frequency_penalty:
            scores = scores - counts * self._frequency_penalty
        if counts is not None and self._presence_penalty:
            scores = scores - (counts > 0).to(torch.float32) * self._presence_penalty
        if self._bias is not None:
            scores = scores + self._bias
        return scores
