"""Strict JSON decoding of management API request bodies.

Python's json module (3.11) decodes NaN, Infinity and -Infinity as floats, but they are
not JSON (RFC 8259), and a float field would store them. The API's routes use
StrictJSONRoute, whose requests reject them as a body that is not valid JSON.
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


# The characters that JSON allows around a value (RFC 8259, section 2).
_JSON_WHITESPACE = b" \t\n\r"


class _NonFiniteNumber(ValueError):
    def __init__(self, constant: str) -> None:
        super().__init__(constant)
        self.constant = constant


def _reject_constant(constant: str) -> NoReturn:
    raise _NonFiniteNumber(constant)


def _constant_position(text: str, constant: str) -> int:
    """Return the index of the first `constant` outside a JSON string in `text`.

    The decoder stops at the first NaN, Infinity or -Infinity that it meets, so the first
    one outside a string is the one that it rejected.
    """
    in_string = False
    escaped = False
    for index, character in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif text.startswith(constant, index):
            return index
    return 0


def decode_json(body: bytes) -> Any:
    """Decode a request body as json.loads does, but reject NaN, Infinity and -Infinity.

    Raises json.JSONDecodeError for either kind of invalid JSON, which FastAPI reports as
    a validation error of type "json_invalid" at the error's position.
    """
    text = body.decode(json.detect_encoding(body), "surrogatepass")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except _NonFiniteNumber as error:
        message = f"{error.constant} is not a JSON number; send a number or null"
        position = _constant_position(text, error.constant)
        raise json.JSONDecodeError(message, text, position) from None


class StrictJSONRequest(Request):
    """A request whose `json()` decodes the body with decode_json, and whose body is
    empty when it contains only whitespace."""

    async def body(self) -> bytes:
        raw = await super().body()
        # A body of only whitespace contains no JSON value. FastAPI (0.165) reports an
        # empty body as missing, so this one gets the same 400 "request body is empty" as
        # an empty body, after the resource in the path is looked up.
        return raw if raw.strip(_JSON_WHITESPACE) else b""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An API route that decodes its JSON body with decode_json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle_strictly(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return handle_strictly
