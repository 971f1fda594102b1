"""Tiny text-generation checkpoints whose every reply repeats one marker word.

A fault scenario moves an endpoint from one checkpoint to another and must tell from a
response which checkpoint produced it. The response's `model` field names the model,
not the checkpoint, so each checkpoint built here answers every prompt with its own
word ("alpha alpha alpha"), whatever the prompt and the sampling settings.

The builder starts from the demo model (a randomly initialised Llama, see
`berth.hub.demo`) and rewrites three weights, so the marker does not depend on what the
random layers compute:

- the input embeddings' channel 0 becomes `CHANNEL_VALUE` for every token, so the
  hidden state's channel 0 stays near that value after both layers;
- the final RMSNorm keeps only channel 0, which is then about sqrt(hidden size) = 8;
- the output head, untied from the input embeddings, is zero except for the marker
  token's row, which reads channel 0 with weight `MARKER_WEIGHT`.

The marker token's logit is then about 8 x 10 = 80 and every other logit is 0, so greedy
decoding and sampling at any allowed temperature (up to 2) both pick the marker.
"""

import json
import shutil
from pathlib import Path

CHANNEL_VALUE = 10.0
MARKER_WEIGHT = 10.0
_WEIGHTS_FILE = "model.safetensors"
# The demo build's description ("randomly initialised") no longer fits the rewritten weights.
_SKIPPED_FILES = {_WEIGHTS_FILE, "config.json", "berth-demo.json"}


def build_marker_model(source: Path, target: Path, word: str) -> Path:
    """Write a copy of the demo model at `source` to `target` that always replies `word`.

    Raises ValueError if the tokenizer has no single token for `word`.
    """
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    token_id = tokenizer.convert_tokens_to_ids(word)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"the demo tokenizer has no single token for '{word}'")

    weights = load_file(str(source / _WEIGHTS_FILE))
    embeddings = weights["model.embed_tokens.weight"].clone()
    embeddings[:, 0] = CHANNEL_VALUE
    norm = torch.zeros_like(weights["model.norm.weight"])
    norm[0] = 1.0
    head = torch.zeros_like(embeddings)
    head[token_id, 0] = MARKER_WEIGHT
    weights.update(
        {
            "model.embed_tokens.weight": embeddings,
            "model.norm.weight": norm,
            "lm_head.weight": head,
        }
    )

    target.mkdir(parents=True)
    for file in source.iterdir():
        if file.name not in _SKIPPED_FILES:
            shutil.copy2(file, target / file.name)
    config = json.loads((source / "config.json").read_text())
    config["tie_word_embeddings"] = False
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(weights, str(target / _WEIGHTS_FILE), metadata={"format": "pt"})
    return target
