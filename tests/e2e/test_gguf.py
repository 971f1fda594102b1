"""A GGUF model imported into the hub, deployed, and called through the gateway.

The deployment tests are skipped when llama-cpp-python is not installed
(`scripts/install.sh gguf`); the rejection test runs only then.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from berth.cli.endpoint_views import runtime_text
from berth.client import Client
from berth.runtime.selection import (
    choose_transformers_checkpoint_runtime,
    cuda_available,
    llama_cpp_installed,
    module_installed,
)
from tests.e2e.conftest import wait_live
from tests.support import ADMIN_KEY, BerthServer

gguf = pytest.importorskip(
    "gguf", reason="the gguf package, which writes the test model, is missing"
)

from tests.gguf_model import write_tiny_llama_gguf  # noqa: E402

LLAMA_CPP_MISSING = "llama-cpp-python is not installed; scripts/install.sh gguf"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def api(server: BerthServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=120,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def gguf_model(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Import the tiny GGUF model, as `berth model import` does, and return its name."""
    path = write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-chat.gguf")
    name = unique("tiny-gguf")
    response = api.post("/models/import", json={"path": str(path), "name": name})
    assert response.status_code == 201, response.text
    return name


def test_gguf_import_detects_format(api: httpx.Client, gguf_model: str) -> None:
    model = api.get(f"/models/{gguf_model}").json()

    assert model["ml_app"] == "text-generation"
    assert model["architecture"] == "llama"
    (checkpoint,) = model["checkpoints"]
    assert checkpoint["format"] == "gguf"


def test_gguf_endpoint_chats_through_gateway(
    api: httpx.Client, server: BerthServer, gguf_model: str
) -> None:
    if not llama_cpp_installed():
        pytest.skip(LLAMA_CPP_MISSING)
    created = api.post("/endpoints", json={"name": unique("gguf-chat"), "model": gguf_model})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    try:
        with Client(server=server.url, api_key=ADMIN_KEY) as client:
            live = wait_live(client, endpoint["id"])
        openai = OpenAI(
            base_url=live["openai_base_url"], api_key=endpoint["first_key"], max_retries=0
        )
        messages = [{"role": "user", "content": "hello world"}]

        reply = openai.chat.completions.create(
            model=gguf_model, messages=messages, max_tokens=6, temperature=0
        )
        chunks = list(
            openai.chat.completions.create(
                model=gguf_model, messages=messages, max_tokens=6, temperature=0, stream=True
            )
        )
    finally:
        api.delete(f"/endpoints/{endpoint['id']}")

    (instance,) = live["instance_list"]
    assert instance["runtime"] == "llama.cpp"
    assert instance["runtime_note"] == ""
    assert runtime_text(live) == "llama.cpp"
    assert reply.model == gguf_model
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 6
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == reply.choices[0].message.content


def test_gguf_endpoint_rejected_without_llama_cpp(api: httpx.Client, gguf_model: str) -> None:
    if llama_cpp_installed():
        pytest.skip("llama-cpp-python is installed; test_runtime_selection covers its absence")

    response = api.post("/endpoints", json={"name": unique("gguf-chat"), "model": gguf_model})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "model"
    assert "scripts/install.sh gguf" in error["message"]


def test_transformers_endpoint_reports_runtime_note(
    api: httpx.Client, server: BerthServer, tmp_path: Path
) -> None:
    """Without a CUDA GPU and vllm, the transformers runtime serves and reports why not vLLM."""
    from berth.hub.demo import build_demo_generation_model

    folder = build_demo_generation_model(tmp_path / "tiny-lm")
    name = unique("tiny-lm")
    imported = api.post("/models/import", json={"path": str(folder), "name": name})
    assert imported.status_code == 201, imported.text
    created = api.post("/endpoints", json={"name": unique("lm"), "model": name})
    assert created.status_code == 201, created.text
    try:
        with Client(server=server.url, api_key=ADMIN_KEY) as client:
            live = wait_live(client, created.json()["id"])
    finally:
        api.delete(f"/endpoints/{created.json()['id']}")

    expected = choose_transformers_checkpoint_runtime(
        "auto", module_installed("vllm"), cuda_available()
    )
    (instance,) = live["instance_list"]
    assert instance["runtime"] == expected.runtime
    assert instance["runtime_note"] == expected.note
