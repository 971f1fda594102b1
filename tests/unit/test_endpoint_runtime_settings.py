"""Runtime settings of endpoints in the service layer: checks, defaults and generations."""

import importlib.machinery
import importlib.util
from typing import Any

import pytest

from berth.auth import authenticate
from berth.db.engine import Database
from berth.db.models import Checkpoint, Endpoint, Model
from berth.errors import InvalidInput
from berth.service import endpoints
from berth.service.runtime_settings import RuntimeSettings, effective_settings, merge_settings
from berth.states import CheckpointFormat, MLApp
from tests.unit.conftest import UNIT_ADMIN_KEY as ADMIN_KEY

LIMITS = endpoints.Limits(capacity=8, max_instances_per_endpoint=4)


@pytest.fixture
def with_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    set_installed(monkeypatch, llama_cpp=True)


def set_installed(monkeypatch: pytest.MonkeyPatch, **modules: bool) -> None:
    """Make importlib.util.find_spec report each named module as present or missing."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> importlib.machinery.ModuleSpec | None:
        if name in modules:
            return importlib.machinery.ModuleSpec(name, None) if modules[name] else None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def create(database: Database, name: str, model: str, **settings: Any) -> Endpoint:
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
            runtime_settings=RuntimeSettings(**settings),
        )
        session.expunge(endpoint)
        return endpoint


def update(database: Database, name: str, model: str | None = None, **settings: Any) -> Endpoint:
    with database.session() as session:
        principal = authenticate(session, ADMIN_KEY, None)
        endpoint = endpoints.find_endpoint(session, principal, name)
        change = endpoints.EndpointChange(model=model, runtime_settings=RuntimeSettings(**settings))
        endpoints.update_endpoint(session, principal, LIMITS, endpoint, change)
        session.expunge(endpoint)
        return endpoint


def rejected(call: Any, *args: Any, **kwargs: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    assert caught.value.status_code == 422
    return caught.value


def test_defaults_fill_unset_settings() -> None:
    assert effective_settings({}, MLApp.TEXT_EMBEDDING) == {
        "max_batch_size": 32,
        "max_batch_wait_ms": 0.0,
        "runtime": None,
        "max_completion_tokens": None,
        "context_length": None,
    }
    assert effective_settings({"max_batch_size": 4}, MLApp.TEXT_EMBEDDING)["max_batch_size"] == 4
    assert effective_settings({}, MLApp.TEXT_GENERATION) == {
        "max_batch_size": 8,
        "max_batch_wait_ms": None,
        "runtime": "auto",
        "max_completion_tokens": 4096,
        "context_length": None,
    }
    assert effective_settings({"echo_delay_ms": 5}, MLApp.ECHO) == {
        "max_batch_size": None,
        "max_batch_wait_ms": None,
        "runtime": None,
        "max_completion_tokens": None,
        "context_length": None,
    }


def test_generation_batch_size_is_stored(database: Database) -> None:
    endpoint = create(database, "chat-batch", "demo-tiny-llama", max_batch_size=2)

    assert endpoint.settings == {"max_batch_size": 2}
    assert effective_settings(endpoint.settings, MLApp.TEXT_GENERATION)["max_batch_size"] == 2


def test_gguf_batch_size_is_rejected() -> None:
    # Built without a database: creating a GGUF endpoint also needs llama-cpp-python,
    # which only the gguf extra installs, and the check does not depend on it.
    model = Model(name="tiny-gguf", ml_app=MLApp.TEXT_GENERATION)
    checkpoint = Checkpoint(name="q8", format=CheckpointFormat.GGUF)

    error = rejected(merge_settings, {}, RuntimeSettings(max_batch_size=2), model, checkpoint)

    assert error.field == "runtime_settings.max_batch_size"
    assert "does not apply to model 'tiny-gguf'" in error.message
    assert "GGUF file, which llama.cpp generates one request at a time" in error.message


def test_gguf_endpoint_shows_no_batch_size() -> None:
    settings = effective_settings({}, MLApp.TEXT_GENERATION, CheckpointFormat.GGUF)

    assert settings["max_batch_size"] is None
    assert settings["runtime"] == "auto"


def test_create_stores_only_given_settings(database: Database) -> None:
    endpoint = create(database, "embed", "all-MiniLM-L6-v2", max_batch_size=4)

    assert endpoint.settings == {"max_batch_size": 4}


def test_wait_is_stored_as_float(database: Database) -> None:
    endpoint = create(database, "embed", "all-MiniLM-L6-v2", max_batch_wait_ms=5)

    assert endpoint.settings == {"max_batch_wait_ms": 5.0}
    assert isinstance(endpoint.settings["max_batch_wait_ms"], float)


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [
        ("max_batch_size", 0, "use 1 to 1024 (texts for Text Embedding"),
        ("max_batch_size", 1025, "use 1 to 1024 (texts for Text Embedding"),
        ("max_batch_size", True, "must be a whole number"),
        ("max_batch_size", 2.5, "must be a whole number"),
        ("max_batch_wait_ms", -1, "use 0 to 1000 ms"),
        ("max_batch_wait_ms", 1000.5, "use 0 to 1000 ms"),
        ("max_batch_wait_ms", float("nan"), "use 0 to 1000 ms"),
        ("max_batch_wait_ms", "5", "must be a number"),
    ],
)
def test_batch_value_out_of_range(
    database: Database, setting: str, value: Any, fragment: str
) -> None:
    error = rejected(create, database, "embed", "all-MiniLM-L6-v2", **{setting: value})

    assert error.field == f"runtime_settings.{setting}"
    assert fragment in error.message


def test_max_completion_tokens_is_stored(database: Database) -> None:
    endpoint = create(database, "chat-long", "demo-tiny-llama", max_completion_tokens=32768)

    assert endpoint.settings == {"max_completion_tokens": 32768}
    settings = effective_settings(endpoint.settings, MLApp.TEXT_GENERATION)
    assert settings["max_completion_tokens"] == 32768


def test_gguf_takes_max_completion_tokens(
    database: Database, gguf_model: str, with_llama_cpp: None
) -> None:
    endpoint = create(database, "chat-gguf", gguf_model, max_completion_tokens=100)

    assert endpoint.settings == {"max_completion_tokens": 100}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "runtime_settings.max_completion_tokens 0 is out of range: use 1 to 1048576 tokens"),
        (
            1048577,
            "runtime_settings.max_completion_tokens 1048577 is out of range: use 1 to 1048576",
        ),
        (True, "runtime_settings.max_completion_tokens must be a whole number, got true"),
        (2.5, "runtime_settings.max_completion_tokens must be a whole number, got 2.5"),
        ("4096", 'runtime_settings.max_completion_tokens must be a whole number, got "4096"'),
    ],
)
def test_max_completion_tokens_out_of_range(database: Database, value: Any, fragment: str) -> None:
    error = rejected(create, database, "chat", "demo-tiny-llama", max_completion_tokens=value)

    assert error.field == "runtime_settings.max_completion_tokens"
    assert fragment in error.message


def test_context_length_is_stored(database: Database) -> None:
    endpoint = create(database, "chat-window", "demo-tiny-llama", context_length=2048)

    assert endpoint.settings == {"context_length": 2048}
    settings = effective_settings(endpoint.settings, MLApp.TEXT_GENERATION)
    assert settings["context_length"] == 2048


def test_gguf_takes_context_length(
    database: Database, gguf_model: str, with_llama_cpp: None
) -> None:
    endpoint = create(database, "chat-gguf-window", gguf_model, context_length=128)

    assert endpoint.settings == {"context_length": 128}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (15, "runtime_settings.context_length 15 is out of range: use 16 to 1048576 tokens"),
        (0, "runtime_settings.context_length 0 is out of range: use 16 to 1048576 tokens"),
        (1048577, "runtime_settings.context_length 1048577 is out of range: use 16 to 1048576"),
        (True, "runtime_settings.context_length must be a whole number, got true"),
        (2.5, "runtime_settings.context_length must be a whole number, got 2.5"),
        ("4096", 'runtime_settings.context_length must be a whole number, got "4096"'),
    ],
)
def test_context_length_out_of_range(database: Database, value: Any, fragment: str) -> None:
    error = rejected(create, database, "chat", "demo-tiny-llama", context_length=value)

    assert error.field == "runtime_settings.context_length"
    assert fragment in error.message


@pytest.mark.parametrize("value", [16, 1048576])
def test_context_length_bounds_are_accepted(database: Database, value: int) -> None:
    endpoint = create(database, f"chat-{value}", "demo-tiny-llama", context_length=value)

    assert endpoint.settings == {"context_length": value}


def test_unknown_runtime_lists_choices(database: Database) -> None:
    error = rejected(create, database, "chat", "demo-tiny-llama", runtime="tgi")

    assert error.field == "runtime_settings.runtime"
    assert "'tgi' is not a known runtime" in error.message
    assert "use 'auto', 'transformers', 'vllm' or 'llama.cpp'" in error.message


@pytest.mark.parametrize(
    ("model", "setting", "value", "ml_app"),
    [
        ("echo", "max_batch_size", 4, "Echo"),
        ("echo", "max_batch_wait_ms", 2.0, "Echo"),
        ("demo-tiny-llama", "max_batch_wait_ms", 2.0, "Text Generation"),
        ("echo", "runtime", "auto", "Echo"),
        ("all-MiniLM-L6-v2", "runtime", "transformers", "Text Embedding"),
        ("all-MiniLM-L6-v2", "max_completion_tokens", 64, "Text Embedding"),
        ("echo", "max_completion_tokens", 64, "Echo"),
        ("all-MiniLM-L6-v2", "context_length", 512, "Text Embedding"),
        ("echo", "context_length", 512, "Echo"),
    ],
)
def test_setting_of_other_ml_app(
    database: Database, model: str, setting: str, value: Any, ml_app: str
) -> None:
    error = rejected(create, database, "wrong-app", model, **{setting: value})

    assert error.field == f"runtime_settings.{setting}"
    assert f"model '{model}' has the ML App {ml_app}" in error.message
    assert "leave it out" in error.message


def test_llama_cpp_for_transformers_checkpoint(database: Database) -> None:
    error = rejected(create, database, "chat", "demo-tiny-llama", runtime="llama.cpp")

    assert error.field == "runtime_settings.runtime"
    assert "its checkpoint is not a GGUF file" in error.message
    assert "use 'auto', 'transformers' or 'vllm'" in error.message


@pytest.mark.parametrize("runtime", ["transformers", "vllm"])
def test_gguf_rejects_other_runtimes(
    database: Database, gguf_model: str, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    # With vllm reported as installed, only the checkpoint format can reject it.
    set_installed(monkeypatch, llama_cpp=True, vllm=True)

    error = rejected(create, database, "chat", gguf_model, runtime=runtime)

    assert error.field == "runtime_settings.runtime"
    assert "its checkpoint is a GGUF file" in error.message
    assert "use 'auto' or 'llama.cpp'" in error.message


def test_gguf_with_vllm_missing_names_format(
    database: Database, gguf_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vLLM cannot serve GGUF files, so installing it would not help.
    set_installed(monkeypatch, llama_cpp=True, vllm=False)

    error = rejected(create, database, "chat", gguf_model, runtime="vllm")

    assert "its checkpoint is a GGUF file" in error.message
    assert "install" not in error.message


def test_gguf_accepts_llama_cpp(database: Database, gguf_model: str, with_llama_cpp: None) -> None:
    endpoint = create(database, "chat", gguf_model, runtime="llama.cpp")

    assert endpoint.settings == {"runtime": "llama.cpp"}


def test_vllm_missing_is_rejected(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    set_installed(monkeypatch, vllm=False)

    error = rejected(create, database, "chat", "demo-tiny-llama", runtime="vllm")

    assert error.field == "runtime_settings.runtime"
    assert "vllm package, which is not installed" in error.message
    assert "`scripts/install.sh vllm`" in error.message


def test_vllm_installed_is_accepted(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    set_installed(monkeypatch, vllm=True)

    endpoint = create(database, "chat", "demo-tiny-llama", runtime="vllm")

    assert endpoint.settings == {"runtime": "vllm"}


def test_changed_setting_raises_generation(database: Database) -> None:
    created = create(database, "embed", "all-MiniLM-L6-v2", max_batch_size=4)

    updated = update(database, "embed", max_batch_size=8)

    assert updated.generation == created.generation + 1
    assert updated.version == created.version + 1
    assert updated.settings == {"max_batch_size": 8}


def test_same_setting_changes_nothing(database: Database) -> None:
    created = create(database, "embed", "all-MiniLM-L6-v2", max_batch_size=4)

    same = update(database, "embed", max_batch_size=4)
    default = update(database, "embed", max_batch_wait_ms=0)

    assert (same.generation, same.version) == (created.generation, created.version)
    assert (default.generation, default.version) == (created.generation, created.version)
    assert default.settings == {"max_batch_size": 4}


def test_reset_completion_limit_raises_generation(database: Database) -> None:
    created = create(database, "chat", "demo-tiny-llama", max_completion_tokens=64)

    reset = update(database, "chat", reset=frozenset({"max_completion_tokens"}))

    assert reset.generation == created.generation + 1
    assert reset.settings == {}


def test_reset_context_length_raises_generation(database: Database) -> None:
    created = create(database, "chat", "demo-tiny-llama", context_length=64)

    reset = update(database, "chat", reset=frozenset({"context_length"}))
    again = update(database, "chat", reset=frozenset({"context_length"}))

    assert reset.generation == created.generation + 1
    assert reset.settings == {}
    # Resetting an unset context_length changes nothing.
    assert again.generation == reset.generation


def test_explicit_default_runtime_changes_nothing(database: Database) -> None:
    created = create(database, "chat", "demo-tiny-llama")

    updated = update(database, "chat", runtime="auto")

    assert (updated.generation, updated.version) == (created.generation, created.version)


def test_update_keeps_settings_outside_the_api(database: Database) -> None:
    create(database, "embed", "all-MiniLM-L6-v2")
    with database.session() as session:
        row = session.query(Endpoint).filter_by(name="embed").one()
        row.settings = {"echo_delay_ms": 5.0}

    updated = update(database, "embed", max_batch_wait_ms=2.5)

    assert updated.settings == {"echo_delay_ms": 5.0, "max_batch_wait_ms": 2.5}


def test_model_change_with_stale_runtime(
    database: Database, gguf_model: str, with_llama_cpp: None
) -> None:
    created = create(database, "chat", gguf_model, runtime="llama.cpp")

    error = rejected(update, database, "chat", model="demo-tiny-llama")
    fixed = update(database, "chat", model="demo-tiny-llama", runtime="auto")

    assert error.field == "runtime_settings.runtime"
    assert "runtime 'llama.cpp' cannot serve model 'demo-tiny-llama'" in error.message
    assert (
        "so also set runtime_settings.runtime to 'auto', 'transformers' or 'vllm'" in error.message
    )
    assert fixed.settings == {"runtime": "auto"}
    # The model and the runtime change together, which needs one new generation.
    assert fixed.generation == created.generation + 1


def test_model_change_to_other_ml_app_is_rejected(database: Database) -> None:
    create(database, "embed", "all-MiniLM-L6-v2", max_batch_size=4)

    error = rejected(update, database, "embed", model="demo-tiny-llama")

    assert error.field == "model"
    assert error.message.startswith(
        "model 'demo-tiny-llama' serves Text Generation, but endpoint 'embed' serves "
        "Text Embedding;"
    )
    assert "create a new endpoint for another ML App" in error.message


def test_reset_removes_only_named_setting() -> None:
    model = Model(name="mini", ml_app=MLApp.TEXT_EMBEDDING)
    stored = {"max_batch_size": 4, "max_batch_wait_ms": 2.5, "echo_delay_ms": 5}

    merged = merge_settings(
        stored, RuntimeSettings(reset=frozenset({"max_batch_size"})), model, None
    )

    assert merged == {"max_batch_wait_ms": 2.5, "echo_delay_ms": 5}


def test_reset_of_unused_setting_is_accepted() -> None:
    model = Model(name="mini", ml_app=MLApp.TEXT_EMBEDDING)

    merged = merge_settings({}, RuntimeSettings(reset=frozenset({"runtime"})), model, None)

    assert merged == {}


def test_reset_and_value_of_one_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="both set and reset"):
        RuntimeSettings(max_batch_size=4, reset=frozenset({"max_batch_size"}))
