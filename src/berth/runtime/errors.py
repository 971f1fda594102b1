"""OpenAI-style error bodies and the exception that carries them to the HTTP layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"

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
    return APIError(500, message, error_type=SERVER_ERROR)


def internal_error(error: BaseException) -> APIError:
    """Wrap an unexpected exception in a 500 that names it but carries no traceback."""
    return server_error(f"Internal server error: {type(error).__name__}: {error}")


def describe_value(value: Any) -> str:
    """Render a rejected JSON value for an error message, cut to a readable length."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
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


# Pydantic error types, worded in JSON terms instead of pydantic's Python terms.
_EXPECTED_JSON_TYPE = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "list_type": "expected an array",
    "dict_type": "expected an object",
    "model_type": "expected an object",
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
