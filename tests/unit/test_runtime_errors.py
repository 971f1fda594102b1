"""400 messages of the instance routes: JSON type names, the field and the expected type."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.testclient import TestClient

from berth.runtime.config import RuntimeConfig
from berth.runtime.errors import (
    describe_value,
    from_validation_error,
    internal_error,
    json_type_name,
)
from berth.runtime.loading import load_model
from berth.runtime.protocol import ChatCompletionRequest, CompletionRequest, SamplingParameters
from berth.runtime.server import RuntimeState, build_app
from berth.states import MLApp

# Python's names for the JSON types. None of them may reach a client's error message.
PYTHON_TYPE_NAME = re.compile(
    r"\b(NoneType|None|dict|dictionary|list|tuple|str|int|float|bool|bytes)\b"
)
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
PREDICT = "/predict"
USER_TURN = [{"role": "user", "content": "x"}]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    state = RuntimeState(RuntimeConfig(MLApp.ECHO, None, "echo-errors", "instance-1"))
    state.model = load_model(state.config)
    with TestClient(build_app(state)) as test_client:
        yield test_client


def message_without_value(message: str) -> str:
    """Drop the quoted rejected value ("Invalid value for 'x': VALUE.") from a message."""
    return re.sub(r"^(Invalid value for '[^']*'): .*?\. ", r"\1. ", message)


@pytest.mark.parametrize(
    ("path", "body", "param", "expected"),
    [
        (CHAT, {"messages": USER_TURN, "stop": 5}, "stop", "a string or an array of"),
        (CHAT, {"messages": USER_TURN, "stop": [None]}, "stop", "a string or an array of"),
        (CHAT, {"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "array"),
        (CHAT, {"messages": [None]}, "messages[0]", "an object"),
        (CHAT, {"messages": {}}, "messages", "an array"),
        (CHAT, {"messages": USER_TURN, "n": "1"}, "n", "an integer"),
        (CHAT, {"messages": USER_TURN, "max_tokens": 2.5}, "max_tokens", "an integer"),
        (CHAT, {"messages": USER_TURN, "temperature": "hot"}, "temperature", "a number"),
        (CHAT, {"messages": USER_TURN, "stream": "yes"}, "stream", "a boolean"),
        (CHAT, {"messages": USER_TURN, "stream_options": []}, "stream_options", "an object"),
        (CHAT, {"messages": USER_TURN, "model": 7}, "model", "a string"),
        (COMPLETIONS, {"prompt": None}, "prompt", "a string"),
        (COMPLETIONS, {"prompt": ["a", "b"]}, "prompt", "a string or an array of"),
        (COMPLETIONS, {"prompt": "x", "echo": "yes"}, "echo", "a boolean"),
        (EMBEDDINGS, {"input": 5}, "input", "a string or an array of strings"),
        (EMBEDDINGS, {"input": {}}, "input", "a string or an array of strings"),
        (EMBEDDINGS, {"input": ["x", None]}, "input", "a string"),
        (EMBEDDINGS, {"input": "x", "dimensions": "8"}, "dimensions", "an integer"),
        (PREDICT, {"inputs": None}, "inputs", "an array"),
        (PREDICT, {"inputs": ["x"], "parameters": []}, "parameters", "an object"),
    ],
)
def test_message_uses_json_type_names(
    client: TestClient, path: str, body: dict[str, object], param: str, expected: str
) -> None:
    response = client.post(path, json=body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert f"'{param}'" in error["message"]
    assert expected in error["message"].lower()
    assert not PYTHON_TYPE_NAME.search(message_without_value(error["message"])), error["message"]


REQUIRED_FIELDS = {"prompt": "hi", "messages": USER_TURN}


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (model, name)
        for model in (CompletionRequest, ChatCompletionRequest, SamplingParameters)
        for name, info in model.model_fields.items()
        if not info.is_required()
    ],
)
def test_null_optional_field_takes_default(model: type[BaseModel], field: str) -> None:
    required = {
        name: REQUIRED_FIELDS[name] for name in model.model_fields if name in REQUIRED_FIELDS
    }

    with_null = model.model_validate({**required, field: None})

    assert with_null == model.model_validate(required)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"null", "null"),
        (b"[1, 2]", "array"),
        (b'"text"', "string"),
        (b"3", "number"),
        (b"2.5", "number"),
        (b"true", "boolean"),
    ],
)
def test_body_of_wrong_json_type(client: TestClient, raw: bytes, kind: str) -> None:
    response = client.post(CHAT, content=raw, headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert f"not a JSON {kind}" in message
    assert "JSON object" in message


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (0, "number"),
        (0.5, "number"),
        ("", "string"),
        ([], "array"),
        ((1, 2), "array"),
        ({}, "object"),
    ],
)
def test_json_type_name(value: object, name: str) -> None:
    assert json_type_name(value) == name


def test_describe_value_beyond_64_bits() -> None:
    # orjson rejects integers above 64 bits; the fallback must still write JSON, not repr().
    assert (
        describe_value({"big": 2**70, "none": None}) == '{"big":1180591620717411303424,"none":null}'
    )


def test_describe_value_shortens_long_values() -> None:
    text = describe_value("x" * 500)

    assert len(text) == 80
    assert text.endswith("...")


class _Shapes(BaseModel):
    model_config = ConfigDict(strict=True)

    nothing: None = None
    pair: tuple[int, int] = (0, 0)
    raw: bytes = b""


@pytest.mark.parametrize(
    ("payload", "param", "expected"),
    [
        ({"nothing": 1}, "nothing", "Expected null."),
        ({"pair": "ab"}, "pair", "Expected an array."),
        ({"raw": 5}, "raw", "Expected a string."),
    ],
)
def test_rare_pydantic_types_use_json_names(
    payload: dict[str, object], param: str, expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _Shapes.model_validate(payload)

    error = from_validation_error(caught.value)

    assert error.param == param
    assert error.message.endswith(expected), error.message
    assert not PYTHON_TYPE_NAME.search(message_without_value(error.message)), error.message


def test_invalid_utf8_body_names_the_byte() -> None:
    from berth.runtime.errors import APIError
    from berth.runtime.protocol import parse_json_object

    with pytest.raises(APIError) as raised:
        parse_json_object(b'{"input": "ok \xe9"}')

    assert raised.value.message == (
        "The request body is not valid UTF-8: byte 0xe9 at position 14; send JSON encoded as UTF-8."
    )


def test_server_error_has_a_code() -> None:
    error = internal_error(RuntimeError("the model thread ended"))

    body = error.body()["error"]

    assert error.status_code == 500
    assert body["type"] == "server_error"
    assert body["code"] == "internal_error"
    assert body["message"] == "Internal server error: RuntimeError: the model thread ended"
