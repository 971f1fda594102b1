"""Model loading for each ML App, with failures turned into one-line reasons a person can act on."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from berth.runtime.base import LoadedModel
from berth.runtime.config import RuntimeConfig
from berth.states import MLApp

# A folder with none of these files has no tokenizer that AutoTokenizer could load.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


class ModelLoadError(Exception):
    """Loading failed for a reason that the message states completely, such as a missing file."""


def require_model_folder(path: Path | None, expected_files: Iterable[str]) -> Path:
    """Return `path`, raising ModelLoadError unless it is a folder with one of `expected_files`."""
    names = list(expected_files)
    if path is None:
        raise ModelLoadError("--model-path is empty: pass the folder that contains the model files")
    if not path.exists():
        raise ModelLoadError(f"model folder {path} does not exist")
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is not a folder")
    if not any((path / name).is_file() for name in names):
        raise ModelLoadError(f"model folder {path} has no {' or '.join(names)}")
    return path


def prepare_offline_transformers() -> None:
    """Force offline loading and turn off progress bars before transformers is imported.

    The variables are set with setdefault, so an operator can still override them.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.disable_progress_bar()


def load_model(config: RuntimeConfig) -> LoadedModel:
    """Load the model of `config`, importing only the libraries its ML App needs."""
    if config.ml_app is MLApp.ECHO:
        from berth.runtime.echo import load_echo

        return load_echo(config.echo_delay_ms / 1000)
    # The folder checks run before the imports, which take seconds.
    if config.ml_app is MLApp.TEXT_EMBEDDING:
        folder = require_model_folder(config.model_path, ("modules.json", "config.json"))
        from berth.runtime.embedding import load_embedding_model

        return load_embedding_model(folder, config.max_batch_size, config.max_batch_wait_ms / 1000)
    if config.ml_app is MLApp.TEXT_GENERATION:
        folder = require_model_folder(config.model_path, ("config.json",))
        require_model_folder(folder, _TOKENIZER_FILES)
        from berth.runtime.generation import load_generation_model

        return load_generation_model(folder, config.model_name)
    raise ModelLoadError(f"ML App {config.ml_app.value!r} has no runtime")


def describe_load_failure(error: BaseException, config: RuntimeConfig) -> str:
    """Return a one-line reason for the load failure."""
    if isinstance(error, ModelLoadError):
        return str(error)
    detail = " ".join(str(error).split()) or "no details"
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return (
        f"loading the {config.ml_app.display_name} model from {config.model_path} failed: "
        f"{type(error).__name__}: {detail}"
    )
