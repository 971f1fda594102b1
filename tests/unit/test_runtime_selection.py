"""The choice between vLLM and transformers, and the check that GGUF deployments can run."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from berth.auth import authenticate
from berth.db.engine import Database
from berth.errors import Conflict, InvalidInput
from berth.runtime.config import RuntimeConfig
from berth.runtime.loading import ModelLoadError, load_model
from berth.runtime.selection import (
    Runtime,
    RuntimeUnavailableError,
    choose_transformers_checkpoint_runtime,
    llama_cpp_installed,
)
from berth.service import endpoints
from berth.states import CheckpointFormat, MLApp
from tests.unit.conftest import UNIT_ADMIN_KEY as ADMIN_KEY

# Choosing the runtime of a transformers checkpoint.


def test_auto_without_gpu_uses_transformers() -> None:
    choice = choose_transformers_checkpoint_runtime("auto", vllm_installed=True, cuda_present=False)

    assert choice.runtime is Runtime.TRANSFORMERS
    assert choice.note == "vLLM not used: no CUDA GPU found"


def test_auto_without_vllm_names_the_extra() -> None:
    choice = choose_transformers_checkpoint_runtime("auto", vllm_installed=False, cuda_present=True)

    assert choice.runtime is Runtime.TRANSFORMERS
    assert choice.note == (
        "vLLM not used: the vllm package is not installed (scripts/install.sh vllm)"
    )


def test_auto_without_gpu_or_vllm_names_the_gpu() -> None:
    # Installing vllm would not help without a GPU, so the note names the GPU only.
    choice = choose_transformers_checkpoint_runtime(
        "auto", vllm_installed=False, cuda_present=False
    )

    assert choice.runtime is Runtime.TRANSFORMERS
    assert choice.note == "vLLM not used: no CUDA GPU found"


def test_auto_with_gpu_and_vllm_uses_vllm() -> None:
    choice = choose_transformers_checkpoint_runtime("auto", vllm_installed=True, cuda_present=True)

    assert choice.runtime is Runtime.VLLM
    assert choice.note == ""


def test_requested_transformers_skips_vllm() -> None:
    choice = choose_transformers_checkpoint_runtime(
        "transformers", vllm_installed=True, cuda_present=True
    )

    assert choice.runtime is Runtime.TRANSFORMERS
    assert choice.note == "vLLM not used: the transformers runtime was requested"


@pytest.mark.parametrize(
    ("vllm_installed", "cuda_present", "reason"),
    [
        (True, False, "no CUDA GPU found"),
        (False, True, "the vllm package is not installed (scripts/install.sh vllm)"),
    ],
)
def test_requested_vllm_that_cannot_run_raises(
    vllm_installed: bool, cuda_present: bool, reason: str
) -> None:
    with pytest.raises(RuntimeUnavailableError) as caught:
        choose_transformers_checkpoint_runtime("vllm", vllm_installed, cuda_present)

    assert str(caught.value) == f"the vllm runtime was requested, but {reason}"


def test_requested_llama_cpp_for_folder_raises() -> None:
    with pytest.raises(RuntimeUnavailableError) as caught:
        choose_transformers_checkpoint_runtime("llama.cpp", True, True)

    assert "cannot serve a transformers checkpoint" in str(caught.value)


# Creating or updating a GGUF endpoint while llama-cpp-python is missing.


def set_llama_cpp_installed(monkeypatch: pytest.MonkeyPatch, installed: bool) -> None:
    """Make importlib.util.find_spec report llama_cpp as present or missing."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> importlib.machinery.ModuleSpec | None:
        if name == "llama_cpp":
            return importlib.machinery.ModuleSpec("llama_cpp", None) if installed else None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


LIMITS = endpoints.Limits(capacity=8, max_instances_per_endpoint=4)


def create_endpoint(database: Database, name: str, model: str) -> str:
    with database.session() as session:
        principal = authenticate(session, ADMIN_KEY, None)
        endpoint, _key = endpoints.create_endpoint(
            session,
            principal,
            LIMITS,
            project_ref="default",
            name=name,
            model_ref=model,
            instances=1,
        )
        return endpoint.id


def test_gguf_create_without_llama_cpp_is_rejected(
    database: Database, gguf_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_llama_cpp_installed(monkeypatch, installed=False)
    assert not llama_cpp_installed()

    with pytest.raises(InvalidInput) as caught:
        create_endpoint(database, "gguf-chat", gguf_model)

    assert caught.value.status_code == 422
    assert caught.value.field == "model"
    assert "llama-cpp-python is not installed" in caught.value.message
    assert "`scripts/install.sh gguf`" in caught.value.message


def test_gguf_create_with_llama_cpp_is_accepted(
    database: Database, gguf_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_llama_cpp_installed(monkeypatch, installed=True)

    endpoint_id = create_endpoint(database, "gguf-chat", gguf_model)

    assert endpoint_id


def test_gguf_load_without_llama_cpp_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_path = tmp_path / "model.gguf"
    model_path.write_bytes(b"GGUF")
    config = RuntimeConfig(
        ml_app=MLApp.TEXT_GENERATION,
        model_path=model_path,
        model_name="tiny-gguf",
        instance_id="test",
        checkpoint_format=CheckpointFormat.GGUF,
    )
    set_llama_cpp_installed(monkeypatch, installed=False)

    with pytest.raises(ModelLoadError) as caught:
        load_model(config)

    assert str(caught.value) == (
        "GGUF models need the llama.cpp runtime, which is not installed: run "
        "scripts/install.sh gguf in Berth's folder"
    )


def test_gguf_update_without_llama_cpp_is_rejected(
    database: Database, gguf_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_llama_cpp_installed(monkeypatch, installed=True)
    endpoint_id = create_endpoint(database, "gguf-chat", gguf_model)
    set_llama_cpp_installed(monkeypatch, installed=False)

    with database.session() as session, pytest.raises(InvalidInput) as caught:
        principal = authenticate(session, ADMIN_KEY, None)
        endpoint = endpoints.find_endpoint(session, principal, endpoint_id)
        change = endpoints.EndpointChange(model=gguf_model)
        endpoints.update_endpoint(session, principal, LIMITS, endpoint, change)

    assert caught.value.field == "model"
    assert "scripts/install.sh gguf" in caught.value.message


def test_gguf_restart_without_llama_cpp_is_rejected(
    database: Database, gguf_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_llama_cpp_installed(monkeypatch, installed=True)
    endpoint_id = create_endpoint(database, "gguf-restart", gguf_model)
    set_llama_cpp_installed(monkeypatch, installed=False)

    with database.session() as session, pytest.raises(Conflict) as caught:
        principal = authenticate(session, ADMIN_KEY, None)
        endpoint = endpoints.find_endpoint(session, principal, endpoint_id)
        endpoints.restart_endpoint(session, principal, endpoint)

    assert caught.value.status_code == 409
    assert "llama-cpp-python is not installed" in caught.value.message
    assert "scripts/install.sh gguf" in caught.value.message
