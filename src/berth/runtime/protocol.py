"""Request bodies of the OpenAI-compatible routes and of /predict, validated with pydantic.

Models run in strict mode, so a string is never coerced to a number or a number to a
bool, and the client gets a 400 that names the field. Unknown fields are ignored, as
OpenAI clients send optional fields (metadata, for example) that change nothing here.
`user` changes nothing either, but its type is checked as OpenAI checks it. An explicit
null in an optional field means the field's default, as in OpenAI's API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from berth.json_nesting import character_offset, too_deep_message, too_deep_position
from berth.runtime.errors import (
    describe_value,
    from_validation_error,
    invalid_request,
    json_type_name,
)

MAX_STOP_SEQUENCES = 4
# OpenAI's ranges for the penalties and for each logit_bias value.
MAX_PENALTY = 2.0
MAX_LOGIT_BIAS = 100.0
MAX_BATCH_INPUTS = 2048
# Seeds are signed 64-bit integers. torch.manual_seed accepts them all (torch 2.13 takes
# -2**63 to 2**64 - 1), and the llama.cpp runtime maps them to its 32 bits.
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# orjson 3.13 decodes integers outside [-2**63, 2**64) as floats, so a float of at least this
# magnitude in a validation error may have been an integer in the request body.
_BIG_INTEGER_MAGNITUDE = 2**63

RequestModel = TypeVar("RequestModel", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        """Drop explicit nulls of optional fields, so that they take their defaults as in
        OpenAI's API. A null in a required field is still rejected."""
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if value is not None
            or key not in cls.model_fields
            or cls.model_fields[key].is_required()
        }


class SamplingParameters(_Strict):
    """Generation settings shared by both completion routes and by /predict."""

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    frequency_penalty: float = Field(default=0.0, ge=-MAX_PENALTY, le=MAX_PENALTY)
    presence_penalty: float = Field(default=0.0, ge=-MAX_PENALTY, le=MAX_PENALTY)
    # Token id to the value added to its logit. JSON object keys are strings, so the ids
    # arrive as decimal strings. The runtime checks them against the model's vocabulary.
    logit_bias: dict[int, float] = Field(default_factory=dict)

    @field_validator("logit_bias", mode="before")
    @classmethod
    def _parse_logit_bias(cls, value: Any) -> dict[int, float]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(
                'expected an object that maps token ids to numbers, such as {"50256": -100}'
            )
        bias: dict[int, float] = {}
        key_of_token: dict[int, str] = {}
        for key, number in value.items():
            token_id = _token_id_key(key)
            if token_id is None:
                raise ValueError(
                    f"key {describe_value(key)} is not a token id. Use the decimal id of a "
                    'token of the model\'s vocabulary as the key, such as "50256"'
                )
            if token_id in key_of_token:
                raise ValueError(
                    f"keys {describe_value(key_of_token[token_id])} and {describe_value(key)} "
                    f"both name token {token_id}. Send one key per token"
                )
            key_of_token[token_id] = key
            is_number = isinstance(number, int | float) and not isinstance(number, bool)
            if not is_number or not -MAX_LOGIT_BIAS <= number <= MAX_LOGIT_BIAS:
                raise ValueError(
                    f"the bias of token {token_id} is {describe_value(number)}, but must be "
                    f"a number from {-MAX_LOGIT_BIAS:g} to {MAX_LOGIT_BIAS:g}"
                )
            bias[token_id] = float(number)
        return bias

    @field_validator("stop", mode="before")
    @classmethod
    def _normalize_stop(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(
                f"expected a string or an array of at most {MAX_STOP_SEQUENCES} strings"
            )
        if len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(
                f"expected at most {MAX_STOP_SEQUENCES} stop sequences, got {len(value)}"
            )
        if any(item == "" for item in value):
            raise ValueError("stop sequences must not be empty strings")
        return value

    @field_validator("seed")
    @classmethod
    def _seed_in_int64_range(cls, value: int | None) -> int | None:
        if value is not None and not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(
                f"expected an integer from {_INT64_MIN} to {_INT64_MAX} (signed 64 bits)"
            )
        return value


class StreamOptions(_Strict):
    include_usage: bool = False


class _CompletionOptions(SamplingParameters):
    model: str | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: Any = None
    response_format: Any = None
    # An end-user ID for the caller's own records; only its type is checked.
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _require_single_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported: send one request per completion")
        return value

    @field_validator("stream_options")
    @classmethod
    def _require_stream(
        cls, value: StreamOptions | None, info: ValidationInfo
    ) -> StreamOptions | None:
        # `stream` is declared first, so its value is known here unless it was invalid.
        if value is not None and info.data.get("stream") is False:
            raise ValueError(
                "stream_options applies only to streamed responses; send it with "
                '"stream": true, or leave it out'
            )
        return value

    @field_validator("response_format")
    @classmethod
    def _plain_text_only(cls, value: Any) -> Any:
        """Accept only plain text, because ignoring a JSON format would return text that the
        client then fails to parse."""
        if value is None or value == {"type": "text"}:
            return value
        kind = value.get("type") if isinstance(value, dict) else None
        described = f"type '{kind}'" if isinstance(kind, str) else describe_value(value)
        raise ValueError(
            f"only plain text can be generated here, so response_format {described} is not "
            'supported; leave response_format out or send {"type": "text"}, and ask for '
            "JSON in the prompt"
        )

    @field_validator("logprobs")
    @classmethod
    def _reject_logprobs(cls, value: Any) -> Any:
        if value not in (None, False, 0):
            raise ValueError("logprobs are not supported by this server")
        return value

    @property
    def requested_max_tokens(self) -> int | None:
        """The client's token limit: max_completion_tokens, else max_tokens, else None."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    @property
    def max_tokens_param(self) -> str:
        """The name of the field that `requested_max_tokens` comes from."""
        if self.max_completion_tokens is not None:
            return "max_completion_tokens"
        return "max_tokens"

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str

    @field_validator("role", mode="before")
    @classmethod
    def _map_developer_role(cls, value: Any) -> Any:
        """Read "developer", the role that newer OpenAI clients send for system
        instructions, as "system", and reject tool results with the reason."""
        if value == "developer":
            return "system"
        if value in ("tool", "function"):
            raise ValueError(
                f"role '{value}' carries the result of a tool call, but this server does not "
                "support tool calling. Send the result in a 'user' message instead"
            )
        if isinstance(value, str) and value not in ("system", "user", "assistant"):
            raise ValueError(
                f"role '{value}' is not supported; use 'system', 'developer', 'user' or 'assistant'"
            )
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _join_text_parts(cls, value: Any) -> str:
        """Accept a string, or an array of {"type": "text", "text": ...} parts, joined by
        newlines."""
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValueError("expected a string or an array of text parts")
        texts: list[str] = []
        for index, part in enumerate(value):
            is_text_part = (
                isinstance(part, dict)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            )
            if not is_text_part:
                raise ValueError(
                    f"part {index} is {describe_value(part)}, but only "
                    '{"type": "text", "text": "..."} parts are supported'
                )
            texts.append(part["text"])
        return "\n".join(texts)


class ChatCompletionRequest(_CompletionOptions):
    messages: list[ChatMessage] = Field(min_length=1)
    tools: Any = None

    @field_validator("tools")
    @classmethod
    def _reject_tools(cls, value: Any) -> Any:
        if value:
            raise ValueError("tool calling is not supported by this server")
        return value


class CompletionRequest(_CompletionOptions):
    prompt: str
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _single_text_prompt(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) == 1 and isinstance(value[0], str):
                return value[0]
            if value and all(isinstance(item, int) for item in value):
                raise ValueError("token-id prompts are not supported: send the prompt as text")
            raise ValueError("expected a string or an array of exactly one string")
        return value

    @field_validator("echo")
    @classmethod
    def _reject_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo=true is not supported by this server")
        return value

    @field_validator("best_of")
    @classmethod
    def _reject_best_of(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only best_of=1 is supported")
        return value

    @field_validator("suffix")
    @classmethod
    def _reject_suffix(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix is not supported by this server")
        return value


class EmbeddingRequest(_Strict):
    input: list[str]
    model: str | None = None
    user: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("input", mode="before")
    @classmethod
    def _text_inputs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise ValueError("expected a string or an array of strings")
        if not value:
            raise ValueError("expected at least one input")
        if len(value) > MAX_BATCH_INPUTS:
            raise ValueError(f"expected at most {MAX_BATCH_INPUTS} inputs, got {len(value)}")
        if all(isinstance(item, int) for item in value):
            raise ValueError("only text input is supported, not token ids")
        for index, item in enumerate(value):
            if isinstance(item, str):
                continue
            if isinstance(item, list) and all(isinstance(token, int) for token in item):
                raise ValueError("only text input is supported, not token ids")
            raise ValueError(f"item {index} is {describe_value(item)}, but must be a string")
        return value


class PredictRequest(_Strict):
    inputs: list[Any] = Field(min_length=1, max_length=MAX_BATCH_INPUTS)
    parameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("parameters", mode="before")
    @classmethod
    def _null_parameters(cls, value: Any) -> Any:
        return {} if value is None else value


def _token_id_key(key: Any) -> int | None:
    """Return the token id that a logit_bias key names, or None if it names none."""
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    return None


def utf8_problem(raw: bytes) -> str | None:
    """Describe where `raw` stops being UTF-8, or return None if it is valid.

    orjson reports invalid UTF-8 as "surrogates not allowed" at character 0, which
    points at neither the byte nor the cause.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return (
            f"is not valid UTF-8: byte 0x{raw[error.start]:02x} at position {error.start}; "
            "send JSON encoded as UTF-8"
        )
    return None


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body, raising a 400 APIError unless it is a JSON object."""
    if not raw.strip():
        raise invalid_request("The request body is empty. Send a JSON object.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        problem = utf8_problem(raw)
        if problem is None:
            _reject_too_deep(raw)
            problem = (
                f"is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno} "
                f"(character {error.pos})"
            )
        raise invalid_request(f"The request body {problem}.") from None
    if not isinstance(value, dict):
        kind = json_type_name(value)
        raise invalid_request(f"The request body must be a JSON object, not a JSON {kind}.")
    _reject_too_deep(raw)
    return value


def _reject_too_deep(raw: bytes) -> None:
    """Raise a 400 APIError for a body nested deeper than MAX_JSON_DEPTH, the limit of the
    management API and the gateway, with their wording. orjson alone accepts 1,024 levels."""
    position = too_deep_position(raw)
    if position is not None:
        message = too_deep_message(character_offset(raw, position))
        raise invalid_request(f"The {message}.")


def parse_request(model: type[RequestModel], raw: bytes) -> RequestModel:
    """Decode and validate a request body, raising a 400 APIError that names the bad field."""
    payload = parse_json_object(raw)
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        first_error = error
    try:
        return _validate_exact_integers(model, first_error, lambda: json.loads(raw))
    except ValidationError as error:
        raise from_validation_error(error) from None


def validate_parameters(
    model: type[RequestModel], parameters: dict[str, Any], raw: bytes
) -> RequestModel:
    """Validate the "parameters" object of /predict, naming fields as parameters.<field>.

    `raw` is the whole request body, which is decoded again only when orjson turned an
    integer beyond 64 bits into a float.
    """
    try:
        return model.model_validate(parameters)
    except ValidationError as error:
        first_error = error
    try:
        return _validate_exact_integers(model, first_error, lambda: json.loads(raw)["parameters"])
    except ValidationError as error:
        api_error = from_validation_error(error)
        if api_error.param:
            api_error.message = api_error.message.replace(
                f"'{api_error.param}'", f"'parameters.{api_error.param}'", 1
            )
            api_error.param = f"parameters.{api_error.param}"
        raise api_error from None


def _validate_exact_integers(
    model: type[RequestModel], error: ValidationError, decode_exactly: Callable[[], Any]
) -> RequestModel:
    """Validate again from a payload with exact integers when orjson turned one into a float.

    Without this, a seed of 2**70 would be rejected as "not an integer" and quoted as
    1.1805916207174113e+21, and a max_tokens of 2**70 would never reach the check of its
    limit. The json module keeps integers exact, and it runs only here, after a failed
    validation. Raises `error` again when its first input is not such a float, else the
    error of the exact payload, if any.
    """
    rejected = error.errors(include_url=False)[0].get("input")
    if not isinstance(rejected, float) or abs(rejected) < _BIG_INTEGER_MAGNITUDE:
        raise error
    return model.model_validate(decode_exactly())
