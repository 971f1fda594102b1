"""A tiny llama GGUF model with random weights, written with the `gguf` package.

The model has 2 layers of width 64 and a SentencePiece ("llama") vocabulary of
control tokens, the 256 byte tokens, single letters and a few words. The output rows of
the control and byte tokens are zero, so greedy decoding never picks them: its replies
are words and letters and never end with EOS. Sampling with a temperature can pick them.
"""

from __future__ import annotations

import string
from pathlib import Path

CONTEXT_LENGTH = 256
EMBEDDING_LENGTH = 64
FEED_FORWARD_LENGTH = 128
BLOCK_COUNT = 2
HEAD_COUNT = 4
HEAD_COUNT_KV = 2

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = ("the", "a", "once", "upon", "time", "story", "little", "cat", "dog", "tree")
_WORDS += ("river", "sun", "moon", "red", "blue", "green", "happy", "walked", "sang", "and")


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Return the tokens, their scores and their gguf.TokenType values."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    scores = [0.0, 0.0, 0.0]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.BYTE)
        scores.append(0.0)
    pieces = ["\u2581", *string.ascii_letters, ".", ",", "!", "?"]
    pieces += [f"\u2581{word}" for word in _WORDS]
    for index, piece in enumerate(pieces):
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
        scores.append(-float(index))
    return tokens, scores, [int(token_type) for token_type in types]


def write_tiny_llama_gguf(path: Path, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    """Write the model to `path` and return `path`. chat_template None writes no template."""
    import gguf
    import numpy

    tokens, scores, types = _vocabulary()
    first_normal_token = types.index(int(gguf.TokenType.NORMAL))
    rng = numpy.random.default_rng(1234)

    def weights(*shape: int) -> numpy.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(numpy.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("berth-tiny-llama")
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(EMBEDDING_LENGTH)
    writer.add_feed_forward_length(FEED_FORWARD_LENGTH)
    writer.add_block_count(BLOCK_COUNT)
    writer.add_head_count(HEAD_COUNT)
    writer.add_head_count_kv(HEAD_COUNT_KV)
    writer.add_rope_dimension_count(EMBEDDING_LENGTH // HEAD_COUNT)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    vocab_size = len(tokens)
    kv_width = EMBEDDING_LENGTH // HEAD_COUNT * HEAD_COUNT_KV
    output = weights(vocab_size, EMBEDDING_LENGTH)
    output[:first_normal_token] = 0.0
    writer.add_tensor("token_embd.weight", weights(vocab_size, EMBEDDING_LENGTH))
    writer.add_tensor("output_norm.weight", numpy.ones(EMBEDDING_LENGTH, dtype=numpy.float32))
    writer.add_tensor("output.weight", output)
    for block in range(BLOCK_COUNT):
        prefix = f"blk.{block}"
        writer.add_tensor(
            f"{prefix}.attn_norm.weight", numpy.ones(EMBEDDING_LENGTH, dtype=numpy.float32)
        )
        writer.add_tensor(f"{prefix}.attn_q.weight", weights(EMBEDDING_LENGTH, EMBEDDING_LENGTH))
        writer.add_tensor(f"{prefix}.attn_k.weight", weights(kv_width, EMBEDDING_LENGTH))
        writer.add_tensor(f"{prefix}.attn_v.weight", weights(kv_width, EMBEDDING_LENGTH))
        writer.add_tensor(
            f"{prefix}.attn_output.weight", weights(EMBEDDING_LENGTH, EMBEDDING_LENGTH)
        )
        writer.add_tensor(
            f"{prefix}.ffn_norm.weight", numpy.ones(EMBEDDING_LENGTH, dtype=numpy.float32)
        )
        writer.add_tensor(
            f"{prefix}.ffn_gate.weight", weights(FEED_FORWARD_LENGTH, EMBEDDING_LENGTH)
        )
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(FEED_FORWARD_LENGTH, EMBEDDING_LENGTH))
        writer.add_tensor(
            f"{prefix}.ffn_down.weight", weights(EMBEDDING_LENGTH, FEED_FORWARD_LENGTH)
        )

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
