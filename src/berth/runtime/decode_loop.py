"""Decode one sequence with the model's forward pass and key-value cache, without generate().

For each token, transformers' generate() runs its logits processors, stopping criteria,
input preparation and bookkeeping in Python. For a small model on a CPU that is a large
part of the time (docs/benchmarks.md, change 19). The loop does only what the runtime
needs: greedy choice, or sampling with temperature and top-p, for one sequence, after
the request's penalties and logit bias (LogitAdjustment, which generate() applies too).

The loop serves a model only when it chooses the same tokens as generate().
`DecodeLoop.for_model` returns None for a generation config that sets anything the loop
does not do, such as a repetition penalty, banned words or beam search. It also returns
None for a model whose greedy tokens differ from generate()'s in a short check at load.
The runtime then uses generate(). Batches of several requests always use generate().
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch

from berth.runtime.logit_adjustment import LogitAdjustment

logger = logging.getLogger(__name__)

# Fields of a generation config that the loop honours, or that do not change which
# tokens are chosen. The runtime sets the sampling fields of every request itself, and
# the end-of-sequence ids reach the loop through the TokenTextSender.
_HANDLED_CONFIG_FIELDS = frozenset(
    {
        "_from_model_config",
        "bos_token_id",
        "decoder_start_token_id",
        "do_sample",
        "eos_token_id",
        "max_length",
        "max_new_tokens",
        "output_attentions",
        "output_hidden_states",
        "output_scores",
        "pad_token_id",
        "return_dict_in_generate",
        "temperature",
        "top_k",
        "top_p",
        "transformers_version",
        "use_cache",
    }
)

# Tokens compared with generate() at load.
_CHECK_TOKENS = 4

# A callback that takes each token and returns False once generation should stop (see
# TokenTextSender.push).
PushToken = Callable[[int], bool]


class DecodeLoop:
    def __init__(self, model: Any) -> None:
        self._model = model
        parameters = inspect.signature(model.forward).parameters
        # transformers 5 names the cache `cache`, and 4.x names it `past_key_values`.
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        # Only the last position's logits are needed; older releases compute them all.
        self._keep_arg = next(
            (name for name in ("logits_to_keep", "num_logits_to_keep") if name in parameters),
            None,
        )

    @classmethod
    def for_model(cls, model: Any, base_config: Any, check_ids: list[int]) -> DecodeLoop | None:
        """Return a loop for `model`, or None when generate() must serve it.

        `check_ids` is a short prompt for the check against generate().
        """
        unhandled = sorted(set(base_config.to_diff_dict()) - _HANDLED_CONFIG_FIELDS)
        if unhandled:
            logger.info(
                "generating with transformers' generate(): the model's generation config sets %s",
                ", ".join(unhandled),
            )
            return None
        parameters = inspect.signature(model.forward).parameters
        if "cache" not in parameters and "past_key_values" not in parameters:
            logger.info("generating with transformers' generate(): the model takes no cache")
            return None
        loop = cls(model)
        try:
            expected = _greedy_with_generate(model, base_config, check_ids)
            chosen: list[int] = []

            def collect(token_id: int) -> bool:
                chosen.append(token_id)
                return True

            loop.run(check_ids, _CHECK_TOKENS, temperature=0, top_p=1.0, push=collect)
        except Exception:  # noqa: BLE001 - any failure means the loop cannot serve this model
            logger.info(
                "generating with transformers' generate(): the decoding loop failed on this model",
                exc_info=True,
            )
            return None
        if chosen != expected:
            logger.info(
                "generating with transformers' generate(): the decoding loop chose tokens "
                "%s where generate() chose %s",
                chosen,
                expected,
            )
            return None
        return loop

    def run(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        push: PushToken,
        adjustment: LogitAdjustment | None = None,
    ) -> None:
        """Generate up to `max_new_tokens` tokens after `prompt_ids`, passing each to `push`
        until it returns False. A temperature of 0 chooses greedily. `adjustment` applies
        the request's penalties and logit bias, if any."""
        device = self._model.device
        keep = {self._keep_arg: 1} if self._keep_arg else {}
        with torch.inference_mode():
            input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
            counts = None
            if adjustment is not None and adjustment.counts_tokens:
                counts = adjustment.count(input_ids[:, :0])
            cache = None
            for step in range(max_new_tokens):
                output = self._model(
                    input_ids=input_ids, use_cache=True, **{self._cache_arg: cache}, **keep
                )
                cache = output["cache"] if "cache" in output else output["past_key_values"]
                # generate() works on a float32 copy of the logits.
                scores = output.logits[:, -1, :].to(dtype=torch.float32)
                if adjustment is not None:
                    scores = adjustment.apply(scores, counts)
                token_id = _choose(scores, temperature, top_p)
                if counts is not None:
                    counts[0, token_id] += 1
                if not push(token_id) or step == max_new_tokens - 1:
                    return
                input_ids = torch.tensor([[token_id]], dtype=torch.long, device=device)


def _choose(scores: torch.Tensor, temperature: float, top_p: float) -> int:
    """Choose the next token from one row of float32 logits, as generate() would: greedily
    for a temperature of 0, else by sampling after temperature and top-p (nucleus)
    filtering."""
    if temperature == 0:
        return int(scores.argmax(dim=-1))
    if temperature != 1.0:
        scores = scores / temperature
    if top_p < 1.0:
        # Remove the least likely tokens whose probabilities together stay within
        # 1 - top_p, but always keep the most likely one.
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, order, remove), -float("inf"))
    probabilities = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probabilities, num_samples=1))


def _greedy_with_generate(model: Any, base_config: Any, prompt_ids: list[int]) -> list[int]:
    """Return the first _CHECK_TOKENS greedy tokens of generate(), which does not stop at
    an end-of-sequence token here."""
    config = copy.deepcopy(base_config)
    config.max_new_tokens = _CHECK_TOKENS
    config.eos_token_id = None
    config.do_sample = False
    config.temperature = None
    config.top_p = None
    config.top_k = None
    with torch.inference_mode():
        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=model.device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
        )
    return [int(token_id) for token_id in output[0, len(prompt_ids) :]]
