"""OpenAI-style error bodies and the exception that carries them to the HTTP layer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
# The code of a 400 for a prompt, or a prompt plus max_tokens, that does not fit the
# model's context length. OpenAI uses the same code for this error.
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
# The code of a 400 for a chat request to a model whose tokenizer has no chat template.
# Clients such as the web UI's playground read it to fall back to /v1/completions.
NO_CHAT_TEMPLATE = "no_chat_template"
# The code of a 400 for a value that is valid JSON of the right type but out of the range
# that this server accepts, such as a max_tokens above the endpoint's max_completion_tokens.
INVALID_VALUE = "invalid_value"

# Maximum length, in characters, of a rejected value quoted in an error message.
_MAX_VALUE_REPR = 80


class APIError(Exception):
    """An error that the server sends to the client as an OpenAI error body."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)

    def to_response(self) -> Response:
        return Response(
            orjson.dumps(self.body()),
            status_code=self.status_code,
            headers=self.headers,
            media_type="application/json",
        )


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def server_error(message: str) -> APIError:
    # The gateway sends the same code for its own unexpected errors.
    return APIError(500, message, error_type=SERVER_ERROR, code="internal_error")


def internal_error(error: BaseException) -> APIError:
    """Wrap an unexpected exception in a 500 that names it but carries no traceback."""
    return server_error(f"Internal server error: {type(error).__name__}: {error}")


def describe_value(value: Any) -> str:
    """Render a rejected JSON value for an error message, cut to a readable length."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        # orjson rejects integers beyond 64 bits, which the json module writes. Anything
        # that is not JSON at all is written as a JSON string rather than as Python repr().
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except RecursionError:
            # orjson writes at most 254 levels and the json module about 990, while a
            # request body may nest up to MAX_JSON_DEPTH (512) levels.
            return f"a JSON {json_type_name(value)} nested too deeply to show"
    if len(text) > _MAX_VALUE_REPR:
        text = text[: _MAX_VALUE_REPR - 3] + "..."
    return text


def format_location(location: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location such as ('messages', 0, 'role') into 'messages[0].role'."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text


def json_type_name(value: Any) -> str:
    """Return the JSON name of a decoded value's type: null, boolean, number, string,
    array or object ("value" for anything JSON cannot hold)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return "value"


_EXPECTED_OBJECT = "expected an object"
_EXPECTED_ARRAY = "expected an array"
_EXPECTED_STRING = "expected a string"
_EXPECTED_INTEGER = "expected an integer"
_EXPECTED_NUMBER = "expected a number"
_EXPECTED_BOOLEAN = "expected a boolean (true or false)"

# Pydantic's type errors, worded with JSON type names because pydantic's own messages
# use Python's ("a valid dictionary", "a valid list", "None").
_EXPECTED_JSON_TYPE = {
    "none_required": "expected null",
    "bool_type": _EXPECTED_BOOLEAN,
    "bool_parsing": _EXPECTED_BOOLEAN,
    "int_type": _EXPECTED_INTEGER,
    "int_parsing": _EXPECTED_INTEGER,
    "int_parsing_size": _EXPECTED_INTEGER,
    "int_from_float": _EXPECTED_INTEGER,
    "float_type": _EXPECTED_NUMBER,
    "float_parsing": _EXPECTED_NUMBER,
    "decimal_type": _EXPECTED_NUMBER,
    "finite_number": "expected a finite number",
    "string_type": _EXPECTED_STRING,
    "string_unicode": _EXPECTED_STRING,
    "bytes_type": _EXPECTED_STRING,
    "list_type": _EXPECTED_ARRAY,
    "tuple_type": _EXPECTED_ARRAY,
    "named_tuple_type": _EXPECTED_ARRAY,
    "set_type": _EXPECTED_ARRAY,
    "frozen_set_type": _EXPECTED_ARRAY,
    "deque_type": _EXPECTED_ARRAY,
    "iterable_type": _EXPECTED_ARRAY,
    "dict_type": _EXPECTED_OBJECT,
    "frozen_dict_type": _EXPECTED_OBJECT,
    "ordered_dict_type": _EXPECTED_OBJECT,
    "counter_type": _EXPECTED_OBJECT,
    "mapping_type": _EXPECTED_OBJECT,
    "model_type": _EXPECTED_OBJECT,
    "model_attributes_type": _EXPECTED_OBJECT,
    "dataclass_type": _EXPECTED_OBJECT,
    "dataclass_exact_type": _EXPECTED_OBJECT,
}


def from_validation_error(error: ValidationError) -> APIError:
    """Convert the first pydantic validation error into a 400 that names the field and value."""
    details = error.errors(include_url=False)
    first = details[0]
    param = format_location(tuple(first["loc"])) or None

    if first["type"] == "missing":
        return invalid_request(f"Missing required parameter '{param}'.", param=param)
    if first["type"] == "extra_forbidden":
        return invalid_request(f"Unrecognized request parameter '{param}'.", param=param)

    if first["type"] == "value_error":
        # Messages raised by our own validators are already complete sentences.
        expected = str(first["ctx"]["error"])
    elif first["type"] in _EXPECTED_JSON_TYPE:
        expected = _EXPECTED_JSON_TYPE[first["type"]]
    elif first["type"] == "too_short":
        expected = f"expected at least {_items(first['ctx']['min_length'])}"
    elif first["type"] == "too_long":
        limit, actual = first["ctx"]["max_length"], first["ctx"]["actual_length"]
        expected = f"expected at most {_items(limit)}, got {actual}"
    elif first["type"] == "literal_error":
        expected = "expected " + first["msg"].removeprefix("Input should be ")
    else:
        expected = first["msg"]
        if expected.startswith("Input should be "):
            expected = "expected a value " + expected.removeprefix("Input should be ")
    value = describe_value(first["input"])
    return invalid_request(f"Invalid value for '{param}': {value}. {_sentence(expected)}", param)


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."
