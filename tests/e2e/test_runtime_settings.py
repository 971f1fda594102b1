"""Runtime settings through the API: validation, the instances' command line, rolling."""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import select, update

from berth.client import ApiError, Client
from berth.db.models import Checkpoint, Endpoint, Model
from berth.runtime.echo import hash_repeatedly, hash_vector
from berth.runtime.selection import llama_cpp_installed
from tests.e2e.conftest import LIVE_TIMEOUT_S, wait_live
from tests.support import (
    ADMIN_KEY,
    BerthServer,
    pid_alive,
    server_database,
    set_endpoint_settings,
    wait_until,
)

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def command_line(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().decode().split("\0")[:-1]


def option_value(arguments: list[str], option: str) -> str | None:
    """Return the value after `option` in a command line, or None when it is absent."""
    if option not in arguments:
        return None
    return arguments[arguments.index(option) + 1]


def endpoint_count(client: Client) -> int:
    return int(client.list_endpoints(limit=1)["total"])


def ready_generation(client: Client, endpoint_id: str, generation: int) -> dict[str, Any] | None:
    """Return the endpoint once it is Live with only ready instances of `generation`."""
    info = client.get_endpoint(endpoint_id)
    rows = info["instance_list"]
    if info["state"] != "Live" or len(rows) != info["instances"]:
        return None
    if any(row["state"] != "Ready" or row["generation"] != generation for row in rows):
        return None
    return info


@pytest.fixture(scope="module")
def api(server: BerthServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=60,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def embedding_endpoint(client: Client) -> Iterator[dict[str, Any]]:
    """A Live Text Embedding endpoint created with max_batch_size 4."""
    created = client.create_endpoint("default", unique("batch"), EMBEDDING_MODEL, max_batch_size=4)
    try:
        yield wait_live(client, created["id"])
    finally:
        client.delete_endpoint(created["id"])


@pytest.fixture(scope="module")
def echo_endpoint(client: Client) -> Iterator[dict[str, Any]]:
    created = client.create_endpoint("default", unique("echo-settings"), "echo")
    try:
        yield created
    finally:
        client.delete_endpoint(created["id"])


@pytest.fixture(scope="module")
def gguf_model(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Import the tiny GGUF model and return its name."""
    pytest.importorskip("gguf", reason="the gguf package, which writes the test model, is missing")
    if not llama_cpp_installed():
        pytest.skip("llama-cpp-python is not installed; scripts/install.sh gguf")
    from tests.gguf_model import write_tiny_llama_gguf

    path = write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-settings.gguf")
    name = unique("tiny-gguf")
    response = api.post("/models/import", json={"path": str(path), "name": name})
    assert response.status_code == 201, response.text
    return name


# Settings that reach the instances.


def test_batch_size_reaches_instance(embedding_endpoint: dict[str, Any]) -> None:
    (instance,) = embedding_endpoint["instance_list"]
    arguments = command_line(instance["pid"])

    assert embedding_endpoint["runtime_settings"] == {
        "max_batch_size": 4,
        "max_batch_wait_ms": 0.0,
        "runtime": None,
        "max_completion_tokens": None,
        "context_length": None,
    }
    assert "berth.runtime" in arguments
    assert option_value(arguments, "--max-batch-size") == "4"
    # A setting that was never set is left to the runtime's own default.
    assert option_value(arguments, "--max-batch-wait-ms") is None
    assert option_value(arguments, "--max-completion-tokens") is None


def test_embeddings_served_with_small_batches(
    client: Client, embedding_endpoint: dict[str, Any]
) -> None:
    keys = client.list_keys(embedding_endpoint["id"])
    key = next(row["key"] for row in keys if row["is_first"])
    # More texts than fit in one batch, so the instance encodes them in several batches.
    texts = [f"text number {index}" for index in range(10)]

    response = httpx.post(
        f"{embedding_endpoint['openai_base_url']}/embeddings",
        json={"model": EMBEDDING_MODEL, "input": texts},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )

    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == len(texts)


def test_changed_setting_rolls_instances(
    client: Client, embedding_endpoint: dict[str, Any]
) -> None:
    endpoint_id = embedding_endpoint["id"]
    before = client.get_endpoint(endpoint_id)
    (old_instance,) = before["instance_list"]
    new_wait = before["runtime_settings"]["max_batch_wait_ms"] + 2.5

    updated = client.update_endpoint(endpoint_id, max_batch_wait_ms=new_wait)

    assert updated["generation"] == before["generation"] + 1
    assert updated["version"] == before["version"] + 1
    assert updated["runtime_settings"]["max_batch_wait_ms"] == new_wait
    assert updated["runtime_settings"]["max_batch_size"] == 4
    rolled = wait_until(
        lambda: ready_generation(client, endpoint_id, updated["generation"]),
        LIVE_TIMEOUT_S,
        "instances of the new generation to be ready",
    )
    (new_instance,) = rolled["instance_list"]
    arguments = command_line(new_instance["pid"])
    assert new_instance["id"] != old_instance["id"]
    assert option_value(arguments, "--max-batch-wait-ms") == str(new_wait)
    assert option_value(arguments, "--max-batch-size") == "4"
    wait_until(lambda: not pid_alive(old_instance["pid"]), 30, "the old instance to exit")


def test_same_setting_restarts_nothing(client: Client, embedding_endpoint: dict[str, Any]) -> None:
    endpoint_id = embedding_endpoint["id"]
    before = wait_until(
        lambda: ready_generation(
            client, endpoint_id, client.get_endpoint(endpoint_id)["generation"]
        ),
        LIVE_TIMEOUT_S,
        "the endpoint to settle",
    )
    settings = before["runtime_settings"]

    updated = client.update_endpoint(
        endpoint_id,
        max_batch_size=settings["max_batch_size"],
        max_batch_wait_ms=settings["max_batch_wait_ms"],
    )
    after = client.get_endpoint(endpoint_id)

    assert updated["generation"] == before["generation"]
    assert updated["version"] == before["version"]
    assert after["observed_generation"] == before["generation"]
    assert [row["id"] for row in after["instance_list"]] == [
        row["id"] for row in before["instance_list"]
    ]
    assert all(pid_alive(row["pid"]) for row in after["instance_list"])


def test_llama_cpp_settings_reach_instance(client: Client, gguf_model: str) -> None:
    created = client.create_endpoint(
        "default",
        unique("gguf"),
        gguf_model,
        runtime="llama.cpp",
        max_completion_tokens=100,
        context_length=128,
    )
    url = f"{created['openai_base_url']}/completions"
    headers = {"Authorization": f"Bearer {created['first_key']}"}
    prompt = {"prompt": "once upon a time", "temperature": 0}
    try:
        live = wait_live(client, created["id"])
        without_max_tokens = httpx.post(url, json=prompt, headers=headers, timeout=60)
        above_limit = httpx.post(
            url, json={**prompt, "max_tokens": 101}, headers=headers, timeout=60
        )
        # The prompt is 17 tokens long, so 112 more do not fit in the window of 128.
        beyond_window = httpx.post(
            url, json={**prompt, "max_tokens": 112}, headers=headers, timeout=60
        )
    finally:
        client.delete_endpoint(created["id"])

    (instance,) = live["instance_list"]
    assert created["runtime_settings"] == {
        "max_batch_size": None,
        "max_batch_wait_ms": None,
        "runtime": "llama.cpp",
        "max_completion_tokens": 100,
        "context_length": 128,
    }
    assert instance["runtime"] == "llama.cpp"
    arguments = command_line(instance["pid"])
    assert option_value(arguments, "--runtime") == "llama.cpp"
    assert option_value(arguments, "--max-completion-tokens") == "100"
    assert option_value(arguments, "--context-length") == "128"
    # Greedy replies of the test model never end with EOS, and its context of 256 tokens
    # has room for more, so the endpoint's limit ends the reply.
    assert without_max_tokens.status_code == 200, without_max_tokens.text
    assert without_max_tokens.json()["usage"]["completion_tokens"] == 100
    assert above_limit.status_code == 400, above_limit.text
    error = above_limit.json()["error"]
    assert error["code"] == "invalid_value"
    assert "this endpoint generates at most 100 tokens per completion" in error["message"]
    assert beyond_window.status_code == 400, beyond_window.text
    error = beyond_window.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "context length of 128 tokens" in error["message"]
    assert "Set max_tokens to at most 111" in error["message"]


def test_context_length_above_trained_is_422(
    api: httpx.Client, client: Client, gguf_model: str
) -> None:
    before = endpoint_count(client)

    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", unique("gguf-long"), gguf_model, context_length=257)

    model = api.get(f"/models/{gguf_model}").json()
    assert model["checkpoints"][0]["trained_context_length"] == 256
    assert error.value.status == 422
    assert error.value.field == "runtime_settings.context_length"
    assert error.value.message == (
        "runtime_settings.context_length 257 exceeds the trained context length of "
        f"checkpoint '{gguf_model}:main' (256 tokens); set context_length to at most 256, "
        "or leave it unset to use the model's own"
    )
    assert endpoint_count(client) == before


def forget_trained_context_length(server: BerthServer, model_name: str) -> None:
    """Clear the recorded trained context length, as for a checkpoint imported before
    Berth recorded it."""
    database = server_database(server)
    try:
        with database.session() as session:
            model_ids = select(Model.id).where(Model.name == model_name)
            session.execute(
                update(Checkpoint)
                .where(Checkpoint.model_id.in_(model_ids))
                .values(trained_context_length=None)
            )
    finally:
        database.dispose()


def test_context_length_above_trained_fails_endpoint(
    api: httpx.Client, client: Client, server: BerthServer, tmp_path: Path
) -> None:
    pytest.importorskip("gguf", reason="the gguf package, which writes the test model, is missing")
    if not llama_cpp_installed():
        pytest.skip("llama-cpp-python is not installed; scripts/install.sh gguf")
    from tests.gguf_model import write_tiny_llama_gguf

    # A model of its own, because the test clears its trained context length.
    gguf_model = unique("tiny-gguf-unknown")
    path = write_tiny_llama_gguf(tmp_path / "tiny-unknown.gguf")
    response = api.post("/models/import", json={"path": str(path), "name": gguf_model})
    assert response.status_code == 201, response.text
    # With the length unknown, the API accepts the value and the instance's load rejects it.
    forget_trained_context_length(server, gguf_model)
    created = client.create_endpoint("default", unique("gguf-long"), gguf_model, context_length=512)

    def failed_endpoint() -> dict[str, Any] | None:
        info = client.get_endpoint(created["id"])
        return info if info["state"] == "Failed" else None

    try:
        failed = wait_until(
            failed_endpoint,
            LIVE_TIMEOUT_S,
            "the endpoint whose context_length exceeds the trained length to fail",
        )
    finally:
        client.delete_endpoint(created["id"])

    assert (
        "context_length 512 exceeds the trained context length of model "
        f"'{gguf_model}' (256 tokens). Set context_length to at most 256"
    ) in failed["state_reason"]


def test_echo_shows_no_settings(echo_endpoint: dict[str, Any]) -> None:
    assert echo_endpoint["runtime_settings"] == {
        "max_batch_size": None,
        "max_batch_wait_ms": None,
        "runtime": None,
        "max_completion_tokens": None,
        "context_length": None,
    }


# Bad values: 422 with the field named, and no endpoint created or changed.


@pytest.mark.parametrize(
    ("settings", "field", "fragment"),
    [
        ({"max_batch_size": 0}, "max_batch_size", "greater than or equal to 1"),
        ({"max_batch_size": 1025}, "max_batch_size", "less than or equal to 1024"),
        ({"max_batch_size": "4"}, "max_batch_size", "valid integer"),
        ({"max_batch_size": 2.5}, "max_batch_size", "valid integer"),
        ({"max_batch_wait_ms": -1}, "max_batch_wait_ms", "greater than or equal to 0"),
        ({"max_batch_wait_ms": 1000.5}, "max_batch_wait_ms", "less than or equal to 1000"),
        ({"max_batch_wait_ms": True}, "max_batch_wait_ms", "valid number"),
        ({"runtime": "tgi"}, "runtime", "'auto', 'transformers', 'vllm' or 'llama.cpp'"),
        (
            {"max_completion_tokens": 0},
            "max_completion_tokens",
            "max_completion_tokens 0 is out of range: use 1 to 1048576 tokens",
        ),
        (
            {"max_completion_tokens": 1048577},
            "max_completion_tokens",
            "max_completion_tokens 1048577 is out of range: use 1 to 1048576 tokens",
        ),
        ({"max_completion_tokens": "4096"}, "max_completion_tokens", "valid integer"),
        (
            {"context_length": 15},
            "context_length",
            "context_length 15 is out of range: use 16 to 1048576 tokens",
        ),
        (
            {"context_length": 1048577},
            "context_length",
            "context_length 1048577 is out of range: use 16 to 1048576 tokens",
        ),
        ({"context_length": 2.5}, "context_length", "valid integer"),
        ({"batch_size": 4}, "batch_size", "is not a field of this request; leave it out"),
        # Echo's test aids are runtime options, but not settings that the API accepts.
        ({"echo_delay_ms": 5}, "echo_delay_ms", "is not a field of this request; leave it out"),
        (
            {"echo_cpu_rounds": 100},
            "echo_cpu_rounds",
            "is not a field of this request; leave it out",
        ),
    ],
)
def test_malformed_setting_is_422(
    api: httpx.Client, client: Client, settings: dict[str, Any], field: str, fragment: str
) -> None:
    before = endpoint_count(client)
    body = {"name": unique("bad"), "model": EMBEDDING_MODEL, "runtime_settings": settings}

    response = api.post("/endpoints", json=body)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["field"] == f"runtime_settings.{field}"
    assert fragment in error["message"]
    assert endpoint_count(client) == before


@pytest.mark.parametrize(
    ("model", "settings", "fragment"),
    [
        (
            "echo",
            {"max_batch_size": 4},
            "applies only to Text Embedding and Text Generation endpoints",
        ),
        ("echo", {"max_batch_wait_ms": 5}, "applies only to Text Embedding endpoints"),
        (
            "demo-tiny-llama",
            {"max_batch_wait_ms": 4},
            "applies only to Text Embedding endpoints",
        ),
        (EMBEDDING_MODEL, {"runtime": "auto"}, "applies only to Text Generation endpoints"),
        ("echo", {"runtime": "transformers"}, "applies only to Text Generation endpoints"),
        ("demo-tiny-llama", {"runtime": "llama.cpp"}, "its checkpoint is not a GGUF file"),
        (
            EMBEDDING_MODEL,
            {"max_completion_tokens": 64},
            "applies only to Text Generation endpoints",
        ),
        ("echo", {"context_length": 512}, "applies only to Text Generation endpoints"),
    ],
)
def test_setting_that_does_not_fit_is_422(
    client: Client, model: str, settings: dict[str, Any], fragment: str
) -> None:
    before = endpoint_count(client)

    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", unique("misfit"), model, **settings)

    (name,) = settings
    assert error.value.status == 422
    assert error.value.field == f"runtime_settings.{name}"
    assert fragment in error.value.message
    assert endpoint_count(client) == before


@pytest.mark.parametrize("runtime", ["transformers", "vllm"])
def test_gguf_with_other_runtime_is_422(client: Client, gguf_model: str, runtime: str) -> None:
    with pytest.raises(ApiError) as error:
        client.create_endpoint("default", unique("gguf-misfit"), gguf_model, runtime=runtime)

    assert error.value.status == 422
    assert error.value.field == "runtime_settings.runtime"
    # Without the vllm package, the check for it comes first; both name the fix.
    assert "use 'auto'" in error.value.message


def test_update_with_misfit_changes_nothing(client: Client, echo_endpoint: dict[str, Any]) -> None:
    before = client.get_endpoint(echo_endpoint["id"])

    with pytest.raises(ApiError) as error:
        client.update_endpoint(echo_endpoint["id"], description="changed", max_batch_size=8)

    after = client.get_endpoint(echo_endpoint["id"])
    assert error.value.status == 422
    assert error.value.field == "runtime_settings.max_batch_size"
    assert after["version"] == before["version"]
    assert after["description"] == before["description"]
    assert after["generation"] == before["generation"]


def stopped_embedding_endpoint(client: Client, **settings: Any) -> dict[str, Any]:
    """Create a Text Embedding endpoint with `settings` and stop it, so that a change of its
    settings replaces no running instance."""
    created = client.create_endpoint("default", unique("reset"), EMBEDDING_MODEL, **settings)
    client.stop_endpoint(created["id"])
    return client.get_endpoint(created["id"])


def stored_settings(server: BerthServer, endpoint_id: str) -> dict[str, Any]:
    database = server_database(server)
    try:
        with database.session() as session:
            return dict(session.get(Endpoint, endpoint_id).settings or {})
    finally:
        database.dispose()


def test_null_resets_setting_to_default(
    api: httpx.Client, client: Client, server: BerthServer
) -> None:
    before = stopped_embedding_endpoint(client, max_batch_size=4, max_batch_wait_ms=2.5)

    response = api.patch(
        f"/endpoints/{before['id']}", json={"runtime_settings": {"max_batch_size": None}}
    )

    assert response.status_code == 200, response.text
    after = response.json()
    assert after["runtime_settings"] == {
        "max_batch_size": 32,
        "max_batch_wait_ms": 2.5,
        "runtime": None,
        "max_completion_tokens": None,
        "context_length": None,
    }
    assert after["generation"] == before["generation"] + 1
    assert after["version"] == before["version"] + 1
    assert stored_settings(server, before["id"]) == {"max_batch_wait_ms": 2.5}


def test_left_out_setting_is_kept(api: httpx.Client, client: Client, server: BerthServer) -> None:
    before = stopped_embedding_endpoint(client, max_batch_size=4)

    response = api.patch(
        f"/endpoints/{before['id']}", json={"runtime_settings": {"max_batch_wait_ms": 1}}
    )

    assert response.status_code == 200, response.text
    assert response.json()["runtime_settings"]["max_batch_size"] == 4
    assert stored_settings(server, before["id"]) == {"max_batch_size": 4, "max_batch_wait_ms": 1.0}


def test_reset_of_unset_setting_changes_nothing(api: httpx.Client, client: Client) -> None:
    before = stopped_embedding_endpoint(client)

    response = api.patch(
        f"/endpoints/{before['id']}",
        json={"runtime_settings": {"max_batch_size": None, "runtime": None}},
    )

    assert response.status_code == 200, response.text
    assert response.json()["version"] == before["version"]
    assert response.json()["generation"] == before["generation"]


def test_reset_of_default_value_keeps_instances(
    api: httpx.Client, client: Client, server: BerthServer
) -> None:
    before = stopped_embedding_endpoint(client, max_batch_size=32)

    response = api.patch(
        f"/endpoints/{before['id']}", json={"runtime_settings": {"max_batch_size": None}}
    )

    assert response.status_code == 200, response.text
    # The effective value stays 32, so no instance is replaced, but the endpoint follows
    # the default from now on.
    assert response.json()["generation"] == before["generation"]
    assert response.json()["version"] == before["version"] + 1
    assert stored_settings(server, before["id"]) == {}


def test_sdk_resets_setting(client: Client) -> None:
    before = stopped_embedding_endpoint(client, max_batch_wait_ms=2.5)

    after = client.update_endpoint(before["id"], reset_settings=["max_batch_wait_ms"])

    assert after["runtime_settings"]["max_batch_wait_ms"] == 0.0


@pytest.mark.parametrize(("name", "value"), [("echo_delay_ms", 5), ("echo_cpu_rounds", 100)])
def test_echo_test_aid_update_is_422(
    api: httpx.Client, client: Client, echo_endpoint: dict[str, Any], name: str, value: int
) -> None:
    before = client.get_endpoint(echo_endpoint["id"])

    response = api.patch(
        f"/endpoints/{echo_endpoint['id']}", json={"runtime_settings": {name: value}}
    )

    after = client.get_endpoint(echo_endpoint["id"])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == f"runtime_settings.{name}"
    assert "is not a field of this request; leave it out" in error["message"]
    assert after["version"] == before["version"]
    assert after["generation"] == before["generation"]


def test_stored_echo_cpu_rounds_reach_instance(client: Client, server: BerthServer) -> None:
    """The API rejects echo_cpu_rounds, so the test stores it in the database, as the
    instances benchmark does, and restarts the endpoint."""
    rounds = 200_000
    texts = ["a small boat", "drifts across", "the quiet harbor"]
    created = client.create_endpoint("default", unique("echo-cpu"), "echo")
    try:
        wait_live(client, created["id"])
        set_endpoint_settings(server, created["id"], echo_cpu_rounds=rounds)
        generation = client.restart_endpoint(created["id"])["generation"]
        endpoint = wait_until(
            lambda: ready_generation(client, created["id"], generation),
            LIVE_TIMEOUT_S,
            "the echo endpoint to run an instance with --echo-cpu-rounds",
        )
        (instance,) = endpoint["instance_list"]
        process = psutil.Process(instance["pid"])
        # The rounds' CPU time in this process, to compare the instance's with.
        started = time.thread_time()
        hash_repeatedly(texts[0], rounds)
        expected_cpu_s = (time.thread_time() - started) * len(texts)

        cpu_before = sum(process.cpu_times()[:2])
        response = httpx.post(
            f"{endpoint['openai_base_url']}/embeddings",
            json={"model": "echo", "input": texts},
            headers={"Authorization": f"Bearer {created['first_key']}"},
            timeout=60,
        )
        cpu_used_s = sum(process.cpu_times()[:2]) - cpu_before

        assert option_value(command_line(instance["pid"]), "--echo-cpu-rounds") == str(rounds)
        assert endpoint["runtime_settings"] == {
            "max_batch_size": None,
            "max_batch_wait_ms": None,
            "runtime": None,
            "max_completion_tokens": None,
            "context_length": None,
        }
        assert response.status_code == 200, response.text
        vectors = [item["embedding"] for item in response.json()["data"]]
        assert vectors == [hash_vector(text) for text in texts]
        # Half the expected time leaves room for a faster core in the instance.
        assert cpu_used_s >= expected_cpu_s / 2
    finally:
        client.delete_endpoint(created["id"])


def test_openapi_documents_defaults(api: httpx.Client) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    settings = schemas["RuntimeSettingsIn"]["properties"]

    assert "default 32" in settings["max_batch_size"]["description"]
    assert "default 0" in settings["max_batch_wait_ms"]["description"]
    assert "default auto" in settings["runtime"]["description"]
    assert settings["max_batch_size"]["anyOf"][0]["maximum"] == 1024
    assert settings["max_batch_wait_ms"]["anyOf"][0]["maximum"] == 1000
    assert settings["context_length"]["minimum"] == 16
    assert settings["context_length"]["maximum"] == 1048576
