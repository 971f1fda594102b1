"""Runtime names, the choice between vLLM and transformers, and the install hints of extras.

The server process imports this module to check a deployment before any instance starts,
so it imports only the standard library at module level.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from enum import StrEnum

# Commands that install an optional runtime, run in Berth's folder. The name `berth` on
# PyPI belongs to another project, so `pip install 'berth[gguf]'` would fetch that one.
GGUF_INSTALL_HINT = "scripts/install.sh gguf"
VLLM_INSTALL_HINT = "scripts/install.sh vllm"


class Runtime(StrEnum):
    """A library that runs models, as instances report it on /ready."""

    TRANSFORMERS = "transformers"
    VLLM = "vllm"
    LLAMA_CPP = "llama.cpp"
    SENTENCE_TRANSFORMERS = "sentence-transformers"
    ECHO = "echo"


# Value of the runtime setting that lets the instance choose.
AUTO = "auto"


class RequestedRuntime(StrEnum):
    """A value of the runtime setting of a Text Generation endpoint or instance."""

    AUTO = AUTO
    TRANSFORMERS = Runtime.TRANSFORMERS.value
    VLLM = Runtime.VLLM.value
    LLAMA_CPP = Runtime.LLAMA_CPP.value


# Values that the runtime setting of a Text Generation instance accepts.
REQUESTABLE_RUNTIMES = tuple(item.value for item in RequestedRuntime)
# The requested runtimes that can serve each kind of checkpoint file.
GGUF_RUNTIMES = (RequestedRuntime.AUTO, RequestedRuntime.LLAMA_CPP)
TRANSFORMERS_CHECKPOINT_RUNTIMES = (
    RequestedRuntime.AUTO,
    RequestedRuntime.TRANSFORMERS,
    RequestedRuntime.VLLM,
)


class RuntimeUnavailableError(Exception):
    """The requested runtime cannot run here. The message states why and what to do."""


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: Runtime
    # Why a faster runtime was not used, or "".
    note: str = ""


def module_installed(name: str) -> bool:
    """Return whether `name` can be imported, without importing it."""
    return importlib.util.find_spec(name) is not None


def llama_cpp_installed() -> bool:
    return module_installed("llama_cpp")


def cuda_available() -> bool:
    """Return whether torch reports a usable CUDA GPU. Imports torch, which takes seconds."""
    import torch

    return bool(torch.cuda.is_available())


def vllm_unusable_reason(vllm_installed: bool, cuda_present: bool) -> str | None:
    """Return why vLLM cannot run here, or None when it can."""
    if not cuda_present:
        return "no CUDA GPU found"
    if not vllm_installed:
        return f"the vllm package is not installed ({VLLM_INSTALL_HINT})"
    return None


def choose_transformers_checkpoint_runtime(
    requested: str, vllm_installed: bool, cuda_present: bool
) -> RuntimeChoice:
    """Choose the runtime of a Text Generation model stored as a transformers folder.

    `requested` is "auto" (vLLM when it can run, else transformers), "transformers" or
    "vllm". Raises RuntimeUnavailableError when vLLM is requested but cannot run.
    """
    if requested == Runtime.TRANSFORMERS:
        return RuntimeChoice(
            Runtime.TRANSFORMERS, "vLLM not used: the transformers runtime was requested"
        )
    reason = vllm_unusable_reason(vllm_installed, cuda_present)
    if requested == Runtime.VLLM:
        if reason is not None:
            raise RuntimeUnavailableError(f"the vllm runtime was requested, but {reason}")
        return RuntimeChoice(Runtime.VLLM)
    if requested != AUTO:
        raise RuntimeUnavailableError(
            f"runtime '{requested}' cannot serve a transformers checkpoint; "
            f"use {AUTO}, {Runtime.TRANSFORMERS} or {Runtime.VLLM}"
        )
    if reason is None:
        return RuntimeChoice(Runtime.VLLM)
    return RuntimeChoice(Runtime.TRANSFORMERS, f"vLLM not used: {reason}")
