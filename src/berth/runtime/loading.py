"""Model loading for each ML App, with failures turned into one-line reasons a person can act on."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from berth.runtime.base import LoadedModel
from berth.runtime.config import (
    DEFAULT_GENERATION_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_SIZE,
    RuntimeConfig,
)
from berth.runtime.selection import (
    AUTO,
    GGUF_INSTALL_HINT,
    GGUF_RUNTIMES,
    Runtime,
    RuntimeUnavailableError,
    choose_transformers_checkpoint_runtime,
    cuda_available,
    llama_cpp_installed,
    module_installed,
)
from berth.states import CheckpointFormat, MLApp

GGUF_MAGIC = b"GGUF"
# A folder with none of these files has no tokenizer that AutoTokenizer could load.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


class ModelLoadError(Exception):
    """Loading failed for a reason that the message states completely, such as a missing file."""


# The transformers config attribute that states the trained context length. A config
# class whose config.json uses another key, such as GPT-2's n_positions, maps this name
# to that key in its attribute_map.
TRAINED_CONTEXT_LENGTH_ATTRIBUTE = "max_position_embeddings"


def trained_context_length(stated: object) -> int | None:
    """Return a stated trained context length, or None unless it is a positive integer."""
    if isinstance(stated, bool) or not isinstance(stated, int) or stated <= 0:
        return None
    return stated


def check_context_length(context_length: int | None, trained: int | None, model_name: str) -> None:
    """Raise ModelLoadError for a context_length setting above the trained context length.

    A model has not learned positions past its trained length, so Berth fails the load
    instead of clamping the setting silently. Either value may be None: no setting, or
    a model that states no trained length.
    """
    if context_length is None or trained is None or context_length <= trained:
        return
    raise ModelLoadError(
        f"the endpoint's context_length {context_length} exceeds the trained context length "
        f"of model '{model_name}' ({trained} tokens). Set context_length to at most "
        f"{trained}, or reset it to use the trained length."
    )


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


def require_gguf_file(path: Path | None) -> Path:
    """Return `path`, raising ModelLoadError unless it is a file that starts like GGUF."""
    if path is None:
        raise ModelLoadError("--model-path is empty: pass the .gguf file of the model")
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path} does not exist")
    with open(path, "rb") as handle:
        if handle.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ModelLoadError(f"file {path} is not a GGUF model: it does not start with 'GGUF'")
    return path


def load_model(config: RuntimeConfig) -> LoadedModel:
    """Load the model of `config`, importing only the libraries its ML App needs."""
    if config.ml_app is MLApp.ECHO:
        from berth.runtime.echo import load_echo

        loaded = load_echo(config.echo_delay_ms / 1000, config.echo_cpu_rounds)
        return replace(loaded, runtime=Runtime.ECHO)
    # The folder checks run before the imports, which take seconds.
    if config.ml_app is MLApp.TEXT_EMBEDDING:
        folder = require_model_folder(config.model_path, ("modules.json", "config.json"))
        from berth.runtime.embedding import load_embedding_model

        batch_size = config.max_batch_size or DEFAULT_MAX_BATCH_SIZE
        loaded = load_embedding_model(folder, batch_size, config.max_batch_wait_ms / 1000)
        return replace(loaded, runtime=Runtime.SENTENCE_TRANSFORMERS)
    if config.ml_app is MLApp.TEXT_GENERATION:
        if config.checkpoint_format is CheckpointFormat.GGUF:
            return _load_gguf(config)
        return _load_transformers_generation(config)
    raise ModelLoadError(f"ML App {config.ml_app.value!r} has no runtime")


def _load_gguf(config: RuntimeConfig) -> LoadedModel:
    if config.runtime not in GGUF_RUNTIMES:
        raise ModelLoadError(
            f"runtime '{config.runtime}' cannot serve a GGUF checkpoint; "
            f"use {AUTO} or {Runtime.LLAMA_CPP}"
        )
    path = require_gguf_file(config.model_path)
    if not llama_cpp_installed():
        raise ModelLoadError(
            "GGUF models need the llama.cpp runtime, which is not installed: run "
            f"{GGUF_INSTALL_HINT} in Berth's folder"
        )
    from berth.runtime.llamacpp import load_llamacpp_model

    return load_llamacpp_model(
        path, config.model_name, config.max_completion_tokens, config.context_length
    )


def _load_transformers_generation(config: RuntimeConfig) -> LoadedModel:
    folder = require_model_folder(config.model_path, ("config.json",))
    require_model_folder(folder, _TOKENIZER_FILES)
    try:
        if config.runtime == Runtime.TRANSFORMERS:
            choice = choose_transformers_checkpoint_runtime(config.runtime, False, False)
        else:
            choice = choose_transformers_checkpoint_runtime(
                config.runtime, module_installed("vllm"), cuda_available()
            )
    except RuntimeUnavailableError as error:
        raise ModelLoadError(str(error)) from error

    if choice.runtime is Runtime.VLLM:
        from berth.runtime.vllm import load_vllm_model

        return load_vllm_model(
            folder, config.model_name, config.max_completion_tokens, config.context_length
        )
    from berth.runtime.generation import load_generation_model

    batch_size = config.max_batch_size or DEFAULT_GENERATION_MAX_BATCH_SIZE
    loaded = load_generation_model(
        folder,
        config.model_name,
        batch_size,
        config.max_completion_tokens,
        config.context_length,
    )
    return replace(loaded, runtime=Runtime.TRANSFORMERS, runtime_note=choice.note)


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
