"""The runtime settings lines of `berth endpoint info`."""

import pytest

from berth.cli.endpoint_views import list_state_text, runtime_settings_fields


@pytest.mark.parametrize(
    ("ml_app", "size", "expected"),
    [
        ("text-generation", 1, "1 request"),
        ("text-generation", 8, "8 requests"),
        ("text-embedding", 1, "1 text"),
        ("text-embedding", 32, "32 texts"),
    ],
)
def test_batch_size_unit_agrees_with_count(ml_app: str, size: int, expected: str) -> None:
    endpoint = {"ml_app": ml_app, "runtime_settings": {"max_batch_size": size}}

    assert ("Max batch size", expected) in runtime_settings_fields(endpoint)


def test_completion_limit_is_shown_in_tokens() -> None:
    endpoint = {"ml_app": "text-generation", "runtime_settings": {"max_completion_tokens": 8192}}

    assert ("Max completion", "8192 tokens") in runtime_settings_fields(endpoint)


def test_context_length_is_shown_in_tokens() -> None:
    endpoint = {"ml_app": "text-generation", "runtime_settings": {"context_length": 16384}}

    assert ("Context length", "16384 tokens") in runtime_settings_fields(endpoint)


def test_unset_context_length_is_model_default() -> None:
    generation = {"ml_app": "text-generation", "runtime_settings": {"context_length": None}}
    embedding = {"ml_app": "text-embedding", "runtime_settings": {"context_length": None}}

    assert ("Context length", "model default") in runtime_settings_fields(generation)
    assert [label for label, _ in runtime_settings_fields(embedding)] == []


def test_list_state_marks_disabled_tenant() -> None:
    assert list_state_text({"state": "Live", "tenant_disabled": True}) == ("Live (tenant disabled)")
    assert list_state_text({"state": "Live", "tenant_disabled": False}) == "Live"
    # A server older than the CLI sends no `tenant_disabled`.
    assert list_state_text({"state": "Live"}) == "Live"
