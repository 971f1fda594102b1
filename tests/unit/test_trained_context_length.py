"""The trained context length of checkpoints: recorded at import, and the upper bound of
an endpoint's context_length when the endpoint is created or updated."""

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from berth.auth import authenticate
from berth.db.engine import Database
from berth.db.models import Checkpoint
from berth.hub import importer
from berth.hub.demo import build_demo_generation_model
from berth.service import models
from tests.unit.conftest import UNIT_ADMIN_KEY as ADMIN_KEY
from tests.unit.test_endpoint_runtime_settings import create, rejected, set_installed, update

# max_position_embeddings in the demo model's config.json.
DEMO_TRAINED_LENGTH = 512
# <architecture>.context_length in the tiny GGUF model of tests/gguf_model.py.
GGUF_TRAINED_LENGTH = 256


@pytest.fixture
def with_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    set_installed(monkeypatch, llama_cpp=True)


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo Llama model's files, which state max_position_embeddings 512."""
    return build_demo_generation_model(tmp_path_factory.mktemp("llama") / "model")


def with_config(source: Path, target: Path, **changes: Any) -> Path:
    """Copy the model folder `source` to `target` with config.json keys changed; a value
    of None removes the key."""
    shutil.copytree(source, target)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    config_path.write_text(json.dumps(config))
    return target


def import_folder(database: Database, path: Path, name: str, checkpoint: str = "v1") -> Checkpoint:
    with database.session() as session:
        principal = authenticate(session, ADMIN_KEY, None)
        request = models.ImportRequest(path=str(path), name=name, link=True, checkpoint=checkpoint)
        _model, row = models.import_model(session, principal, request, path.parent / "models")
        session.expunge(row)
        return row


def trained_length_of(database: Database, model_name: str) -> int | None:
    with database.session() as session:
        principal = authenticate(session, ADMIN_KEY, None)
        _model, checkpoint = models.find_checkpoint(session, principal, model_name)
        assert checkpoint is not None
        return checkpoint.trained_context_length


def test_import_records_config_length(database: Database, llama_folder: Path) -> None:
    checkpoint = import_folder(database, llama_folder, "llama")

    assert checkpoint.trained_context_length == DEMO_TRAINED_LENGTH
    assert trained_length_of(database, "llama") == DEMO_TRAINED_LENGTH


def test_import_records_gguf_length(database: Database, gguf_model: str) -> None:
    assert trained_length_of(database, gguf_model) == GGUF_TRAINED_LENGTH


def test_config_key_follows_attribute_map(llama_folder: Path, tmp_path: Path) -> None:
    # GPT-2's config.json states the length as n_positions, which GPT2Config maps to
    # max_position_embeddings.
    folder = with_config(
        llama_folder,
        tmp_path / "gpt2",
        model_type="gpt2",
        architectures=["GPT2LMHeadModel"],
        max_position_embeddings=None,
        n_positions=1024,
    )

    assert importer.inspect_path(str(folder)).trained_context_length == 1024


@pytest.mark.parametrize("stated", [None, 0, -5, "512", 512.0, True])
def test_unusable_config_length_is_unknown(llama_folder: Path, tmp_path: Path, stated: Any) -> None:
    folder = with_config(llama_folder, tmp_path / "odd", max_position_embeddings=stated)

    assert importer.inspect_path(str(folder)).trained_context_length is None


def test_create_above_trained_length(database: Database, llama_folder: Path) -> None:
    import_folder(database, llama_folder, "llama")

    error = rejected(create, database, "chat", "llama", context_length=1024)

    assert error.field == "runtime_settings.context_length"
    assert error.message == (
        "runtime_settings.context_length 1024 exceeds the trained context length of "
        "checkpoint 'llama:v1' (512 tokens); set context_length to at most 512, or leave "
        "it unset to use the model's own"
    )


def test_create_at_trained_length(database: Database, llama_folder: Path) -> None:
    checkpoint = import_folder(database, llama_folder, "llama")

    endpoint = create(database, "chat", "llama", context_length=DEMO_TRAINED_LENGTH)

    assert checkpoint.trained_context_length == DEMO_TRAINED_LENGTH
    assert endpoint.settings == {"context_length": DEMO_TRAINED_LENGTH}


def test_gguf_create_above_trained_length(
    database: Database, gguf_model: str, with_llama_cpp: None
) -> None:
    error = rejected(create, database, "chat", gguf_model, context_length=257)
    endpoint = create(database, "chat", gguf_model, context_length=GGUF_TRAINED_LENGTH)

    assert error.field == "runtime_settings.context_length"
    assert "257 exceeds the trained context length of checkpoint 'tiny-gguf:" in error.message
    assert "(256 tokens); set context_length to at most 256" in error.message
    assert endpoint.settings == {"context_length": GGUF_TRAINED_LENGTH}


def test_unknown_trained_length_accepts_any(
    database: Database, llama_folder: Path, tmp_path: Path
) -> None:
    folder = with_config(llama_folder, tmp_path / "unstated", max_position_embeddings=None)
    checkpoint = import_folder(database, folder, "unstated")

    endpoint = create(database, "chat", "unstated", context_length=1048576)

    assert checkpoint.trained_context_length is None
    assert endpoint.settings == {"context_length": 1048576}


def test_update_above_trained_length(database: Database, llama_folder: Path) -> None:
    import_folder(database, llama_folder, "llama")
    create(database, "chat", "llama", context_length=256)

    error = rejected(update, database, "chat", context_length=513)
    endpoint = update(database, "chat", context_length=DEMO_TRAINED_LENGTH)

    assert error.field == "runtime_settings.context_length"
    assert error.message.startswith("runtime_settings.context_length 513 exceeds the trained")
    assert endpoint.settings == {"context_length": DEMO_TRAINED_LENGTH}


def test_move_to_shorter_checkpoint(database: Database, llama_folder: Path, tmp_path: Path) -> None:
    import_folder(database, llama_folder, "llama", checkpoint="long")
    short = with_config(llama_folder, tmp_path / "short", max_position_embeddings=256)
    import_folder(database, short, "llama", checkpoint="short")
    create(database, "chat", "llama:long", context_length=DEMO_TRAINED_LENGTH)

    error = rejected(update, database, "chat", model="llama:short")
    fixed = update(database, "chat", model="llama:short", context_length=256)

    assert error.field == "runtime_settings.context_length"
    assert error.message == (
        "runtime_settings.context_length 512, which the endpoint keeps unless the update "
        "changes it, exceeds the trained context length of checkpoint 'llama:short' "
        "(256 tokens); set context_length to at most 256, or reset it (null) to use the "
        "model's own"
    )
    assert fixed.settings == {"context_length": 256}


def test_move_with_reset_is_accepted(database: Database, llama_folder: Path) -> None:
    create(database, "chat", "demo-tiny-llama", context_length=4096)
    import_folder(database, llama_folder, "llama")

    error = rejected(update, database, "chat", model="llama")
    endpoint = update(database, "chat", model="llama", reset=frozenset({"context_length"}))

    assert error.field == "runtime_settings.context_length"
    assert endpoint.settings == {}
