"""Building the demo Text Generation model: files, determinism, idempotence and races."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from berth.hub import demo
from berth.hub.demo import (
    DEMO_ARCHITECTURE,
    DEMO_DESCRIPTION,
    DEMO_MARKER_FILE,
    build_demo_generation_model,
    is_demo_model_complete,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_generation_model(tmp_path_factory.mktemp("demo") / "demo-model")


def staging_leftovers(parent: Path) -> list[str]:
    return [path.name for path in parent.iterdir() if ".building-" in path.name]


def test_build_writes_model_files(built: Path) -> None:
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (built / name).is_file(), name
    assert is_demo_model_complete(built)
    assert staging_leftovers(built.parent) == []


def test_marker_describes_demo(built: Path) -> None:
    marker = json.loads((built / DEMO_MARKER_FILE).read_text())

    assert marker["description"] == DEMO_DESCRIPTION
    assert marker["architecture"] == DEMO_ARCHITECTURE
    assert marker["parameters"] > 0


def test_config_is_tiny_llama(built: Path) -> None:
    config = json.loads((built / "config.json").read_text())
    generation = json.loads((built / "generation_config.json").read_text())

    assert config["architectures"] == [DEMO_ARCHITECTURE]
    assert config["hidden_size"] == 64
    assert config["num_hidden_layers"] == 2
    assert generation["eos_token_id"] == config["eos_token_id"]
    assert generation["pad_token_id"] == config["pad_token_id"]
    assert generation["eos_token_id"] is not None


def test_tokenizer_has_chat_template_and_eos(built: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(built), local_files_only=True)
    messages = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    assert prompt == "[CLS]system: Be brief\nuser: Hi\nassistant:"
    assert tokenizer.eos_token == "[SEP]"
    assert tokenizer.pad_token_id is not None
    # A plain prompt starts with BOS and must not end with EOS.
    ids = tokenizer("hello world")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] != tokenizer.eos_token_id


def test_model_generates(built: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(built), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(built), local_files_only=True)
    encoded = tokenizer("hello world", return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**encoded, max_new_tokens=5, do_sample=False)

    assert type(model).__name__ == DEMO_ARCHITECTURE
    assert output.shape[1] <= encoded["input_ids"].shape[1] + 5


def test_second_build_reuses_folder(built: Path) -> None:
    weights = built / "model.safetensors"
    modified = weights.stat().st_mtime_ns

    assert build_demo_generation_model(built) == built
    assert weights.stat().st_mtime_ns == modified


def test_weights_are_deterministic(built: Path, tmp_path: Path) -> None:
    import torch

    state_before = torch.random.get_rng_state()
    other = build_demo_generation_model(tmp_path / "again")

    assert (other / "model.safetensors").read_bytes() == (built / "model.safetensors").read_bytes()
    assert torch.equal(torch.random.get_rng_state(), state_before)


def test_lost_race_returns_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "demo-model"
    write_model = demo._write_demo_model

    def write_while_another_process_finishes(folder: Path) -> None:
        write_model(folder)
        winner = tmp_path / "winner"
        write_model(winner)
        os.rename(winner, target)

    monkeypatch.setattr(demo, "_write_demo_model", write_while_another_process_finishes)

    assert build_demo_generation_model(target) == target
    assert is_demo_model_complete(target)
    assert staging_leftovers(tmp_path) == []


def test_incomplete_target_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "demo-model"
    target.mkdir()
    (target / "unrelated.txt").write_text("not a model")

    with pytest.raises(FileExistsError, match="not a complete demo model"):
        build_demo_generation_model(target)
    assert staging_leftovers(tmp_path) == []


def test_concurrent_builds_both_succeed(tmp_path: Path) -> None:
    target = tmp_path / "shared" / "demo-model"
    script = (
        "import sys\n"
        "from berth.hub.demo import build_demo_generation_model\n"
        "print(build_demo_generation_model(sys.argv[1]))\n"
    )
    builders = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [builder.communicate(timeout=120) for builder in builders]

    for builder, (stdout, stderr) in zip(builders, results, strict=True):
        assert builder.returncode == 0, stderr
        assert stdout.strip() == str(target)
    assert is_demo_model_complete(target)
    assert staging_leftovers(target.parent) == []
